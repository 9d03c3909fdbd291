"""What every rule sees: knowledge, patient facts, the draft orders (``orders.DraftOrder``), derived values."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cds_service.facts import Derived, PatientFacts, creatinine_clearance, egfr
from cds_service.knowledge import Knowledge
from cds_service.orders import DraftOrder

__all__ = ["DraftOrder", "RuleContext"]


@dataclass
class RuleContext:
    knowledge: Knowledge
    facts: PatientFacts
    hook: str
    orders: list[DraftOrder] = field(default_factory=list)
    draft_resources: list[dict[str, Any]] = field(
        default_factory=list
    )  # every draft of the request (co-ordered medicines)
    memo: dict[str, Any] = field(default_factory=dict)  # values several rule families read, worked out once per call

    @cached_property
    def crcl(self) -> Derived:
        return creatinine_clearance(self.facts, self.knowledge)

    @cached_property
    def egfr(self) -> Derived:
        return egfr(self.facts, self.knowledge)

    def systemic_orders(self) -> list[DraftOrder]:
        return [o for o in self.orders if o.match.category == "systemic"]
