"""How a numeric result of a qualitative test is read into its answer set (``[qualitative_test.x.quantity]``).

Viral loads, quantitative hCG and the tuberculin skin test report numbers, not answers. A number is read
into the test's answer-set categories ``positive`` / ``negative`` / ``indeterminate``:

- a plain number: ``>= positive_at_least`` (or ``> positive_above``) is positive; from ``indeterminate_from``
  up to the positive limit it is indeterminate (e.g. hCG 5-25 IU/L); below that, negative;
- ``<x`` / ``<=x`` (the lab's "below the assay's limit", e.g. HIV RNA "<20 copies/mL"): negative when x is at
  most ``below_limit_at_most``; a larger x cannot be placed (indeterminate);
- ``>x`` / ``>=x``: positive when x reaches the positive limit, otherwise indeterminate;
- a unit that is not listed is never guessed: the result is "could not be read".

Units are given here (``units``, ``log10_units``: values that are log10 of the canonical unit, as viral loads
are often reported) or taken from a numeric analyte (``analyte``, whose LOINC codes the test must then list).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from cds_service.knowledge.schemas.base import Strict

CATEGORIES = ("positive", "negative", "indeterminate")


class QuantityReading(Strict):
    analyte: str | None = None  # take canonical_unit / units from this analyte (cards/labs*.toml)
    canonical_unit: str | None = None
    units: dict[str, float] = {}  # reported unit -> factor to the canonical unit
    log10_units: list[str] = []  # reported as log10 of the canonical unit
    positive_at_least: float | None = Field(default=None, ge=0)
    positive_above: float | None = Field(default=None, ge=0)
    indeterminate_from: float | None = Field(default=None, ge=0)
    below_limit_at_most: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> QuantityReading:
        if (self.positive_at_least is None) == (self.positive_above is None):
            raise ValueError("give exactly one of positive_at_least / positive_above")
        if self.analyte is not None and (self.canonical_unit or self.units or self.log10_units):
            raise ValueError("a reading with an analyte takes its units from the analyte")
        if self.analyte is None and (not self.canonical_unit or self.units.get(self.canonical_unit) != 1.0):
            raise ValueError("canonical_unit must be listed in units with factor 1.0")
        if self.indeterminate_from is not None and self.indeterminate_from > self.limit:
            raise ValueError("indeterminate_from must not be above the positive limit")
        return self

    @property
    def limit(self) -> float:
        if self.positive_at_least is not None:
            return self.positive_at_least
        assert self.positive_above is not None  # _consistent: exactly one of the two
        return self.positive_above

    def is_positive(self, value: float) -> bool:
        if self.positive_at_least is not None:
            return value >= self.positive_at_least
        return value > self.limit

    def category(self, value: float, comparator: str | None) -> str:
        """The category of a value (canonical unit) with its FHIR comparator."""
        if comparator in ("<", "<="):
            if self.below_limit_at_most is not None and value <= self.below_limit_at_most:
                return "negative"
            return "indeterminate"
        if comparator in (">", ">="):
            return "positive" if self.is_positive(value) else "indeterminate"
        if self.is_positive(value):
            return "positive"
        if self.indeterminate_from is not None and value >= self.indeterminate_from:
            return "indeterminate"
        return "negative"
