"""Rule families. Each module has ``evaluate(ctx)`` yielding Findings and Missing gaps.

To add a family: write a module with ``evaluate`` and list it below for the
hooks it serves. Rules read their thresholds from the knowledge files only.
"""
from cds_service.rules import conditions, dose, lab_thresholds
from cds_service.rules import offlabel, positioning

ORDER_RULES = (dose, lab_thresholds, conditions, offlabel, positioning)
PATIENT_VIEW_RULES: tuple = ()
