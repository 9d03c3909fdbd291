"""Off-label use (decision 13): an info card with the evidence summary.

With an order reason (reasonCode / reasonReference): off-label when every recognised reason is an indication
the drug is not approved for; a reason that is not recognised says nothing (it may be a subtype of an approved
indication). Without a reason: off-label when no active condition is an approved indication and an active
condition is an off-label indication with an evidence entry (``conditions_need_evidence``).
"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding
from cds_service.i18n import say
from cds_service.rules.context import DraftOrder, RuleContext


def _indication_name(ctx: RuleContext, indication: str) -> str:
    entry = ctx.knowledge.indications.get(indication)
    return entry.display if entry else indication


def offlabel_indications(ctx: RuleContext, order: DraftOrder, need_evidence: bool) -> tuple[list[str], str]:
    """(off-label indication ids for this order, how they were found); empty when not off-label or unknown."""
    approved = set(ctx.knowledge.drugs[order.drug].indications)
    if order.reason_given:
        if not order.reasons or any(r in approved for r in order.reasons):
            return [], ""
        return list(order.reasons), "order reason"
    active = [c for c in ctx.facts.conditions if c.active and c.indication]
    if any(c.indication in approved for c in active):
        return [], ""
    evidence = {e.indication for e in ctx.knowledge.rules.offlabel_evidence if e.drug == order.drug}
    found = [c.indication for c in active if c.indication and (not need_evidence or c.indication in evidence)]
    return list(dict.fromkeys(found)), "condition on record"


def _evidence_lines(
    ctx: RuleContext, order: DraftOrder, indications: list[str], no_evidence: str
) -> tuple[str, list[str]]:
    lines: list[str] = []
    sources: list[str] = []
    for indication in indications:
        name = _indication_name(ctx, indication).capitalize()
        entries = [
            e for e in ctx.knowledge.rules.offlabel_evidence if e.drug == order.drug and e.indication == indication
        ]
        if not entries:
            lines.append(f"- **{name}:** {no_evidence}")
            continue
        for e in entries:
            text = say("- **{indication}:** best evidence {evidence}", indication=name, evidence=e.evidence)
            if e.n is not None and "n=" not in e.evidence:
                text += f" (n={e.n})"
            if e.dose:
                text += say("; dose used: {dose}", dose=e.dose)
            if e.findings:
                text += f"; {e.findings}"
            lines.append(text + f" [{', '.join(e.sources)}].")
            sources += e.sources
    return "\n".join(lines), sources


def evaluate(ctx: RuleContext) -> Iterator[Finding]:
    k = ctx.knowledge
    for rule in k.rules.offlabel:
        for order in ctx.systemic_orders():
            if order.drug not in rule.drugs:
                continue
            indications, how = offlabel_indications(ctx, order, rule.conditions_need_evidence)
            if not indications:
                continue
            names = [_indication_name(ctx, i) for i in indications]
            drug = k.drugs[order.drug]
            approved = ", ".join(_indication_name(ctx, i) for i in drug.indications) or say("none listed")
            if how == "order reason":
                why = say(
                    "**Order reason:** {reasons} — not an approved indication of {drug}.",
                    reasons=", ".join(names),
                    drug=order.name,
                )
            else:
                on_record = "; ".join(
                    say("{condition} (since {onset})", condition=c.display, onset=c.onset) if c.onset else c.display
                    for c in ctx.facts.conditions
                    if c.active and c.indication in indications
                )
                why = say(
                    "**No order reason given**, and no approved indication of {drug} is recorded as an active "
                    "condition. **On record:** {conditions}. If the order is for another, approved indication, "
                    "add it as the order's reason.",
                    drug=order.name,
                    conditions=on_record,
                )
            evidence, evidence_sources = _evidence_lines(ctx, order, indications, rule.no_evidence)
            own = [f"EU-{order.drug}"] if f"EU-{order.drug}" in k.sources else []
            yield Finding(
                rule_id=rule.id,
                concern=f"offlabel:{order.order_id}",
                indicator=rule.indicator,
                summary=rule.summary.format(drug=order.name.capitalize(), indication=" / ".join(names)),
                detail=(
                    f"{why}  \n"
                    + say(
                        "**Approved indications (EU) of {drug}:** {indications}.", drug=order.name, indications=approved
                    )
                    + "  \n"
                    + say("**Ordered:** {dose}.", dose=order.dose.describe())
                    + "\n\n"
                    + say("**Evidence for this off-label use:**")
                    + f"\n{evidence}\n\n{rule.caveat}"
                ),
                sources=list(dict.fromkeys(own + evidence_sources + list(rule.sources))),
                order_id=order.order_id,
                drug=order.drug,
            )
