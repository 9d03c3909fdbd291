"""``[[lab_threshold]]``: do-not-start and interrupt thresholds per analyte and drug."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.schemas import register
from cds_service.schemas.base import Strict, common_checks


class LabThreshold(Strict):
    id: str
    analyte: str
    phase: list[Literal["start", "on_treatment"]] = Field(min_length=1)
    drugs: list[str] = Field(min_length=1)
    below: dict[str, float] | None = None
    above: dict[str, float] | None = None
    indicator: Literal["info", "warning", "critical"]
    action: str
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_direction(self) -> "LabThreshold":
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' or 'above'")
        return self

    @property
    def direction(self) -> str:
        return "below" if self.below is not None else "above"

    @property
    def limits(self) -> dict[str, float]:
        return self.below if self.below is not None else self.above  # type: ignore[return-value]


def check(knowledge, rules: list[LabThreshold]) -> list[str]:
    problems: list[str] = []
    seen: set[tuple] = set()
    for rule in rules:
        problems += common_checks(knowledge, rule, rule.drugs)
        analyte = knowledge.analytes.get(rule.analyte)
        if analyte is None:
            problems.append(f"rule {rule.id}: unknown analyte {rule.analyte!r}")
            continue
        if analyte.canonical_unit not in rule.limits:
            problems.append(f"rule {rule.id}: must give a limit in the canonical unit {analyte.canonical_unit!r}")
        problems += [f"rule {rule.id}: unit {u!r} is not a known unit of {rule.analyte}"
                     for u in rule.limits if u not in analyte.units]
        for phase in rule.phase:
            for drug in rule.drugs:
                key = (rule.analyte, phase, drug, rule.direction)
                if key in seen:
                    problems.append(f"rule {rule.id}: a second {rule.direction} threshold for {key[:3]}")
                seen.add(key)
    return problems


register("lab_threshold", LabThreshold, "list", check)
