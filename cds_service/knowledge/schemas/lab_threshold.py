"""``[[lab_threshold]]``: do-not-start and interrupt thresholds per analyte and drug.

A threshold is one of:
  below / above            absolute limits by unit (compared in the reported unit when listed)
  above_uln_times          value > factor x the upper limit of normal: the Observation's
                           referenceRange.high, else ``default_uln`` (canonical unit; a local setting)
  from_baseline            on treatment: a change against the pre-treatment baseline (the latest result
                           on or before the start date), ``direction`` "rise" or "fall", either by more than
                           ``percent`` of the baseline or by more than an absolute amount ``by`` (per unit,
                           like below/above: compared in the reported unit when both results share a listed
                           unit, else in the canonical unit, which must be listed; decision 4)
``summary`` (optional) replaces the default card summary; placeholders {analyte} {value} {limit} {drug}.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, common_checks


class BaselineChange(Strict):
    """A change against the pre-treatment baseline: creatinine rise > 30 %, tofacitinib Hb fall > 2 g/dL."""

    direction: Literal["rise", "fall"]
    percent: float | None = Field(default=None, gt=0)
    by: dict[str, float] | None = None

    @model_validator(mode="after")
    def _one_size(self) -> BaselineChange:
        if (self.percent is None) == (self.by is None):
            raise ValueError("a baseline change gives exactly one of 'percent' or 'by' (an amount per unit)")
        if self.by is not None and (not self.by or any(v <= 0 for v in self.by.values())):
            raise ValueError("'by' needs a positive amount for each unit it lists")
        return self


class LabThreshold(Strict):
    id: str
    analyte: str
    phase: list[Literal["start", "on_treatment"]] = Field(min_length=1)
    drugs: list[str] = Field(min_length=1)
    below: dict[str, float] | None = None
    above: dict[str, float] | None = None
    above_uln_times: float | None = Field(default=None, gt=0)
    default_uln: dict[str, float] | None = None
    from_baseline: BaselineChange | None = None
    indicator: Literal["info", "warning", "critical"]
    summary: str | None = None
    action: str
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_direction(self) -> LabThreshold:
        given = [x is not None for x in (self.below, self.above, self.above_uln_times, self.from_baseline)]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'below', 'above', 'above_uln_times' or 'from_baseline'")
        if (self.above_uln_times is not None) != (self.default_uln is not None):
            raise ValueError("'above_uln_times' needs 'default_uln' (and only it)")
        if self.from_baseline is not None and self.phase != ["on_treatment"]:
            raise ValueError("a baseline-relative threshold applies on treatment only")
        return self

    @property
    def direction(self) -> str:
        if self.from_baseline is not None:
            return "below" if self.from_baseline.direction == "fall" else "above"
        return "below" if self.below is not None else "above"

    @property
    def basis(self) -> str:
        if self.above_uln_times is not None:
            return "uln"
        if self.from_baseline is not None:
            return "baseline"
        return "absolute"

    @property
    def limits(self) -> dict[str, float]:
        """Per-unit amounts: absolute limits, the default ULN, or a baseline change's ``by`` (none for a percent)."""
        if self.basis == "uln":
            return self.default_uln  # type: ignore[return-value]
        if self.basis == "baseline":
            return self.from_baseline.by or {}  # type: ignore[union-attr]
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
        percent_of_baseline = rule.from_baseline is not None and rule.from_baseline.percent is not None
        if not percent_of_baseline and analyte.canonical_unit not in rule.limits:
            problems.append(f"rule {rule.id}: must give a limit in the canonical unit {analyte.canonical_unit!r}")
        problems += [
            f"rule {rule.id}: unit {u!r} is not a known unit of {rule.analyte}"
            for u in rule.limits
            if u not in analyte.units
        ]
        level = (
            rule.above_uln_times
            or (rule.from_baseline.percent if rule.from_baseline else None)
            or rule.limits.get(analyte.canonical_unit)
        )
        for phase in rule.phase:
            for drug in rule.drugs:
                # several levels per direction are allowed (platelets < 100 warning, < 50 critical); twins are not
                key = (rule.analyte, phase, drug, rule.direction, rule.basis, level)
                if key in seen:
                    problems.append(f"rule {rule.id}: a second {rule.direction} threshold for {key[:3]}")
                seen.add(key)
    return problems


register("lab_threshold", LabThreshold, "list", check)
