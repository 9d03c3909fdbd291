"""Record parts (``RecordPart`` of the screening checklist and the monitoring schedule): whether the record holds a
current lab value, coded record or readable result for a part, what is missing, and the order that would fill it.

Shared by the baseline screening (decision 9) and the monitoring schedule (decision 10), so neither family imports
the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from cds_service import i18n
from cds_service.facts import CodedRecord, LabValue
from cds_service.i18n import say
from cds_service.knowledge.schemas.screening import SYSTEM_URI, CodeRef, RecordPart
from cds_service.rules.common import missing_reason
from cds_service.rules.context import RuleContext
from cds_service.rules.text import lab

_RECORD_TYPES = ("Observation", "DiagnosticReport", "Procedure", "Immunization", "ImagingStudy")
_SYSTEM_LABEL = {"loinc": "LOINC", "snomed": "SNOMED CT", "cvx": "CVX"}


@dataclass(frozen=True)
class PartState:
    newest: date | None  # date of the newest usable result/record
    unobtainable: str | None  # why the data could not be obtained (only when nothing usable was found)
    label: str | None = None  # the newest one: the analyte's name (a lab result) ...
    item: LabValue | CodedRecord | None = None  # ... and the LabValue, or the coded record

    @property
    def shown(self) -> str | None:
        """How the newest one reads on a card (worked out only for a line that is shown)."""
        item = self.item
        if item is None:
            return None
        if isinstance(item, LabValue):  # a lab result comes with its analyte's name (label)
            return f"{self.label} {lab(item)}"
        return say("{record} on {when}", record=item.display, when=item.when)


def codes_text(ctx: RuleContext, part: RecordPart) -> str:
    """How a part's codes read on a card: "LOINC 751-8" (only worked out for a line that is shown)."""
    if part.analytes:
        return "LOINC " + " / ".join(ctx.knowledge.analytes[a].loinc[0] for a in part.analytes)
    by_system: dict[str, list[str]] = {}
    for ref in part.codes:
        by_system.setdefault(ref.system, []).append(ref.code)
    return "; ".join(f"{_SYSTEM_LABEL[s]} {', '.join(c)}" for s, c in by_system.items())


def newest_of(
    ctx: RuleContext, part: RecordPart, since: date | None = None
) -> tuple[LabValue | CodedRecord | None, str | None]:
    """(newest usable LabValue or coded record for one part, the analyte's name if a lab), optionally only
    those on or after ``since``; (None, None) if there is none."""
    facts = ctx.facts
    if part.analytes:
        best: LabValue | None = None
        label: str | None = None
        for name in part.analytes:
            value = facts.latest(name)
            if value is None or (since is not None and value.when < since):
                continue
            if best is None or value.when > best.when:
                best, label = value, name
        return best, ctx.knowledge.analytes[label].display if label else None
    newest: tuple[date, CodedRecord] | None = None
    for ref in part.codes:
        for record in facts.records.get(f"{ref.system}|{ref.code}", []):
            if record.when is None or (since is not None and record.when < since):
                continue
            if newest is None or record.when > newest[0]:
                newest = record.when, record
            break
    return (newest[1] if newest is not None else None), None


def part_state(ctx: RuleContext, part: RecordPart, since: date | None = None) -> PartState:
    """Newest usable result for one part (optionally only those on or after ``since``), or why there is none."""
    facts, k = ctx.facts, ctx.knowledge
    best, label = newest_of(ctx, part, since)
    why = None
    if best is None and part.analytes:
        why = facts.why_unavailable("Observation", [c for a in part.analytes for c in k.analytes[a].loinc])
    elif best is None:
        codes = [ref.code for ref in part.codes]
        why = next((w for w in (facts.why_unavailable(t, codes) for t in _RECORD_TYPES) if w), None)
    return PartState(best.when if best is not None else None, why, label, best)


def part_gap(ctx: RuleContext, part: RecordPart, state: PartState, max_days: int) -> tuple[str, str]:
    """(check, why) for a part that is missing or stale, worded like the threshold rules' gaps."""
    facts = ctx.facts
    if part.analytes:
        newest = max(part.analytes, key=lambda a: facts.labs[a][0].when if facts.labs.get(a) else date.min)
        return ctx.knowledge.analytes[newest].display, missing_reason(facts, ctx.knowledge, newest, max_days)
    if state.unobtainable:
        return part.display, say("records could not be obtained: {why}", why=state.unobtainable)
    undated = any(r.when is None for ref in part.codes for r in facts.records.get(f"{ref.system}|{ref.code}", []))
    if state.newest is not None:
        return part.display, say(
            "the latest record ({record}) is older than {days} days", record=state.shown, days=max_days
        )
    if undated:
        return part.display, say("only records without a date are on file")
    return part.display, say("nothing on record")


def unreadable(ctx: RuleContext, part: RecordPart, max_days: int) -> bool:
    """A recent lab result exists but could not be interpreted (unit, value), newer than any usable one."""
    return any(ctx.facts.unreadable_within(name, max_days) for name in part.analytes)


def order_code(ctx: RuleContext, part: RecordPart) -> CodeRef | None:
    if not part.orderable:
        return None
    if part.order is not None:
        return part.order
    if part.analytes:
        analyte = ctx.knowledge.analytes[part.analytes[0]]
        return CodeRef(system="loinc", code=analyte.loinc[0], display=analyte.display, from_analyte=True)
    return None


def service_request(code: CodeRef, patient_id: str, note: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        # an analyte's local name is not the LOINC display: it goes in text only
        "code": {
            "coding": [
                {
                    "system": SYSTEM_URI[code.system],
                    "code": code.code,
                    **({} if code.from_analyte else {"display": code.display}),
                }
            ],
            "text": code.display,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "note": [{"text": note}],
    }


def _d(when: date | None) -> str:
    return i18n.day(when) if when else say("date not recorded")


def result_part(ctx: RuleContext, part: RecordPart, max_days: int) -> tuple[str | None, list[tuple[str, str]]]:
    """A part read by result: (why it is not satisfied, for the checklist; None if satisfied or a gap), and the
    gaps ((check, why): results that could not be read or obtained, said on the could-not-check card)."""
    facts, tests = ctx.facts, ctx.knowledge.rules.qualitative_test
    since = facts.today - timedelta(days=max_days)
    reading = facts.results(part.tests)
    newest = reading.decisive
    if newest is not None and newest.when is not None:
        test = tests[newest.test]
        age = (facts.today - newest.when).days
        if newest.category in test.positive and (test.max_age_days is None or age <= test.max_age_days):
            return None, []  # a positive result: the result rules say what to do
        current = age <= max_days
        if current and newest.category in part.accept and not reading.unread:
            return None, []
    unread = [r for r in reading.unread if r.when is None or r.when >= since]
    if unread:
        return None, [
            (
                tests[r.test].display,
                say("the result of {when} could not be read ({answer})", when=_d(r.when), answer=repr(r.answer)),
            )
            for r in unread
        ]
    shown = say("{answer} on {when}", answer=newest.answer, when=_d(newest.when)) if newest is not None else None
    if newest is not None and newest.when is not None and (facts.today - newest.when).days <= max_days:
        return say("the latest result ({result}) is neither negative nor positive: repeat the test", result=shown), []
    test_codes = {c for t in part.tests for c in tests[t].loinc}
    unread_records = [
        r
        for ref in part.codes
        for r in facts.records.get(f"{ref.system}|{ref.code}", [])
        if r.when is not None and r.when >= since and not (r.resource_type == "Observation" and ref.code in test_codes)
    ]
    if unread_records:
        record = max(unread_records, key=lambda r: r.when or date.min)  # all dated (filtered above)
        return say(
            "{record} on {when} ({kind}) has no readable result: a test without its reading is not a negative screen",
            record=record.display,
            when=record.when,
            kind=record.resource_type,
        ), []
    if newest is not None:
        return say("the latest result ({result}) is older than {days} days", result=shown, days=max_days), []
    codes = [c for t in part.tests for c in tests[t].loinc]
    why = facts.why_unavailable("Observation", codes)
    if why:
        return None, [(part.display, say("records could not be obtained: {why}", why=why))]
    return say("nothing on record"), []
