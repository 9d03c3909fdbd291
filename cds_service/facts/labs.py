"""Lab results: each analyte's results, dated, interpreted only as far as a rule reads.

Observations whose LOINC code no rule reads are skipped after one dict look-up, so the cost does not grow
with irrelevant data in the prefetch; the results a rule does read are dated and sorted here but each is
interpreted (value, unit, reference range) only when a rule reaches it, newest first, so years of history
cost a date each. Missing or uninterpretable values are kept as explicit gaps, never as normal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from operator import attrgetter, itemgetter
from typing import Any, overload

from cds_service.fhir.tolerant import as_list
from cds_service.fhir.values import VOID_STATUS, codings, loinc_or_unstated, parse_date, parse_date_text
from cds_service.i18n import number, say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.model import AnalyteEntry
from cds_service.knowledge.units import resolve_unit
from cds_service.record.index import PatientRecord

_PRETTY_UNITS = {
    "10*9/L": "×10⁹/L",
    "10*3/uL": "×10³/µL",
    "umol/L": "µmol/L",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "/uL": "/µL",
    "[lb_av]": "lb",
}


@dataclass(frozen=True)
class LabValue:
    analyte: str
    value: float  # canonical unit
    reported_value: float
    reported_unit: str  # the knowledge file's spelling of the reported unit
    when: date
    ref_high: float | None = None  # canonical unit
    ref_low: float | None = None
    source_id: str | None = None
    code: str | None = None  # the analyte's LOINC code the result carried
    note: str | None = None  # how it was read (knowledge unit_notes / code_notes), shown with the value


@dataclass(frozen=True)
class Uninterpretable:
    analyte: str
    when: date | None
    why: str


def pretty_unit(u: str) -> str:
    """A unit as clinicians read it ("10*9/L" -> "×10⁹/L")."""
    return _PRETTY_UNITS.get(u, u)


def lab_text(value: LabValue, code: bool = False) -> str:
    """'0.8 ×10⁹/L on 2026-11-01' in the unit the lab reported, with how it was read when the knowledge says so
    ('55 mL/min on ... (reported in mL/min, not per 1.73 m²: read as ...)'); ``code``: name its LOINC code too."""
    shown = say(
        "{value} {unit} on {date}",
        value=number(value.reported_value),
        unit=pretty_unit(value.reported_unit),
        date=value.when,
    )
    extra = ", ".join(x for x in (f"LOINC {value.code}" if code and value.code else None, value.note) if x)
    return f"{shown} ({extra})" if extra else shown


def _other_date(resource: dict[str, Any]) -> date | None:
    """A result's date when effectiveDateTime is absent or unreadable (``read_labs`` reads that one first)."""
    for key in ("effectiveInstant", "issued"):
        found = parse_date(resource.get(key))
        if found:
            return found
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return parse_date(period.get("start")) or parse_date(period.get("end"))
    return None


def _quantity_value(q: dict[str, Any]) -> float | None:
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _interpret(analyte: AnalyteEntry, analyte_name: str, obs: dict[str, Any], when: date) -> LabValue | Uninterpretable:
    """One dated result -> its value in the canonical unit, or why it cannot be used."""
    quantity = obs.get("valueQuantity")
    if not isinstance(quantity, dict) or (value := _quantity_value(quantity)) is None:
        return Uninterpretable(analyte_name, when, say("result has no numeric value"))
    resolved = resolve_unit(analyte, quantity.get("code"), quantity.get("unit"))
    if resolved is None:
        unit = quantity.get("code") or quantity.get("unit") or say("no unit")
        return Uninterpretable(
            analyte_name,
            when,
            say("unit {unit} is not a recognised unit for {analyte}", unit=repr(unit), analyte=analyte.display),
        )
    if value < 0:
        return Uninterpretable(analyte_name, when, say("negative value {value}", value=number(value)))
    unit, factor = resolved
    ref_high = ref_low = None
    for rng in as_list(obs.get("referenceRange")):
        if not isinstance(rng, dict):
            continue
        for key in ("high", "low"):
            bound = rng.get(key)
            if isinstance(bound, dict) and (bound_value := _quantity_value(bound)) is not None:
                bound_unit = resolve_unit(analyte, bound.get("code"), bound.get("unit")) or resolved
                converted = bound_value * bound_unit[1]
                if key == "high" and ref_high is None:
                    ref_high = converted
                elif key == "low" and ref_low is None:
                    ref_low = converted
        break
    code = _code_of(analyte, obs)
    notes = [n for n in (analyte.code_notes.get(code) if code is not None else None, analyte.unit_notes.get(unit)) if n]
    return LabValue(
        analyte_name,
        value * factor,
        value,
        unit,
        when,
        ref_high,
        ref_low,
        obs.get("id"),
        code,
        ", ".join(notes) or None,
    )


def _code_of(analyte: AnalyteEntry, obs: dict[str, Any]) -> str | None:
    """The first of the analyte's LOINC codes among the result's codings (the one it was recognised by)."""
    for coding in codings(obs.get("code")):
        code = coding.get("code")
        if type(code) is str and (code := code.strip()) in analyte.loinc and loinc_or_unstated(coding.get("system")):
            return code
    return None


class LabSeries(Sequence[LabValue]):
    """One analyte's usable results, newest first, interpreted only as far as a rule reads.

    Built from (date, Observation) pairs; most rules want the newest result, a few walk back to a
    treatment start, so a long history costs one date per result and nothing more. Results that
    cannot be interpreted are kept apart (``unreadable``), never dropped and never read as normal.
    """

    __slots__ = ("_analyte", "_bad", "_name", "_next", "_pending", "_values")

    def __init__(
        self, analyte: AnalyteEntry, name: str, dated: list[tuple[date, dict[str, Any]]], undated: list[Uninterpretable]
    ):
        dated.sort(key=_first, reverse=True)  # stable: same-day results keep the EHR's order
        self._analyte, self._name, self._pending, self._next = analyte, name, dated, 0
        self._values: list[LabValue] = []
        self._bad: list[Uninterpretable] = list(undated)

    def _read_one(self) -> None:
        when, obs = self._pending[self._next]
        self._next += 1
        found = _interpret(self._analyte, self._name, obs, when)
        if isinstance(found, LabValue):
            self._values.append(found)
        else:
            self._bad.append(found)

    def _has(self, index: int) -> bool:
        """Read on until the usable result at ``index`` exists or nothing is left; does it exist?"""
        while len(self._values) <= index and self._next < len(self._pending):
            self._read_one()
        return index < len(self._values)

    @overload
    def __getitem__(self, index: int) -> LabValue: ...

    @overload
    def __getitem__(self, index: slice) -> list[LabValue]: ...

    def __getitem__(self, index: int | slice) -> LabValue | list[LabValue]:
        if isinstance(index, slice) or index < 0:
            return list(self)[index]
        self._has(index)
        return self._values[index]

    def __iter__(self) -> Iterator[LabValue]:
        position = 0
        while self._has(position):
            yield self._values[position]
            position += 1

    def __len__(self) -> int:
        self._has(len(self._pending))
        return len(self._values)

    def __bool__(self) -> bool:
        return self._has(0)

    def newest(self) -> LabValue | None:
        """The newest usable result (the one most rules want), or None."""
        return self._values[0] if self._has(0) else None

    def __repr__(self) -> str:
        return f"LabSeries({self._name}: {len(self._pending)} dated results, {len(self._values)} read)"

    def unreadable(self, since: date | None = None) -> list[Uninterpretable]:
        """See ``PatientFacts.unreadable``: reads on until the newest usable result (and its same-day peers)."""
        pending = self._pending
        while self._next < len(pending):
            when = pending[self._next][0]
            if since is not None and when < since:
                break
            if self._values and when < self._values[0].when:
                break
            self._read_one()
        newest = self._values[0].when if self._values else None
        found = [
            u
            for u in self._bad
            if u.when is not None and (since is None or u.when >= since) and (newest is None or u.when >= newest)
        ]
        found.sort(key=_when_of, reverse=True)
        return found + [u for u in self._bad if u.when is None]

    def unreadable_between(self, after: date | None, until: date) -> list[Uninterpretable]:
        """Dated results after ``after`` (any age if None) and on or before ``until`` that could not be
        interpreted, newest first (e.g. a pre-treatment result newer than the baseline that was used)."""
        pending = self._pending
        while self._next < len(pending) and (after is None or pending[self._next][0] > after):
            self._read_one()
        found = [u for u in self._bad if u.when is not None and u.when <= until and (after is None or u.when > after)]
        found.sort(key=_when_of, reverse=True)
        return found


_first = itemgetter(0)  # (date, Observation) -> date, as a sort key without a Python call
_when_of = attrgetter("when")


def _analyte_of(concept: object, loinc_index: dict[str, str]) -> str | None:
    """The analyte named by the first LOINC (or system-less) coding that names one."""
    for coding in codings(concept):
        code = coding.get("code")
        if type(code) is str:
            analyte = loinc_index.get(code) or loinc_index.get(code.strip())
            if analyte is not None and loinc_or_unstated(coding.get("system")):
                return analyte
    return None


def read_labs(knowledge: Knowledge, record: PatientRecord) -> dict[str, LabSeries]:
    """The results carrying an analyte's LOINC code, grouped by analyte and dated; interpretation waits."""
    loinc_index = knowledge.loinc_to_analyte
    dated: dict[str, list[tuple[date, dict[str, Any]]]] = {}
    undated: dict[str, list[Uninterpretable]] = {}
    for obs, lone in record.observations_with_codes(loinc_index):  # only results carrying an analyte code
        if lone is not None:  # its only coding, read by the index: the analyte is its code's
            analyte = loinc_index[lone[0]] if loinc_or_unstated(lone[1]) else None
        else:
            analyte = _analyte_of(obs.get("code"), loinc_index)
        if analyte is None or obs.get("status") in VOID_STATUS:
            continue
        stated = obs.get("effectiveDateTime")  # the usual date (parse_date's own test, without its call)
        when = (type(stated) is str and len(stated) >= 4 and parse_date_text(stated)) or _other_date(obs)
        if when is None:
            undated.setdefault(analyte, []).append(Uninterpretable(analyte, None, say("result has no date")))
        elif (series := dated.get(analyte)) is None:
            dated[analyte] = [(when, obs)]
        else:
            series.append((when, obs))
    return {
        name: LabSeries(knowledge.analytes[name], name, dated.get(name, []), undated.get(name, []))
        for name in dated.keys() | undated.keys()
    }
