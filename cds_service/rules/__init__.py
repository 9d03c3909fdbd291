"""Rule families. Each module has ``evaluate(ctx)`` yielding Findings and Missing gaps.

To add a family: write a module with ``evaluate`` and list it below for the
hooks it serves. Rules read their thresholds from the knowledge files only.
"""
from cds_service.rules import (
    conditions,
    contraindications,
    dose,
    infections,
    lab_thresholds,
    monitoring,
    offlabel,
    positioning,
    prac,
    screening,
    unsupported,
)

ORDER_RULES = (dose, lab_thresholds, conditions, contraindications, infections, prac, screening, offlabel, positioning, unsupported)
PATIENT_VIEW_RULES: tuple = (monitoring,)
# orders with no systemic JAK inhibitor: only the notice that a recognised JAKi is not checked
NOTICE_RULES = (unsupported,)
