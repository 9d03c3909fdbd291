"""Infection results read before a JAK inhibitor starts (decisions 5, 15 and 21).

Latent tuberculosis (IGRA / TST / diagnosis, and whether preventive treatment was completed after it), hepatitis
B core antibody (with HBsAg and HBV DNA), hepatitis C antibody (with HCV RNA) and HIV (with antiretroviral
therapy and viral load). Tables, windows and wording: cards/rules/infections.toml; tests and codes:
cards/labs-serology.toml; treatments: cards/classes-infections.toml.

Results come from ``facts.coded_results`` (cds_service/facts/safety.py), newest first. The newest READABLE result
decides; a result that could not be read and is newer than it is said on the card (or, with no card, on the
could-not-check card), never taken as negative. Same-day results: a readable one wins over an unreadable
companion (a QuantiFERON report sends its interpretation and its bare numbers together). The critical cards
(HBsAg or HBV DNA detected, HCV RNA detected, active TB) are other rules' findings under the same concern: the
warnings here give way to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from cds_service import i18n
from cds_service.facts import CodedResult, ConditionFact, ResultReading, TreatmentRecord
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge.schemas.infections import CardText, HbvCoreRule, HcvAntibodyRule, HivRule, LatentTbRule
from cds_service.rules.common import condition_evidence, on_record_finding
from cds_service.rules.context import DraftOrder, RuleContext

_SHOWN = 3  # results of one kind listed on a card (the newest ones)


InfectionRule = LatentTbRule | HbvCoreRule | HcvAntibodyRule | HivRule


def _problem_list() -> str:
    return say("the problem list (conditions that contraindicate a JAK inhibitor)")


def _d(when: date | None) -> str:
    return i18n.day(when) if when else say("date not recorded")


def _status(status: str) -> str:
    """A medication record's FHIR status as a clinician reads it (an unknown code as it is)."""
    said = {
        "active": say("active"),
        "completed": say("completed"),
        "stopped": say("stopped"),
        "on-hold": say("on-hold"),
        "intended": say("intended"),
        "cancelled": say("cancelled"),
        "not-taken": say("not-taken"),
        "unknown": say("unknown"),
        "draft": say("draft"),
    }
    return said.get(status, status)


def read(ctx: RuleContext, test_ids: Sequence[str], since: date | None = None) -> ResultReading:
    return ctx.facts.results(test_ids, since)


def is_positive(ctx: RuleContext, result: CodedResult | None) -> bool:
    return result is not None and result.category in ctx.knowledge.rules.qualitative_test[result.test].positive


def result_line(ctx: RuleContext, result: CodedResult) -> str:
    test = ctx.knowledge.rules.qualitative_test[result.test]
    return say(
        "{test}: {answer} on {when} (LOINC {loinc})",
        test=test.display,
        answer=result.answer,
        when=_d(result.when),
        loinc=result.loinc,
    )


def unread_line(ctx: RuleContext, result: CodedResult) -> str:
    test = ctx.knowledge.rules.qualitative_test[result.test]
    return say(
        "{test} of {when} could not be read ({answer}; LOINC {loinc}): it is not taken as negative",
        test=test.display,
        when=_d(result.when),
        answer=result.answer,
        loinc=result.loinc,
    )


def unread_gaps(ctx: RuleContext, rule: InfectionRule, order: DraftOrder, results: list[CodedResult]) -> list[Missing]:
    tests = ctx.knowledge.rules.qualitative_test
    return [
        Missing(
            rule.id,
            tests[r.test].display,
            say("the result of {when} could not be read ({answer})", when=_d(r.when), answer=repr(r.answer)),
            tuple(rule.sources),
            order.order_id,
            order.drug,
        )
        for r in results
    ]


def unobtainable(ctx: RuleContext, rule: InfectionRule, order: DraftOrder, test_ids: list[str]) -> list[Missing]:
    """Tests with no result at all because the results could not be obtained (they may exist)."""
    gaps = []
    for test_id in test_ids:
        test = ctx.knowledge.rules.qualitative_test[test_id]
        why = ctx.facts.why_unavailable("Observation", test.loinc)
        if why and not ctx.facts.coded_results.get(test_id):
            gaps.append(
                Missing(
                    rule.id,
                    test.display,
                    say("results could not be obtained: {why}", why=why),
                    tuple(rule.sources),
                    order.order_id,
                    order.drug,
                )
            )
    return gaps


def treatments(ctx: RuleContext, class_id: str) -> list[TreatmentRecord]:
    return [t for t in ctx.facts.treatments if class_id in t.classes]


def treatment_line(record: TreatmentRecord) -> str:
    if record.end:
        dates = say(", started {start}, ended {end}", start=_d(record.start), end=record.end)
    else:
        dates = say(", started {start}", start=_d(record.start))
    return f"{record.display} ({_status(record.status)} {record.resource_type}{dates})"


def finding(
    ctx: RuleContext,
    rule: InfectionRule,
    text: CardText,
    order: DraftOrder,
    lines: list[str],
    *,
    days: int | None = None,
    covers: tuple[str, ...] = (),
) -> Finding:
    return on_record_finding(
        rule,
        order,
        rule_id=text.id,
        concern=f"{rule.concern}:{order.order_id}",
        indicator=text.indicator,
        summary=text.summary.format(drug=order.name, days=days),
        lines=lines,
        action=text.action.format(drug=order.name, days=days),
        covers=tuple(covers),
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
        lines += [result_line(ctx, r) for r in run[:_SHOWN]]
        starts.append(run[-1].when)
    else:
        persistent = next(
            (i for i, r in enumerate(readable) if r.test in rule.persistent_positive and is_positive(ctx, r)), None
        )
        if persistent is not None and decisive is not None:  # a readable result: decisive is the newest one
            run = _positive_run(ctx, readable, persistent)
            lines += [result_line(ctx, r) for r in run[:_SHOWN]]
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
                say("{condition} (diagnosis, active, since {onset})", condition=cond.display, onset=_d(cond.onset))
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
                _problem_list(),
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
    for record in records[:_SHOWN]:
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
            say("{result}: before the positive antibody of {when}", result=result_line(ctx, newest), when=_d(anchor))
        )
    else:
        lines.append(say("{result}: neither detected nor not detected", result=result_line(ctx, newest)))
    lines += [unread_line(ctx, r) for r in rna.unread]
    yield finding(ctx, rule, rule.rna_unknown, order, lines, covers=(display,))


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
    lines += [f"{treatment_line(t)}" for t in art[:_SHOWN]]
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
        yield Missing(rule.id, _problem_list(), why, tuple(rule.sources), order.order_id, order.drug)


# -- the family -------------------------------------------------------------------------------------------------

# each evaluator takes the rules of its own table (the `rule` argument differs by table)
EVALUATORS: dict[str, Callable[[RuleContext, Any, DraftOrder], Iterator[Finding | Missing]]] = {
    "latent_tb_rule": latent_tb,
    "hbv_core_rule": hbv_core,
    "hcv_antibody_rule": hcv_antibody,
    "hiv_rule": hiv,
}


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    for order in ctx.systemic_orders():
        for table, evaluator in EVALUATORS.items():
            for rule in ctx.knowledge.rules.for_drug(table, order.drug):
                yield from evaluator(ctx, rule, order)
