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

from datetime import date, timedelta

from cds_service import i18n
from cds_service.findings import Finding, Missing
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.common import condition_evidence, on_record_finding
from cds_service.facts import ResultReading

_PROBLEM_LIST = "the problem list (conditions that contraindicate a JAK inhibitor)"
_SHOWN = 3                     # results of one kind listed on a card (the newest ones)


def _d(when: date | None) -> str:
    return when.isoformat() if when else "date not recorded"


def read(ctx: RuleContext, test_ids, since: date | None = None) -> ResultReading:
    return ctx.facts.results(test_ids, since)


def is_positive(ctx: RuleContext, result) -> bool:
    return result is not None and result.category in ctx.knowledge.rules.qualitative_test[result.test].positive


def result_line(ctx: RuleContext, result) -> str:
    test = ctx.knowledge.rules.qualitative_test[result.test]
    return f"{test.display}: {result.answer} on {_d(result.when)} (LOINC {result.loinc})"


def unread_line(ctx: RuleContext, result) -> str:
    test = ctx.knowledge.rules.qualitative_test[result.test]
    return (f"{test.display} of {_d(result.when)} could not be read ({result.answer}; LOINC {result.loinc}): it is "
            f"not taken as negative")


def unread_gaps(ctx: RuleContext, rule, order: DraftOrder, results) -> list[Missing]:
    tests = ctx.knowledge.rules.qualitative_test
    return [Missing(rule.id, tests[r.test].display, f"the result of {_d(r.when)} could not be read ({r.answer!r})",
                    tuple(rule.sources), order.order_id, order.drug) for r in results]


def unobtainable(ctx: RuleContext, rule, order: DraftOrder, test_ids) -> list[Missing]:
    """Tests with no result at all because the results could not be obtained (they may exist)."""
    gaps = []
    for test_id in test_ids:
        test = ctx.knowledge.rules.qualitative_test[test_id]
        why = ctx.facts.why_unavailable("Observation", test.loinc)
        if why and not ctx.facts.coded_results.get(test_id):
            gaps.append(Missing(rule.id, test.display, f"results could not be obtained: {why}", tuple(rule.sources),
                                order.order_id, order.drug))
    return gaps


def treatments(ctx: RuleContext, class_id: str) -> list:
    return [t for t in ctx.facts.treatments if class_id in t.classes]


def treatment_line(record) -> str:
    dates = f", started {_d(record.start)}" + (f", ended {record.end.isoformat()}" if record.end else "")
    return f"{record.display} ({record.status} {record.resource_type}{dates})"


def finding(ctx: RuleContext, rule, text, order: DraftOrder, lines: list[str], *, days: int | None = None,
            covers: tuple[str, ...] = ()) -> Finding:
    return on_record_finding(rule, order, rule_id=text.id, concern=f"{rule.concern}:{order.order_id}",
                             indicator=text.indicator, summary=text.summary.format(drug=order.name, days=days),
                             lines=lines, action=text.action.format(drug=order.name, days=days),
                             covers=i18n.with_english(covers))


# -- latent tuberculosis -------------------------------------------------------------------------------------------

def _positive_run(ctx: RuleContext, readable: list, start: int) -> list:
    """The positive result at ``start`` and the positives before it, back to the first readable non-positive."""
    run = []
    for result in readable[start:]:
        if not is_positive(ctx, result):
            break
        run.append(result)
    return run


def latent_tb(ctx: RuleContext, rule, order: DraftOrder):
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
        persistent = next((i for i, r in enumerate(readable)
                           if r.test in rule.persistent_positive and is_positive(ctx, r)), None)
        if persistent is not None:
            run = _positive_run(ctx, readable, persistent)
            lines += [result_line(ctx, r) for r in run[:_SHOWN]]
            lines.append(f"the later {result_line(ctx, decisive)} does not undo a positive IGRA (reversions are "
                         f"common): latent tuberculosis is not excluded")
            starts.append(run[-1].when)
    conditions = [c for name in rule.concepts for c in facts.concept_present(name)]
    for cond in conditions:
        if cond.active:
            lines.append(f"{cond.display} (diagnosis, active, since {_d(cond.onset)})")
            starts.append(cond.onset)
    unread = [unread_line(ctx, r) for r in reading.unread]
    gaps = unobtainable(ctx, rule, order, rule.tests)
    if len(gaps) > 1:                   # one cause (the results could not be fetched): one line
        gaps = [Missing(rule.id, " / ".join(g.check for g in gaps), gaps[0].why, tuple(rule.sources),
                        order.order_id, order.drug)]
    if rule.concepts and facts.why_unavailable("Condition"):
        gaps.append(Missing(rule.id, _PROBLEM_LIST, facts.why_unavailable("Condition"), tuple(rule.sources),
                            order.order_id, order.drug))
    if lines:
        # the first positive of the run (or the diagnosis): treatment must start on or after it
        known = [s for s in starts if s is not None]
        episode = min(known) if known and len(known) == len(starts) else None
        treated, treatment_lines = _tb_treatment(ctx, rule, episode, conditions)
        if treated:
            return
        yield finding(ctx, rule, rule.latent, order, lines + treatment_lines + unread)
        return
    if decisive is not None and decisive.category == "indeterminate" and decisive.when is not None \
            and (facts.today - decisive.when).days <= rule.indeterminate_within_days:
        yield finding(ctx, rule, rule.indeterminate, order, [result_line(ctx, decisive)] + unread)
        return
    yield from unread_gaps(ctx, rule, order, reading.unread)
    yield from gaps


def _tb_treatment(ctx: RuleContext, rule, episode: date | None, conditions) -> tuple[bool, list[str]]:
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
            lines.append(f"{treatment_line(record)}: preventive treatment in progress, not yet completed")
        elif record.status == "stopped":
            lines.append(f"{treatment_line(record)}: 'stopped' means halted before the course ended; if the full "
                         f"course was taken, record it as completed")
        elif record.status == "completed" and (record.start is None or episode is None):
            lines.append(f"{treatment_line(record)}: completed, but it cannot be placed after the positive result "
                         f"(a date is not recorded)")
        elif record.status == "completed":
            lines.append(f"{treatment_line(record)}: completed before the positive result of {episode.isoformat()}")
        else:
            lines.append(f"{treatment_line(record)}: not recorded as completed")
    why = ctx.facts.why_medications_unavailable()
    if why:
        lines.append(f"The medication list could not be obtained ({why}): completed preventive treatment could not "
                     f"be checked.")
    elif not records:
        display = ctx.knowledge.rules.treatment_class[rule.treatment_class].display
        lines.append(f"No {display} on record.")
    return False, lines


# -- hepatitis B core antibody -------------------------------------------------------------------------------------

def hbv_core(ctx: RuleContext, rule, order: DraftOrder):
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
        return                          # the critical hepatitis-b card (newest HBsAg or HBV DNA positive)
    lines = [result_line(ctx, positives[0])]
    if core.decisive is not None and not is_positive(ctx, core.decisive):
        lines.append(f"the later {result_line(ctx, core.decisive)} does not undo a positive anti-HBc")
    if surface.decisive is None:
        why = facts.why_unavailable("Observation", [c for t in rule.surface_tests for c in k.rules.qualitative_test[t].loinc])
        lines.append(f"HBsAg: results could not be obtained ({why}): check HBsAg too" if why and not surface.results
                     else "HBsAg: no readable result on record: check HBsAg too")
    elif is_positive(ctx, surface.decisive):
        lines.append(f"{result_line(ctx, surface.decisive)} (an older result: the newest could not be read)")
    else:
        lines.append(result_line(ctx, surface.decisive))
    lines += [unread_line(ctx, r) for r in surface.unread]
    text = rule.dna_unknown
    newest = dna.decisive
    if newest is None:
        why = facts.why_unavailable("Observation", k.rules.qualitative_test[rule.dna_test].loinc)
        display = k.rules.qualitative_test[rule.dna_test].display
        lines.append(f"{display}: results could not be obtained ({why})" if why and not dna.results
                     else f"No readable {display} result on record.")
    elif is_positive(ctx, newest):
        lines.append(f"{result_line(ctx, newest)} (an older result: the newest could not be read; treat as active "
                     f"hepatitis B until shown otherwise)")
    elif newest.category == "negative" and newest.when is not None \
            and (facts.today - newest.when).days <= rule.dna_within_days and not dna.unread:
        lines.append(result_line(ctx, newest))
        text = rule.dna_not_detected
    elif newest.category == "negative" and dna.unread:
        lines.append(f"{result_line(ctx, newest)}, but a newer result could not be read")
    elif newest.category == "negative":
        lines.append(f"{result_line(ctx, newest)}: older than {rule.dna_within_days} days, repeat it before "
                     f"starting")
    else:
        lines.append(f"{result_line(ctx, newest)}: neither detected nor not detected")
    lines += [unread_line(ctx, r) for r in dna.unread]
    covers = tuple(k.rules.qualitative_test[t].display for t in [*rule.surface_tests, rule.dna_test])
    yield finding(ctx, rule, text, order, lines, covers=covers)


# -- hepatitis C antibody ------------------------------------------------------------------------------------------

def hcv_antibody(ctx: RuleContext, rule, order: DraftOrder):
    k, facts = ctx.knowledge, ctx.facts
    antibody = read(ctx, rule.antibody_tests)
    positives = [r for r in antibody.results if is_positive(ctx, r)]
    if not positives:
        yield from unread_gaps(ctx, rule, order, antibody.unread)
        yield from unobtainable(ctx, rule, order, rule.antibody_tests)
        return
    rna = read(ctx, [rule.rna_test])
    if rna.results and is_positive(ctx, rna.results[0]):
        return                          # the critical hepatitis-c card (newest HCV RNA detected)
    anchor = positives[0].when
    newest = rna.decisive
    if newest is not None and newest.category == "negative" and not rna.unread and newest.when is not None \
            and (anchor is None or newest.when >= anchor):
        return                          # cleared or cured: HCV RNA not detected after the positive antibody
    lines = [result_line(ctx, positives[0])]
    display = k.rules.qualitative_test[rule.rna_test].display
    if newest is None:
        why = facts.why_unavailable("Observation", k.rules.qualitative_test[rule.rna_test].loinc)
        lines.append(f"{display}: results could not be obtained ({why})" if why and not rna.results
                     else f"No readable {display} result on record.")
    elif is_positive(ctx, newest):
        lines.append(f"{result_line(ctx, newest)} (an older result: the newest could not be read)")
    elif newest.category == "negative" and newest.when is not None:
        lines.append(f"{result_line(ctx, newest)}: before the positive antibody of {_d(anchor)}")
    else:
        lines.append(f"{result_line(ctx, newest)}: neither detected nor not detected")
    lines += [unread_line(ctx, r) for r in rna.unread]
    yield finding(ctx, rule, rule.rna_unknown, order, lines, covers=(display,))


# -- HIV -------------------------------------------------------------------------------------------------------

def hiv(ctx: RuleContext, rule, order: DraftOrder):
    k, facts = ctx.knowledge, ctx.facts
    conditions = condition_evidence(ctx, rule.concepts, None)
    loads = read(ctx, [rule.load_test])
    detected = [r for r in loads.results if is_positive(ctx, r)]
    if not conditions and not detected:
        yield from _hiv_screen(ctx, rule, order, loads)
        return
    lines = list(conditions)
    if detected and not conditions:
        lines.append(f"{result_line(ctx, detected[0])} (HIV infection shown by a detectable viral load)")
    since = facts.today - timedelta(days=rule.load_within_days)
    recent = read(ctx, [rule.load_test], since=since)
    art = [t for t in treatments(ctx, rule.treatment_class) if t.active]
    load_display = k.rules.qualitative_test[rule.load_test].display
    if not art:
        why = facts.why_medications_unavailable()
        display = k.rules.treatment_class[rule.treatment_class].display
        lines.append(f"The medication list could not be obtained ({why}): {display} could not be checked, so the "
                     f"infection is taken as untreated." if why else f"No active {display} on record.")
        if recent.decisive is not None:
            lines.append(result_line(ctx, recent.decisive))
        yield finding(ctx, rule, rule.untreated, order, lines + [unread_line(ctx, r) for r in recent.unread])
        return
    lines += [f"{treatment_line(t)}" for t in art[:_SHOWN]]
    lines += [unread_line(ctx, r) for r in recent.unread]
    newest = recent.decisive
    if is_positive(ctx, newest):
        yield finding(ctx, rule, rule.detectable, order, [*lines, result_line(ctx, newest)],
                      days=rule.load_within_days, covers=(load_display,))
    elif newest is not None and newest.category == "negative" and not recent.unread:
        yield finding(ctx, rule, rule.suppressed, order, [*lines, result_line(ctx, newest)],
                      days=rule.load_within_days, covers=(load_display,))
    else:
        if newest is not None:
            lines.append(f"{result_line(ctx, newest)}: "
                         + ("not readable as suppressed or detectable" if newest.category != "negative"
                            else "followed by a result that could not be read"))
        else:
            why = facts.why_unavailable("Observation", k.rules.qualitative_test[rule.load_test].loinc)
            older = loads.decisive
            lines.append(f"{load_display}: results could not be obtained ({why})" if why and not loads.results
                         else f"No {load_display} in the last {rule.load_within_days} days"
                         + (f" (latest: {result_line(ctx, older)})" if older is not None else " on record") + ".")
        yield finding(ctx, rule, rule.load_unknown, order, lines, days=rule.load_within_days, covers=(load_display,))


def _hiv_screen(ctx: RuleContext, rule, order: DraftOrder, loads: ResultReading):
    facts = ctx.facts
    screen = read(ctx, rule.screen_tests)
    if is_positive(ctx, screen.decisive):
        lines = [result_line(ctx, screen.decisive)]
        if loads.decisive is not None:
            lines.append(f"{result_line(ctx, loads.decisive)} (a viral load does not replace the confirmation test)")
        yield finding(ctx, rule, rule.screen_reactive, order, lines + [unread_line(ctx, r) for r in screen.unread])
        return
    yield from unread_gaps(ctx, rule, order, screen.unread)
    yield from unobtainable(ctx, rule, order, rule.screen_tests)
    why = facts.why_unavailable("Condition")
    if why:
        yield Missing(rule.id, _PROBLEM_LIST, why, tuple(rule.sources), order.order_id, order.drug)


# -- the family -------------------------------------------------------------------------------------------------

EVALUATORS = {"latent_tb_rule": latent_tb, "hbv_core_rule": hbv_core, "hcv_antibody_rule": hcv_antibody,
              "hiv_rule": hiv}


def evaluate(ctx: RuleContext):
    for order in ctx.systemic_orders():
        for table, evaluator in EVALUATORS.items():
            for rule in ctx.knowledge.rules.for_drug(table, order.drug):
                yield from evaluator(ctx, rule, order)
