"""Unit normalisation for lab values.

Factors come from ``cards/labs.toml``; this module only applies them. A unit
that is not listed for an analyte is never guessed: the caller gets ``None``
and must say on the card that the value could not be interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class HasUnits(Protocol):
    """What has a unit table: an analyte (``cards/labs*.toml``), a qualitative test's quantity reading."""

    @property
    def units(self) -> Mapping[str, float]: ...


# Spellings EHRs use for the same UCUM unit; folded before look-up.
_FOLD = str.maketrans({"µ": "u", "μ": "u", " ": ""})


def _fold(unit: str) -> str:
    return unit.translate(_FOLD).replace("x10^", "10*").replace("x10*", "10*").lower()


_FOLDED: dict[int, tuple[HasUnits, dict[str, tuple[str, float]]]] = {}


def _folded_units(analyte: HasUnits) -> dict[str, tuple[str, float]]:
    cached = _FOLDED.get(id(analyte))
    if cached is None or cached[0] is not analyte:  # ids can be reused after a reload
        cached = (analyte, {_fold(unit): (unit, factor) for unit, factor in analyte.units.items()})
        _FOLDED[id(analyte)] = cached
    return cached[1]


def resolve_unit(analyte: HasUnits, *candidates: str | None) -> tuple[str, float] | None:
    """Return (the knowledge file's spelling of the unit, factor to canonical) or None."""
    for unit in candidates:
        if not unit:
            continue
        if unit in analyte.units:
            return unit, analyte.units[unit]
        hit = _folded_units(analyte).get(_fold(unit))
        if hit:
            return hit
    return None


def to_unit(analyte: HasUnits, canonical_value: float, unit: str) -> float:
    """Convert a canonical value into ``unit`` (one of the analyte's listed units)."""
    return canonical_value / analyte.units[unit]
