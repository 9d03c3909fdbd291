"""``[[lab_threshold]]``: do-not-start and interrupt thresholds per analyte and drug.

A threshold is one of:
  below / above            absolute limits by unit (compared in the reported unit when listed)
  above_uln_times          value > factor x the upper limit of normal: the Observation's
                           referenceRange.high, else ``default_uln`` (canonical unit; a local setting)
  above_baseline_percent   on treatment: value > (1 + percent/100) x the pre-treatment baseline
                           (latest result on or before the start date)
``summary`` (optional) replaces the default card summary; placeholders {analyte} {value} {limit} {drug}.
"""
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
    above_uln_times: float | None = Field(default=None, gt=0)
    default_uln: dict[str, float] | None = None
    above_baseline_percent: float | None = Field(default=None, gt=0)
    indicator: Literal["info", "warning", "critical"]
    summary: str | None = None
    action: str
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_direction(self) -> "LabThreshold":
        given = [x is not None for x in (self.below, self.above, self.above_uln_times, self.above_baseline_percent)]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'below', 'above', 'above_uln_times' or 'above_baseline_percent'")
        if (self.above_uln_times is not None) != (self.default_uln is not None):
            raise ValueError("'above_uln_times' needs 'default_uln' (and only it)")
        if self.above_baseline_percent is not None and self.phase != ["on_treatment"]:
            raise ValueError("a baseline-relative threshold applies on treatment only")
        return self

    @property
    def direction(self) -> str:
        return "below" if self.below is not None else "above"

    @property
    def basis(self) -> str:
        if self.above_uln_times is not None:
            return "uln"
        if self.above_baseline_percent is not None:
            return "baseline"
        return "absolute"

    @property
    def limits(self) -> dict[str, float]:
        if self.basis == "uln":
            return self.default_uln  # type: ignore[return-value]
        if self.basis == "baseline":
            return {}
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
        if rule.basis != "baseline" and analyte.canonical_unit not in rule.limits:
            problems.append(f"rule {rule.id}: must give a limit in the canonical unit {analyte.canonical_unit!r}")
        problems += [f"rule {rule.id}: unit {u!r} is not a known unit of {rule.analyte}"
                     for u in rule.limits if u not in analyte.units]
        level = (rule.above_uln_times or rule.above_baseline_percent
                 or rule.limits.get(analyte.canonical_unit))
        for phase in rule.phase:
            for drug in rule.drugs:
                # several levels per direction are allowed (platelets < 100 warning, < 50 critical); twins are not
                key = (rule.analyte, phase, drug, rule.direction, rule.basis, level)
                if key in seen:
                    problems.append(f"rule {rule.id}: a second {rule.direction} threshold for {key[:3]}")
                seen.add(key)
    return problems


register("lab_threshold", LabThreshold, "list", check)
