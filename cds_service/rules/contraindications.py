"""Contraindications (decision 5, critical) and not-recommended situations (decision 6, warning).

Reads ``[[contraindication]]`` entries: each names the evidence that triggers it (Conditions, coded results,
numeric results, active medication classes, another JAK inhibitor, a drug allergy, a recent live vaccine,
Child-Pugh class). One finding per rule and order lists every piece of evidence found, with dates. Data
that could not be obtained is reported as a gap; data that is simply absent is not evidence of anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date

from cds_service import i18n
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge import drugs as drugmod
from cds_service.knowledge.schemas.contraindication import Contraindication
from cds_service.rules.common import (
    class_evidence,
    condition_evidence,
    is_live_vaccine,
    on_record_finding,
)
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.text import lab, unit


def _d(when: date | None) -> str:
    return i18n.day(when) if when else say("date not recorded")


def _criticality() -> dict[str, str]:
    return {"high": say("high"), "low": say("low"), "unable-to-assess": say("unable-to-assess")}


# -- evidence per key ----------------------------------------------------------------------------------------------


def _test_evidence(
    ctx: RuleContext, test_ids: list[str], order: DraftOrder, rule: Contraindication
) -> tuple[list[str], list[Missing]]:
    k, facts = ctx.knowledge, ctx.facts
    found: list[str] = []
    gaps: list[Missing] = []
    for test_id in test_ids:
        test = k.rules.qualitative_test[test_id]
        if test.sex and facts.sex not in (None, test.sex):
            continue
        results = facts.coded_results.get(test_id) or []
        if not results:
            continue
        newest = results[0]
        if test.max_age_days is not None and (
            newest.when is None or (facts.today - newest.when).days > test.max_age_days
        ):
            continue
        if newest.category is None:
            gaps.append(
                Missing(
                    rule.id,
                    test.display,
                    say(
                        "the result of {when} could not be read ({answer})",
                        when=_d(newest.when),
                        answer=repr(newest.answer),
                    ),
                    tuple(rule.sources),
                    order.order_id,
                    order.drug,
                )
            )
        elif newest.category in test.positive:
            note = f" {test.note}" if test.note else ""
            found.append(
                say(
                    "{test}: {answer} on {when} (LOINC {loinc}).",
                    test=test.display,
                    answer=newest.answer,
                    when=_d(newest.when),
                    loinc=newest.loinc,
                )
                + note
            )
    return found, gaps


def _quantity_evidence(ctx: RuleContext, rule: Contraindication) -> list[str]:
    k, facts = ctx.knowledge, ctx.facts
    if rule.quantity_sex and facts.sex not in (None, rule.quantity_sex):
        return []
    found = []
    for analyte_id, limit in rule.quantity_at_least.items():
        analyte = k.analytes[analyte_id]
        value = facts.latest(analyte_id, analyte.max_age_days)
        if value is not None and value.value >= limit:
            found.append(
                say(
                    "{analyte}: {result} (positive at {limit} {unit} or more)",
                    analyte=analyte.display,
                    result=lab(value),
                    limit=float(limit),
                    unit=unit(analyte.canonical_unit),
                )
            )
    return found


def _other_jak_evidence(ctx: RuleContext, order: DraftOrder, categories: Sequence[str]) -> list[str]:
    found = []
    for med in ctx.facts.medications:
        if med.active and med.drug and med.drug.category in categories and med.drug.drug_id != order.drug:
            if med.start:
                found.append(
                    say(
                        "{medicine} (another JAK inhibitor; active {record}, since {start})",
                        medicine=med.display,
                        record=med.resource_type,
                        start=med.start,
                    )
                )
            else:
                found.append(
                    say(
                        "{medicine} (another JAK inhibitor; active {record})",
                        medicine=med.display,
                        record=med.resource_type,
                    )
                )
    for other in ctx.orders:
        if other.order_id != order.order_id and other.match.category in categories and other.drug != order.drug:
            found.append(say("{medicine} (another JAK inhibitor ordered together with this one)", medicine=other.name))
    return found


def _allergy_evidence(ctx: RuleContext, order: DraftOrder) -> list[str]:
    found = []
    for allergy in ctx.facts.allergies:
        match = drugmod.recognise(ctx.knowledge, allergy.code)
        if match is None or match.drug_id != order.drug:
            continue
        kinds = {
            None: say("allergy or intolerance"),
            "": say("allergy or intolerance"),
            "allergy": say("allergy"),
            "intolerance": say("intolerance"),
        }
        kind = kinds.get(allergy.kind, allergy.kind)
        crit = (
            say(", criticality {criticality}", criticality=_criticality().get(allergy.criticality, allergy.criticality))
            if allergy.criticality
            else ""
        )
        recorded = say(", recorded {when}", when=allergy.recorded) if allergy.recorded else ""
        found.append(f"{allergy.display} ({kind}{crit}{recorded})")
    return found


def _vaccine_evidence(ctx: RuleContext, days: int) -> list[str]:
    found = []
    for vaccines in ctx.knowledge.rules.live_vaccine.values():
        for imm in ctx.facts.immunizations:
            if imm.status != "completed" or imm.when is None:
                continue
            ago = (ctx.facts.today - imm.when).days
            if 0 <= ago <= days and is_live_vaccine(imm, vaccines):
                codes = ", ".join(
                    f"{'CVX' if 'cvx' in s.lower() else 'ATC' if 'atc' in s.lower() else s} {c}"
                    for s, c in imm.codes
                    if c
                )
                found.append(
                    say(
                        "{vaccine} given on {when}, {days} days ago (live vaccine)",
                        vaccine=f"{imm.display} ({codes})" if codes else imm.display,
                        when=imm.when,
                        days=ago,
                    )
                )
    return found


# -- the rule --------------------------------------------------------------------------------------------------


def _evaluate_rule(ctx: RuleContext, rule: Contraindication, order: DraftOrder) -> Iterator[Finding | Missing]:
    facts = ctx.facts
    child_pugh = getattr(facts, "child_pugh", None)
    if rule.unless_child_pugh_recorded and child_pugh is not None:
        return
    evidence: list[str] = []
    gaps: list[Missing] = []
    unavailable: list[tuple[str, str]] = []  # (what, why)
    if rule.concepts:
        evidence += condition_evidence(ctx, rule.concepts, rule.history_within_days)
        why = facts.why_unavailable("Condition")
        if why:
            unavailable.append((say("the problem list (conditions that contraindicate a JAK inhibitor)"), why))
    if rule.positive_tests:
        found, test_gaps = _test_evidence(ctx, rule.positive_tests, order, rule)
        evidence += found
        gaps += test_gaps
        for test_id in rule.positive_tests:
            test = ctx.knowledge.rules.qualitative_test[test_id]
            why = facts.why_unavailable("Observation", test.loinc)
            if why and not facts.coded_results.get(test_id):
                unavailable.append((test.display, say("results could not be obtained: {why}", why=why)))
    if rule.quantity_at_least:
        evidence += _quantity_evidence(ctx, rule)
    if rule.medication_classes or rule.other_systemic_jak:
        if rule.medication_classes:
            evidence += class_evidence(ctx, rule.medication_classes)
        if rule.other_systemic_jak:
            evidence += _other_jak_evidence(ctx, order, rule.other_jak_categories)
        why = facts.why_medications_unavailable()
        if why:
            unavailable.append(
                (say("current medications (combinations with biologics, JAK inhibitors, immunosuppressants)"), why)
            )
    if rule.drug_allergy:
        evidence += _allergy_evidence(ctx, order)
        why = facts.why_unavailable("AllergyIntolerance")
        if why:
            unavailable.append((say("allergies and intolerances (hypersensitivity to the drug)"), why))
    if rule.live_vaccine_within_days:
        evidence += _vaccine_evidence(ctx, rule.live_vaccine_within_days)
        why = facts.why_unavailable("Immunization")
        if why:
            unavailable.append((say("recent vaccinations (live vaccines)"), why))
    if rule.child_pugh and child_pugh is not None and getattr(child_pugh, "klass", None) in rule.child_pugh:
        evidence.append(child_pugh.describe())
    if not evidence:
        yield from gaps
        for what, why in unavailable:
            # one line per kind of data on the could-not-check card (gaps with the same text are merged)
            yield Missing(rule.id, what, why, tuple(rule.sources), order.order_id, order.drug)
        return
    yield on_record_finding(
        rule,
        order,
        rule_id=rule.id,
        indicator=rule.indicator,
        concern=f"contraindication:{rule.concern or rule.id}:{order.order_id}",
        summary=rule.summary.format(drug=order.name),
        lines=evidence,
        action=rule.action,
    )


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    for order in ctx.systemic_orders():
        for rule in ctx.knowledge.rules.for_drug("contraindication", order.drug):
            yield from _evaluate_rule(ctx, rule, order)
