"""HIV: diagnosis or detected viral load (with antiretroviral therapy and viral load), or the screening test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from cds_service.facts import ResultReading
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge.schemas.infections import HivRule
from cds_service.rules.common import condition_evidence
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.infections.common import (
    SHOWN,
    finding,
    is_positive,
    problem_list,
    read,
    result_line,
    treatment_line,
    treatments,
    unobtainable,
    unread_gaps,
    unread_line,
)

# -- HIV -------------------------------------------------------------------------------------------------------


def hiv(ctx: RuleContext, rule: HivRule, order: DraftOrder) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    conditions = condition_evidence(ctx, rule.concepts, None)
    loads = read(ctx, [rule.load_test])
    detected = [r for r in loads.results if is_positive(ctx, r)]
    if not conditions and not detected:
        yield from _hiv_screen(ctx, rule, order, loads)
        return
    lines = list(conditions)
    if detected and not conditions:
        lines.append(
            say("{result} (HIV infection shown by a detectable viral load)", result=result_line(ctx, detected[0]))
        )
    since = facts.today - timedelta(days=rule.load_within_days)
    recent = read(ctx, [rule.load_test], since=since)
    art = [t for t in treatments(ctx, rule.treatment_class) if t.active]
    load_display = k.rules.qualitative_test[rule.load_test].display
    if not art:
        why = facts.why_medications_unavailable()
        display = k.rules.treatment_class[rule.treatment_class].display
        lines.append(
            say(
                "The medication list could not be obtained ({why}): {treatment} could not be checked, so "
                "the infection is taken as untreated.",
                why=why,
                treatment=display,
            )
            if why
            else say("No active {treatment} on record.", treatment=display)
        )
        if recent.decisive is not None:
            lines.append(result_line(ctx, recent.decisive))
        yield finding(ctx, rule, rule.untreated, order, lines + [unread_line(ctx, r) for r in recent.unread])
        return
    lines += [f"{treatment_line(t)}" for t in art[:SHOWN]]
    lines += [unread_line(ctx, r) for r in recent.unread]
    newest = recent.decisive
    if newest is not None and is_positive(ctx, newest):
        yield finding(
            ctx,
            rule,
            rule.detectable,
            order,
            [*lines, result_line(ctx, newest)],
            days=rule.load_within_days,
            covers=(load_display,),
        )
    elif newest is not None and newest.category == "negative" and not recent.unread:
        yield finding(
            ctx,
            rule,
            rule.suppressed,
            order,
            [*lines, result_line(ctx, newest)],
            days=rule.load_within_days,
            covers=(load_display,),
        )
    else:
        if newest is not None:
            lines.append(
                say("{result}: not readable as suppressed or detectable", result=result_line(ctx, newest))
                if newest.category != "negative"
                else say("{result}: followed by a result that could not be read", result=result_line(ctx, newest))
            )
        else:
            why = facts.why_unavailable("Observation", k.rules.qualitative_test[rule.load_test].loinc)
            older = loads.decisive
            if why and not loads.results:
                lines.append(say("{test}: results could not be obtained ({why})", test=load_display, why=why))
            elif older is not None:
                lines.append(
                    say(
                        "No {test} in the last {days} days (latest: {result}).",
                        test=load_display,
                        days=rule.load_within_days,
                        result=result_line(ctx, older),
                    )
                )
            else:
                lines.append(
                    say("No {test} in the last {days} days on record.", test=load_display, days=rule.load_within_days)
                )
        yield finding(ctx, rule, rule.load_unknown, order, lines, days=rule.load_within_days, covers=(load_display,))


def _hiv_screen(
    ctx: RuleContext, rule: HivRule, order: DraftOrder, loads: ResultReading
) -> Iterator[Finding | Missing]:
    facts = ctx.facts
    screen = read(ctx, rule.screen_tests)
    if screen.decisive is not None and is_positive(ctx, screen.decisive):
        lines = [result_line(ctx, screen.decisive)]
        if loads.decisive is not None:
            lines.append(
                say(
                    "{result} (a viral load does not replace the confirmation test)",
                    result=result_line(ctx, loads.decisive),
                )
            )
        yield finding(ctx, rule, rule.screen_reactive, order, lines + [unread_line(ctx, r) for r in screen.unread])
        return
    yield from unread_gaps(ctx, rule, order, screen.unread)
    yield from unobtainable(ctx, rule, order, rule.screen_tests)
    why = facts.why_unavailable("Condition")
    if why:
        yield Missing(rule.id, problem_list(), why, tuple(rule.sources), order.order_id, order.drug)
