"""Rule families. Each module is a ``RuleFamily``: ``evaluate(ctx)`` yields Findings and Missing gaps.

To add a family: write a module with ``evaluate`` and list it below for the
hooks it serves. Rules read their thresholds from the knowledge files only.
"""

from collections.abc import Iterable
from typing import Protocol

from cds_service.findings import Finding, Missing
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
from cds_service.rules.context import RuleContext


class RuleFamily(Protocol):
    """What a rule family module provides: what it finds for one hook call (findings and gaps, in rule order)."""

    def evaluate(self, ctx: RuleContext, /) -> Iterable[Finding | Missing]: ...


ORDER_RULES: tuple[RuleFamily, ...] = (
    dose,
    lab_thresholds,
    conditions,
    contraindications,
    infections,
    prac,
    screening,
    offlabel,
    positioning,
    unsupported,
)
PATIENT_VIEW_RULES: tuple[RuleFamily, ...] = (monitoring,)
# orders with no systemic JAK inhibitor: only the notice that a recognised JAKi is not checked
NOTICE_RULES: tuple[RuleFamily, ...] = (unsupported,)
