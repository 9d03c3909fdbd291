"""Condition-based contraindications (e.g. active tuberculosis)."""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.facts import ConditionFact
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.rules.context import RuleContext


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    conditions_missing = facts.why_unavailable("Condition")
    for order in ctx.systemic_orders():
        for rule in k.rules.condition_rule:
            if order.drug not in rule.drugs:
                continue
            concept = k.concepts[rule.concept]
            present = [c for c in facts.concept_present(rule.concept) if c.active or not concept.active_only]
            if not present:
                if conditions_missing:
                    yield Missing(
                        rule.id,
                        concept.display,
                        say("the patient's conditions could not be obtained: {why}", why=conditions_missing),
                        tuple(rule.sources),
                        order.order_id,
                        order.drug,
                    )
                continue
            evidence = "; ".join(_condition(c) for c in present)
            yield Finding(
                rule_id=rule.id,
                concern=f"condition:{rule.concept}:{order.order_id}",
                indicator=rule.indicator,
                summary=rule.summary.format(drug=order.name),
                detail=say("**On record:** {evidence}.", evidence=evidence) + f"\n\n{rule.action}",
                sources=list(rule.sources),
                override_set="contraindication",
                order_id=order.order_id,
                drug=order.drug,
            )


def _condition(c: ConditionFact) -> str:
    """'Active tuberculosis (active, since 2026-01-05)' ("; recognised by name" when read from the text)."""
    if c.active:
        if c.onset:
            return say("{condition} (active, since {onset}{how})", condition=c.display, onset=c.onset, how=c.how)
        return say("{condition} (active, onset not recorded{how})", condition=c.display, how=c.how)
    if c.onset:
        return say("{condition} (history, since {onset}{how})", condition=c.display, onset=c.onset, how=c.how)
    return say("{condition} (history, onset not recorded{how})", condition=c.display, how=c.how)
