"""Hepatitis B core antibody (with HBsAg and HBV DNA) and hepatitis C antibody (with HCV RNA)."""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge.schemas.infections import HbvCoreRule, HcvAntibodyRule
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.infections.common import (
    finding,
    is_positive,
    read,
    result_line,
    said_day,
    unobtainable,
    unread_gaps,
    unread_line,
)

# -- hepatitis B core antibody -------------------------------------------------------------------------------------


def hbv_core(ctx: RuleContext, rule: HbvCoreRule, order: DraftOrder) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    core = read(ctx, rule.core_tests)
    positives = [r for r in core.results if is_positive(ctx, r)]
    if not positives:
        yield from unread_gaps(ctx, rule, order, core.unread)
        yield from unobtainable(ctx, rule, order, rule.core_tests)
        return
    surface = read(ctx, rule.surface_tests)
    dna = read(ctx, [rule.dna_test])
    if (surface.results and is_positive(ctx, surface.results[0])) or (dna.results and is_positive(ctx, dna.results[0])):
        return  # the critical hepatitis-b card (newest HBsAg or HBV DNA positive)
    lines = [result_line(ctx, positives[0])]
    if core.decisive is not None and not is_positive(ctx, core.decisive):
        lines.append(
            say("the later {result} does not undo a positive anti-HBc", result=result_line(ctx, core.decisive))
        )
    if surface.decisive is None:
        why = facts.why_unavailable(
            "Observation", [c for t in rule.surface_tests for c in k.rules.qualitative_test[t].loinc]
        )
        lines.append(
            say("HBsAg: results could not be obtained ({why}): check HBsAg too", why=why)
            if why and not surface.results
            else say("HBsAg: no readable result on record: check HBsAg too")
        )
    elif is_positive(ctx, surface.decisive):
        lines.append(
            say("{result} (an older result: the newest could not be read)", result=result_line(ctx, surface.decisive))
        )
    else:
        lines.append(result_line(ctx, surface.decisive))
    lines += [unread_line(ctx, r) for r in surface.unread]
    text = rule.dna_unknown
    newest = dna.decisive
    if newest is None:
        why = facts.why_unavailable("Observation", k.rules.qualitative_test[rule.dna_test].loinc)
        display = k.rules.qualitative_test[rule.dna_test].display
        lines.append(
            say("{test}: results could not be obtained ({why})", test=display, why=why)
            if why and not dna.results
            else say("No readable {test} result on record.", test=display)
        )
    elif is_positive(ctx, newest):
        lines.append(
            say(
                "{result} (an older result: the newest could not be read; treat as active hepatitis B "
                "until shown otherwise)",
                result=result_line(ctx, newest),
            )
        )
    elif (
        newest.category == "negative"
        and newest.when is not None
        and (facts.today - newest.when).days <= rule.dna_within_days
        and not dna.unread
    ):
        lines.append(result_line(ctx, newest))
        text = rule.dna_not_detected
    elif newest.category == "negative" and dna.unread:
        lines.append(say("{result}, but a newer result could not be read", result=result_line(ctx, newest)))
    elif newest.category == "negative":
        lines.append(
            say(
                "{result}: older than {days} days, repeat it before starting",
                result=result_line(ctx, newest),
                days=rule.dna_within_days,
            )
        )
    else:
        lines.append(say("{result}: neither detected nor not detected", result=result_line(ctx, newest)))
    lines += [unread_line(ctx, r) for r in dna.unread]
    covers = tuple(k.rules.qualitative_test[t].display for t in [*rule.surface_tests, rule.dna_test])
    yield finding(ctx, rule, text, order, lines, covers=covers)


# -- hepatitis C antibody ------------------------------------------------------------------------------------------


def hcv_antibody(ctx: RuleContext, rule: HcvAntibodyRule, order: DraftOrder) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    antibody = read(ctx, rule.antibody_tests)
    positives = [r for r in antibody.results if is_positive(ctx, r)]
    if not positives:
        yield from unread_gaps(ctx, rule, order, antibody.unread)
        yield from unobtainable(ctx, rule, order, rule.antibody_tests)
        return
    rna = read(ctx, [rule.rna_test])
    if rna.results and is_positive(ctx, rna.results[0]):
        return  # the critical hepatitis-c card (newest HCV RNA detected)
    anchor = positives[0].when
    newest = rna.decisive
    if (
        newest is not None
        and newest.category == "negative"
        and not rna.unread
        and newest.when is not None
        and (anchor is None or newest.when >= anchor)
    ):
        return  # cleared or cured: HCV RNA not detected after the positive antibody
    lines = [result_line(ctx, positives[0])]
    display = k.rules.qualitative_test[rule.rna_test].display
    if newest is None:
        why = facts.why_unavailable("Observation", k.rules.qualitative_test[rule.rna_test].loinc)
        lines.append(
            say("{test}: results could not be obtained ({why})", test=display, why=why)
            if why and not rna.results
            else say("No readable {test} result on record.", test=display)
        )
    elif is_positive(ctx, newest):
        lines.append(say("{result} (an older result: the newest could not be read)", result=result_line(ctx, newest)))
    elif newest.category == "negative" and newest.when is not None:
        lines.append(
            say(
                "{result}: before the positive antibody of {when}",
                result=result_line(ctx, newest),
                when=said_day(anchor),
            )
        )
    else:
        lines.append(say("{result}: neither detected nor not detected", result=result_line(ctx, newest)))
    lines += [unread_line(ctx, r) for r in rna.unread]
    yield finding(ctx, rule, rule.rna_unknown, order, lines, covers=(display,))
