"""Latent tuberculosis: IGRA / TST / diagnosis, and whether preventive treatment was completed after it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from cds_service.facts import CodedResult, ConditionFact
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge.schemas.infections import LatentTbRule
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.infections.common import (
    SHOWN,
    finding,
    is_positive,
    problem_list,
    read,
    result_line,
    said_day,
    treatment_line,
    treatments,
    unobtainable,
    unread_gaps,
    unread_line,
)

# -- latent tuberculosis -------------------------------------------------------------------------------------------


def _positive_run(ctx: RuleContext, readable: list[CodedResult], start: int) -> list[CodedResult]:
    """The positive result at ``start`` and the positives before it, back to the first readable non-positive."""
    run = []
    for result in readable[start:]:
        if not is_positive(ctx, result):
            break
        run.append(result)
    return run


def latent_tb(ctx: RuleContext, rule: LatentTbRule, order: DraftOrder) -> Iterator[Finding | Missing]:
    facts = ctx.facts
    reading = read(ctx, rule.tests)
    readable = [r for r in reading.results if r.category is not None]
    lines: list[str] = []
    starts: list[date | None] = []
    decisive = reading.decisive
    if is_positive(ctx, decisive):
        run = _positive_run(ctx, readable, 0)
        lines += [result_line(ctx, r) for r in run[:SHOWN]]
        starts.append(run[-1].when)
    else:
        persistent = next(
            (i for i, r in enumerate(readable) if r.test in rule.persistent_positive and is_positive(ctx, r)), None
        )
        if persistent is not None and decisive is not None:  # a readable result: decisive is the newest one
            run = _positive_run(ctx, readable, persistent)
            lines += [result_line(ctx, r) for r in run[:SHOWN]]
            lines.append(
                say(
                    "the later {result} does not undo a positive IGRA (reversions are common): latent "
                    "tuberculosis is not excluded",
                    result=result_line(ctx, decisive),
                )
            )
            starts.append(run[-1].when)
    conditions = [c for name in rule.concepts for c in facts.concept_present(name)]
    for cond in conditions:
        if cond.active:
            lines.append(
                say(
                    "{condition} (diagnosis, active, since {onset})", condition=cond.display, onset=said_day(cond.onset)
                )
            )
            starts.append(cond.onset)
    unread = [unread_line(ctx, r) for r in reading.unread]
    gaps = unobtainable(ctx, rule, order, rule.tests)
    if len(gaps) > 1:  # one cause (the results could not be fetched): one line
        gaps = [
            Missing(
                rule.id, " / ".join(g.check for g in gaps), gaps[0].why, tuple(rule.sources), order.order_id, order.drug
            )
        ]
    if rule.concepts and (conditions_why := facts.why_unavailable("Condition")):
        gaps.append(
            Missing(
                rule.id,
                problem_list(),
                conditions_why,
                tuple(rule.sources),
                order.order_id,
                order.drug,
            )
        )
    if lines:
        # the first positive of the run (or the diagnosis): treatment must start on or after it
        known = [s for s in starts if s is not None]
        episode = min(known) if known and len(known) == len(starts) else None
        treated, treatment_lines = _tb_treatment(ctx, rule, episode, conditions)
        if treated:
            return
        yield finding(ctx, rule, rule.latent, order, lines + treatment_lines + unread)
        return
    if (
        decisive is not None
        and decisive.category == "indeterminate"
        and decisive.when is not None
        and (facts.today - decisive.when).days <= rule.indeterminate_within_days
    ):
        yield finding(ctx, rule, rule.indeterminate, order, [result_line(ctx, decisive), *unread])
        return
    yield from unread_gaps(ctx, rule, order, reading.unread)
    yield from gaps


def _tb_treatment(
    ctx: RuleContext, rule: LatentTbRule, episode: date | None, conditions: list[ConditionFact]
) -> tuple[bool, list[str]]:
    """(completed preventive treatment on record after ``episode``?, lines saying what was found)."""
    records = treatments(ctx, rule.treatment_class)
    if episode is not None:
        if any(r.status == "completed" and r.start is not None and r.start >= episode for r in records):
            return True, []
        if any(not c.active and c.abatement is not None and c.abatement >= episode for c in conditions):
            return True, []
    lines = []
    for record in records[:SHOWN]:
        if record.active:
            lines.append(
                say(
                    "{treatment}: preventive treatment in progress, not yet completed", treatment=treatment_line(record)
                )
            )
        elif record.status == "stopped":
            lines.append(
                say(
                    "{treatment}: 'stopped' means halted before the course ended; if the full course was "
                    "taken, record it as completed",
                    treatment=treatment_line(record),
                )
            )
        elif record.status == "completed" and (record.start is None or episode is None):
            lines.append(
                say(
                    "{treatment}: completed, but it cannot be placed after the positive result (a date is "
                    "not recorded)",
                    treatment=treatment_line(record),
                )
            )
        elif record.status == "completed":
            lines.append(
                say(
                    "{treatment}: completed before the positive result of {when}",
                    treatment=treatment_line(record),
                    when=episode,
                )
            )
        else:
            lines.append(say("{treatment}: not recorded as completed", treatment=treatment_line(record)))
    why = ctx.facts.why_medications_unavailable()
    if why:
        lines.append(
            say(
                "The medication list could not be obtained ({why}): completed preventive treatment could "
                "not be checked.",
                why=why,
            )
        )
    elif not records:
        display = ctx.knowledge.rules.treatment_class[rule.treatment_class].display
        lines.append(say("No {treatment} on record.", treatment=display))
    return False, lines
