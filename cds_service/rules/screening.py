"""Baseline screening checklist before a patient's first systemic JAK inhibitor (decision 9).

Only when the patient has no active or past systemic JAK inhibitor on record
(the draft itself does not count). One card per order lists each missing or
out-of-date item with its code and the date of a stale result, and one
suggestion creates draft ServiceRequests for every missing orderable test
(``selectionBehavior`` at-most-one: a single all-in-one suggestion, so
accepting it cannot order a test twice). Lab gaps the card lists are not
repeated on the "could not check" card (``Finding.covers``). Data that could
not be obtained is not called missing (it may exist): it becomes a ``Missing``
gap with the same wording the threshold rules use, so the two merge.

Parts read by result (TB screening, viral serology, pregnancy test; decision
15): a current result in an accepted category (negative) satisfies the part; a
positive one does as long as the result rules read it (the latent TB, hepatitis
and HIV warnings, the pregnancy contraindication say what to do); anything else
is listed with what was found: an old result, an equivocal one to repeat, or a
record without a readable result (a tuberculin skin test recorded only as a
Procedure is not a negative screen). A result that cannot be read is a gap.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from cds_service import i18n
from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.i18n import say
from cds_service.knowledge.schemas.screening import SYSTEM_URI, CodeRef, RecordPart
from cds_service.rules.context import RuleContext
from cds_service.rules.lab_thresholds import missing_reason
from cds_service.rules.text import lab
from cds_service.safety_facts import read_results

_RECORD_TYPES = ("Observation", "DiagnosticReport", "Procedure", "Immunization", "ImagingStudy")
_SYSTEM_LABEL = {"loinc": "LOINC", "snomed": "SNOMED CT", "cvx": "CVX"}


@dataclass(frozen=True)
class PartState:
    newest: date | None          # date of the newest usable result/record
    unobtainable: str | None     # why the data could not be obtained (only when nothing usable was found)
    label: str | None = None     # the newest one: the analyte's name (a lab result) ...
    item: object = None          # ... and the LabValue, or the coded record

    @property
    def shown(self) -> str | None:
        """How the newest one reads on a card (worked out only for a line that is shown)."""
        if self.item is None:
            return None
        if self.label is not None:
            return f"{self.label} {lab(self.item)}"
        return say("{record} on {when}", record=self.item.display, when=self.item.when)


def codes_text(ctx: RuleContext, part: RecordPart) -> str:
    """How a part's codes read on a card: "LOINC 751-8" (only worked out for a line that is shown)."""
    if part.analytes:
        return "LOINC " + " / ".join(ctx.knowledge.analytes[a].loinc[0] for a in part.analytes)
    by_system: dict[str, list[str]] = {}
    for ref in part.codes:
        by_system.setdefault(ref.system, []).append(ref.code)
    return "; ".join(f"{_SYSTEM_LABEL[s]} {', '.join(c)}" for s, c in by_system.items())


def newest_of(ctx: RuleContext, part: RecordPart, since: date | None = None) -> tuple[object, str | None]:
    """(newest usable LabValue or coded record for one part, the analyte's name if a lab), optionally only
    those on or after ``since``; (None, None) if there is none."""
    facts = ctx.facts
    best, label = None, None
    if part.analytes:
        for name in part.analytes:
            value = facts.latest(name)
            if value is None or (since is not None and value.when < since):
                continue
            if best is None or value.when > best.when:
                best, label = value, name
        return best, ctx.knowledge.analytes[label].display if label else None
    for ref in part.codes:
        for record in facts.records.get(f"{ref.system}|{ref.code}", []):
            if record.when is None or (since is not None and record.when < since):
                continue
            if best is None or record.when > best.when:
                best = record
            break
    return best, None


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
        return part.display, say("the latest record ({record}) is older than {days} days", record=state.shown,
                                 days=max_days)
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


def service_request(code: CodeRef, patient_id: str, note: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        # an analyte's local name is not the LOINC display: it goes in text only
        "code": {"coding": [{"system": SYSTEM_URI[code.system], "code": code.code,
                             **({} if code.from_analyte else {"display": code.display})}],
                 "text": code.display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "note": [{"text": note}],
    }


def _applies(item, facts) -> tuple[bool, str]:
    """(applies?, note when the patient data cannot decide)."""
    notes = []
    if item.sex is not None:
        if facts.sex is None:
            notes.append(say("sex not recorded"))
        elif facts.sex != item.sex:
            return False, ""
    if item.age_from is not None or item.age_to is not None:
        if facts.age is None:
            notes.append(say("age not known"))
        elif (item.age_from is not None and facts.age < item.age_from) or \
                (item.age_to is not None and facts.age > item.age_to):
            return False, ""
    return True, "; ".join(notes)


def _d(when: date | None) -> str:
    return i18n.day(when) if when else say("date not recorded")


def result_part(ctx: RuleContext, part: RecordPart, max_days: int) -> tuple[str | None, list[tuple[str, str]]]:
    """A part read by result: (why it is not satisfied, for the checklist; None if satisfied or a gap), and the
    gaps ((check, why): results that could not be read or obtained, said on the could-not-check card)."""
    facts, tests = ctx.facts, ctx.knowledge.rules.qualitative_test
    since = facts.today - timedelta(days=max_days)
    reading = read_results(facts, part.tests)
    newest = reading.decisive
    if newest is not None and newest.when is not None:
        test = tests[newest.test]
        age = (facts.today - newest.when).days
        if newest.category in test.positive and (test.max_age_days is None or age <= test.max_age_days):
            return None, []           # a positive result: the result rules say what to do
        current = age <= max_days
        if current and newest.category in part.accept and not reading.unread:
            return None, []
    unread = [r for r in reading.unread if r.when is None or r.when >= since]
    if unread:
        return None, [(tests[r.test].display, say("the result of {when} could not be read ({answer})",
                                                  when=_d(r.when), answer=repr(r.answer))) for r in unread]
    shown = say("{answer} on {when}", answer=newest.answer, when=_d(newest.when)) if newest is not None else None
    if newest is not None and newest.when is not None and (facts.today - newest.when).days <= max_days:
        return say("the latest result ({result}) is neither negative nor positive: repeat the test", result=shown), []
    test_codes = {c for t in part.tests for c in tests[t].loinc}
    unread_records = [r for ref in part.codes for r in facts.records.get(f"{ref.system}|{ref.code}", [])
                      if r.when is not None and r.when >= since
                      and not (r.resource_type == "Observation" and ref.code in test_codes)]
    if unread_records:
        record = max(unread_records, key=lambda r: r.when)
        return say("{record} on {when} ({kind}) has no readable result: a test without its reading is not a "
                   "negative screen", record=record.display, when=record.when, kind=record.resource_type), []
    if newest is not None:
        return say("the latest result ({result}) is older than {days} days", result=shown, days=max_days), []
    codes = [c for t in part.tests for c in tests[t].loinc]
    why = facts.why_unavailable("Observation", codes)
    if why:
        return None, [(part.display, say("records could not be obtained: {why}", why=why))]
    return say("nothing on record"), []


def is_first_systemic_order(ctx: RuleContext) -> bool:
    draft_ids = {o.order_id for o in ctx.orders}
    return not any(m.drug is not None and m.drug.category == "systemic" and m.resource_id not in draft_ids
                   for m in ctx.facts.medications)


def evaluate(ctx: RuleContext):
    k, facts = ctx.knowledge, ctx.facts
    orders = ctx.systemic_orders()
    if not orders or not is_first_systemic_order(ctx):
        return
    for card in k.rules.screening_card:
        for order in orders:
            if order.drug not in card.drugs:
                continue
            blocks: list[str] = []
            covers: list[str] = []
            sources: list[str] = list(card.sources)
            wanted: dict[str, CodeRef] = {}
            count = 0
            for item in k.rules.screening_item:
                applies, note = _applies(item, facts)
                if not applies:
                    continue
                lines = []
                for part in item.parts:
                    if part.tests:
                        why, gaps = result_part(ctx, part, item.max_age_days)
                        for check, gap_why in gaps:
                            yield Missing(item.id, check, gap_why, tuple(item.sources), order.order_id, order.drug)
                        if why is not None:
                            lines.append(f"- {part.display} ({codes_text(ctx, part)}): {why}")
                            code = order_code(ctx, part)
                            if code is not None:
                                wanted.setdefault(code.code, code)
                        continue
                    newest, _ = newest_of(ctx, part)
                    if newest is not None and (facts.today - newest.when).days <= item.max_age_days:
                        continue                        # up to date: nothing to say
                    state = part_state(ctx, part)
                    check, why = part_gap(ctx, part, state, item.max_age_days)
                    if (state.newest is None and state.unobtainable) or unreadable(ctx, part, item.max_age_days):
                        # it may exist (could not be obtained) or it exists but cannot be read: say so on the
                        # could-not-check card, in the threshold rules' words (so the two merge), order nothing
                        yield Missing(item.id, check, why, tuple(item.sources), order.order_id, order.drug)
                        continue
                    lines.append(f"- {part.display} ({codes_text(ctx, part)}): {why}")
                    covers += [k.analytes[a].display for a in part.analytes]
                    code = order_code(ctx, part)
                    if code is not None:
                        wanted.setdefault(code.code, code)
                if lines:
                    count += len(lines)
                    sources += [s for s in item.sources if s not in sources]
                    suffix = say(" (applies unless excluded: {why})", why=note) if note else ""
                    blocks.append(f"**{item.display}**{suffix} — {item.action}\n" + "\n".join(lines))
            if not blocks:
                continue
            note = say("Baseline screening before the first dose of {drug}", drug=order.name)
            suggestions = []
            if wanted:
                actions = tuple(
                    ProposedAction("create", say("Order {test} (LOINC {code})", test=c.display, code=c.code),
                                   service_request(c, facts.patient_id, note)) for c in wanted.values())
                suggestions.append(ProposedSuggestion(card.suggestion_label, actions))
            yield Finding(
                rule_id=card.id,
                concern=f"screening:{order.order_id}",
                indicator=card.indicator,
                summary=card.summary.format(drug=order.name, n=count),
                detail=card.intro + "\n\n" + "\n\n".join(blocks),
                sources=sources,
                override_set=card.override_set,
                suggestions=suggestions,
                order_id=order.order_id,
                drug=order.drug,
                covers=i18n.with_english(dict.fromkeys(covers)),
            )
