"""Condition-based contraindications (e.g. active tuberculosis)."""
from __future__ import annotations

from cds_service.findings import Finding, Missing
from cds_service.rules.context import RuleContext


def evaluate(ctx: RuleContext):
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
                    yield Missing(rule.id, concept.display, f"the patient's conditions could not be obtained: "
                                                            f"{conditions_missing}",
                                  tuple(rule.sources), order.order_id, order.drug)
                continue
            evidence = "; ".join(
                f"{c.display} ({'active' if c.active else 'history'}, "
                f"{'since ' + c.onset.isoformat() if c.onset else 'onset not recorded'}{c.how})" for c in present)
            yield Finding(
                rule_id=rule.id,
                concern=f"condition:{rule.concept}:{order.order_id}",
                indicator=rule.indicator,
                summary=rule.summary.format(drug=order.name),
                detail=f"**On record:** {evidence}.\n\n{rule.action}",
                sources=list(rule.sources),
                override_set="contraindication",
                order_id=order.order_id,
                drug=order.drug,
            )
