"""Monitoring a patient on a systemic JAK inhibitor (patient-view; decisions 10 and 11).

Start date = the earliest start of the active systemic JAKi medications
(MedicationRequest.authoredOn or MedicationStatement effective start).
Schedules (``[[monitoring_schedule]]``): the schedules that are overdue
share one warning card, those that are due one info card (one visit, one
card, one set of orders). Response reviews (``[[response_review]]``): an
info card inside their window. Thresholds crossed on treatment: the
``lab_threshold`` entries of phase "on_treatment" through the shared engine;
a threshold whose result is simply absent is left to the schedule (which
says when a test is needed), so it is not repeated as a gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date, timedelta

from cds_service.facts import MedicationFact
from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.i18n import say
from cds_service.knowledge.schemas.monitoring import MonitoringSchedule
from cds_service.knowledge.schemas.screening import CodeRef, RecordPart
from cds_service.rules import lab_thresholds
from cds_service.rules.context import RuleContext
from cds_service.rules.record_parts import (
    PartState,
    codes_text,
    order_code,
    part_state,
    service_request,
)
from cds_service.rules.text import sentence

# a schedule due or overdue: (schedule, why, notes, the tests it would order by code)
_Due = tuple[MonitoringSchedule, str, list[str], dict[str, CodeRef]]


def systemic_in_use(ctx: RuleContext) -> list[MedicationFact]:
    return [m for m in ctx.facts.medications if m.systemic_jaki_in_use]


def schedule_status(
    schedule: MonitoringSchedule, start: date, today: date, done: date | None
) -> tuple[str | None, str]:
    """(None | "due" | "overdue", why) for a schedule given the date the last complete set was done."""
    state, why, _ = schedule_verdict(schedule, start, today, done)
    return state, why


def schedule_verdict(
    schedule: MonitoringSchedule, start: date, today: date, done: date | None
) -> tuple[str | None, str, int | None]:
    """``schedule_status`` and the week of the checkpoint it is about (None: the periodic repeat)."""
    days = (today - start).days
    passed = [c for c in schedule.checkpoints if c.week * 7 <= days]
    if schedule.checkpoints and not passed:
        return None, "", None
    if passed:
        current = passed[-1]
        opens = start + timedelta(days=current.week * 7 - schedule.early_days)
        if done is None or done < opens:
            state = "overdue" if days >= current.overdue_week * 7 else "due"
            when = start + timedelta(days=current.week * 7)
            last = (
                say("last complete set {done}", done=done) if done else say("no complete set on record since the start")
            )
            return (
                state,
                say("week {week} check (due {when}): {last}", week=current.week, when=when, last=last),
                current.week,
            )
        if current is not schedule.checkpoints[-1]:
            return None, "", None
    if done is None:
        state = "overdue" if days >= schedule.overdue_days else "due"
        return state, say("no complete set on record since the start"), None
    age = (today - done).days
    if age >= schedule.overdue_days or age >= schedule.every_days:
        return (
            "overdue" if age >= schedule.overdue_days else "due",
            say(
                "last complete set {done} ({age} days ago; repeat every {every} days)",
                done=done,
                age=age,
                every=schedule.every_days,
            ),
            None,
        )
    return None, "", None


def last_complete_set(
    ctx: RuleContext, schedule: MonitoringSchedule, start: date
) -> tuple[list[tuple[RecordPart, PartState]], date | None]:
    """([(part, PartState)], the date of the last complete set or None). Results on or after the start count as
    monitoring for a schedule with checkpoints (earlier ones are the baseline)."""
    since = start if schedule.checkpoints else None
    states = [(part, part_state(ctx, part, since=since)) for part in schedule.parts]
    dates = [s.newest for _, s in states]
    known = [d for d in dates if d is not None]
    return states, (None if len(known) < len(dates) else min(known))


def applies(schedule: MonitoringSchedule, drugs: Iterable[str]) -> bool:
    return any(d in schedule.drugs for d in drugs)


def treatment(ctx: RuleContext) -> tuple[dict[str, date], dict[str, str], date | None]:
    """(start per drug id, display name per drug id, the earliest start or None) of the systemic JAK inhibitors
    in use (decision 10: the earliest active order's authoredOn or MedicationStatement effective start)."""
    starts: dict[str, date] = {}
    names: dict[str, str] = {}
    for med in systemic_in_use(ctx):
        drug = med.drug
        if drug is None:
            continue  # not reached: systemic_jaki_in_use needs a recognised drug
        names.setdefault(drug.drug_id, drug.entry.display)
        if med.start is not None and (drug.drug_id not in starts or med.start < starts[drug.drug_id]):
            starts[drug.drug_id] = med.start
    return starts, names, (min(starts.values()) if starts else None)


def _schedules(ctx: RuleContext, drugs: list[str], start: date, patient_id: str) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    pending: dict[str, list[_Due]] = {}
    for schedule in k.rules.monitoring_schedule:
        if not applies(schedule, drugs):
            continue
        states, done = last_complete_set(ctx, schedule, start)
        dates = [s.newest for _, s in states]
        unobtainable = [s.unobtainable for _, s in states if s.newest is None and s.unobtainable]
        if schedule.none_on_record == "info" and all(d is None for d in dates):
            if unobtainable:
                yield Missing(
                    schedule.id,
                    schedule.display,
                    say("records could not be obtained: {why}", why=unobtainable[0]),
                    tuple(schedule.sources),
                )
                continue
            yield Finding(
                rule_id=schedule.id,
                concern=f"monitoring:{schedule.id}",
                indicator="info",
                summary=say(
                    "No {schedule} on record (patient on a JAK inhibitor since {start})",
                    schedule=schedule.display,
                    start=start,
                ),
                detail=say(
                    "No coded record ({codes}) was found. It may have been done without a code; if not, plan one.",
                    codes="; ".join(codes_text(ctx, part) for part, _ in states),
                )
                + f"\n\n{schedule.action}",
                sources=list(schedule.sources),
            )
            continue
        state, why = schedule_status(schedule, start, facts.today, done)
        if state is None:
            continue
        if unobtainable and done is None:
            yield Missing(
                schedule.id,
                schedule.display,
                say("results could not be obtained: {why}", why=unobtainable[0]),
                tuple(schedule.sources),
            )
            continue
        # at a glance (issue 24): the tests still missing when some of the set is there, and results that could
        # not be interpreted; the values, codes and the whole schedule are one click away in the app
        absent: list[str] = []
        unread: list[str] = []
        wanted: dict[str, CodeRef] = {}
        for part, part_st in states:
            if part_st.newest is None:
                absent.append(part.display)
            if any(
                u.when is None or part_st.newest is None or u.when > part_st.newest
                for a in part.analytes
                for u in facts.unreadable(a, since=start)
            ):
                unread.append(part.display)
            code = order_code(ctx, part)
            if code is not None:
                wanted.setdefault(code.code, code)
        notes = []
        if absent and len(absent) < len(states):
            notes.append(say("Nothing since the start: {tests}.", tests=", ".join(absent)))
        if unread:
            notes.append(say("A newer result could not be interpreted: {tests}.", tests=", ".join(unread)))
        pending.setdefault(state, []).append((schedule, why, notes, wanted))
    for state, items in pending.items():
        yield _schedule_card(ctx, state, items, start, patient_id)


def _summary(items: list[_Due], state: str, weeks: int) -> str:
    overdue = state == "overdue"
    if len(items) == 1:
        name = sentence(items[0][0].display)
        return (
            say("{schedule} overdue (week {week} of JAK inhibitor treatment)", schedule=name, week=weeks)
            if overdue
            else say("{schedule} due (week {week} of JAK inhibitor treatment)", schedule=name, week=weeks)
        )
    short = ", ".join(re.sub(r"\s*\([^)]*\)", "", schedule.display) for schedule, *_ in items)
    text = (
        say("JAK inhibitor monitoring overdue (week {week}): {schedules}", week=weeks, schedules=short)
        if overdue
        else say("JAK inhibitor monitoring due (week {week}): {schedules}", week=weeks, schedules=short)
    )
    if len(text) < 140:
        return text
    return (
        say("{n} JAK inhibitor monitoring checks overdue (week {week})", n=len(items), week=weeks)
        if overdue
        else say("{n} JAK inhibitor monitoring checks due (week {week})", n=len(items), week=weeks)
    )


def _schedule_card(ctx: RuleContext, state: str, items: list[_Due], start: date, patient_id: str) -> Finding:
    """One card per state (due / overdue) for all schedules in that state: one visit, one card, one order set."""
    weeks = (ctx.facts.today - start).days // 7
    names = ", ".join(schedule.display for schedule, *_ in items)
    wanted: dict[str, CodeRef] = {}
    sections = []
    for schedule, why, notes, codes in items:
        for code in codes.values():
            wanted.setdefault(code.code, code)
        sections.append(" ".join([f"- **{sentence(schedule.display)}** — {why}.", *notes, schedule.action]))
    suggestions = []
    if wanted:
        note = say("JAK inhibitor monitoring: {schedules}", schedules=names)
        label = (
            say("Order {test}", test=items[0][0].display)
            if len(items) == 1
            else say("Order the monitoring tests listed")
        )
        suggestions.append(
            ProposedSuggestion(
                label,
                tuple(
                    ProposedAction(
                        "create",
                        say("Order {test} (LOINC {code})", test=c.display, code=c.code),
                        service_request(c, patient_id, note),
                    )
                    for c in wanted.values()
                ),
            )
        )
    return Finding(
        rule_id="+".join(schedule.id for schedule, *_ in items),
        concern=f"monitoring:{state}",
        indicator="warning" if state == "overdue" else "info",
        summary=_summary(items, state, weeks),
        detail=say("**Treatment started:** {start} (week {week}).", start=start, week=weeks)
        + "\n\n"
        + "\n".join(sections),
        sources=list(dict.fromkeys(src for schedule, *_ in items for src in schedule.sources)),
        override_set="missing-data" if state == "overdue" else None,
        suggestions=suggestions,
    )


def _reviews(ctx: RuleContext, drugs: dict[str, date], names: dict[str, str]) -> Iterator[Finding]:
    facts = ctx.facts
    active_indications = {c.indication for c in facts.conditions if c.active and c.indication}
    for review in ctx.knowledge.rules.response_review:
        start = drugs.get(review.drug)
        if start is None or not (active_indications & set(review.indications)):
            continue
        days = (facts.today - start).days
        if not review.from_week * 7 <= days < review.until_week * 7:
            continue
        yield Finding(
            rule_id=review.id,
            concern=f"review:{review.id}",
            indicator="info",
            summary=review.summary.format(drug=names[review.drug], week=days // 7),
            detail=say(
                "**{drug} started:** {start} (week {week}).",
                drug=sentence(names[review.drug]),
                start=start,
                week=days // 7,
            )
            + f"\n\n{review.action}",
            sources=list(review.sources),
            drug=review.drug,
        )


def _thresholds(
    ctx: RuleContext, in_use: list[tuple[str, str, str | None]], start: date | None
) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    by_id = {t.id: t for t in k.rules.lab_threshold}
    for item in lab_thresholds.evaluate_phase(ctx, "on_treatment", in_use, start=start):
        if isinstance(item, Missing):
            threshold = by_id.get(item.rule_id)
            if threshold is not None and threshold.basis != "baseline":
                max_days = k.analytes[threshold.analyte].max_age_days
                if not facts.unreadable_within(threshold.analyte, max_days):
                    continue  # an absent result: the schedule says when it is needed
        yield item


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    starts, names, start = treatment(ctx)
    if not names:
        return
    in_use: list[tuple[str, str, str | None]] = [(drug_id, name, None) for drug_id, name in names.items()]
    if start is None:
        sources = tuple(dict.fromkeys(s for sch in ctx.knowledge.rules.monitoring_schedule for s in sch.sources))
        yield Missing(
            "monitoring-start-date",
            say("the on-treatment monitoring schedule"),
            say("the JAK inhibitor's start date is not recorded (no authoredOn or effective start)"),
            sources or ("S000",),
        )
    else:
        yield from _schedules(ctx, list(names), start, ctx.facts.patient_id)
        yield from _reviews(ctx, starts, names)
    yield from _thresholds(ctx, in_use, start)
