"""What the infection rules share: reading results and treatments, the lines that say them, and the card."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from cds_service import i18n
from cds_service.facts import CodedResult, ResultReading, TreatmentRecord
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge.schemas.infections import CardText, HbvCoreRule, HcvAntibodyRule, HivRule, LatentTbRule
from cds_service.rules.common import on_record_finding
from cds_service.rules.context import DraftOrder, RuleContext

SHOWN = 3  # results of one kind listed on a card (the newest ones)


InfectionRule = LatentTbRule | HbvCoreRule | HcvAntibodyRule | HivRule


def problem_list() -> str:
    return say("the problem list (conditions that contraindicate a JAK inhibitor)")


def said_day(when: date | None) -> str:
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
        when=said_day(result.when),
        loinc=result.loinc,
    )


def unread_line(ctx: RuleContext, result: CodedResult) -> str:
    test = ctx.knowledge.rules.qualitative_test[result.test]
    return say(
        "{test} of {when} could not be read ({answer}; LOINC {loinc}): it is not taken as negative",
        test=test.display,
        when=said_day(result.when),
        answer=result.answer,
        loinc=result.loinc,
    )


def unread_gaps(ctx: RuleContext, rule: InfectionRule, order: DraftOrder, results: list[CodedResult]) -> list[Missing]:
    tests = ctx.knowledge.rules.qualitative_test
    return [
        Missing(
            rule.id,
            tests[r.test].display,
            say("the result of {when} could not be read ({answer})", when=said_day(r.when), answer=repr(r.answer)),
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
        dates = say(", started {start}, ended {end}", start=said_day(record.start), end=record.end)
    else:
        dates = say(", started {start}", start=said_day(record.start))
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
