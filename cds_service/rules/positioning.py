"""Positioning: an info note when the guideline's prior therapy is not on record (S000 condition 5).

The medication history counts every recorded MedicationRequest and MedicationStatement, whatever its status
(completed and stopped ones are exactly the history that matters). When the history could not be obtained
the note says so instead of claiming there was no prior therapy.
"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding
from cds_service.i18n import say
from cds_service.orders import how_text
from cds_service.rules.context import RuleContext


def prior_therapy(ctx: RuleContext, class_id: str) -> list[str]:
    """Displays (with start dates) of any recorded medication of the class, active or not."""
    entry = ctx.knowledge.rules.therapy_class[class_id]
    found: list[str] = []
    for med in ctx.facts.medications:
        if med.drug is not None:  # a recognised JAK inhibitor is not a conventional agent
            continue
        if entry.contains(med.display, med.codes):
            found.append(
                say("{medicine} (from {start})", medicine=med.display, start=med.start) if med.start else med.display
            )
    return found


def _in_age_band(ctx: RuleContext, low: float | None, high: float | None) -> bool | None:
    facts = ctx.facts
    if low is None and high is None:
        return True
    if facts.age is None:
        return None
    young, old = facts.age, facts.age_max  # partial birth dates give a range
    if old is None:
        return None  # not reached: age_max is known whenever age is
    checks = []
    if low is not None:
        if (young >= low) != (old >= low):
            return None
        checks.append(young >= low)
    if high is not None:
        if (young < high) != (old < high):
            return None
        checks.append(young < high)
    return all(checks)


def _already_on(ctx: RuleContext, drug_id: str) -> bool:
    return any(m.active and m.drug is not None and m.drug.drug_id == drug_id for m in ctx.facts.medications)


def evaluate(ctx: RuleContext) -> Iterator[Finding]:
    k = ctx.knowledge
    for rule in k.rules.positioning:
        for order in ctx.systemic_orders():
            if order.drug not in rule.drugs or order.indication is None or order.indication not in rule.indications:
                continue
            if not _in_age_band(ctx, rule.age_at_least, rule.age_below):
                continue  # outside the band, or age unknown (said by the age/dose rules)
            if rule.new_start_only and _already_on(ctx, order.drug):
                continue  # a renewal: the positioning decision was made at the start
            if any(prior_therapy(ctx, c) for c in rule.prior_classes):
                continue
            classes = [k.rules.therapy_class[c] for c in rule.prior_classes]
            members = ", ".join(m for c in classes for m in c.members)
            unavailable = ctx.facts.why_medications_unavailable()
            if unavailable:
                looked = say(
                    "**Medication history could not be obtained** ({why}), so prior {medicines} could not be checked.",
                    why=unavailable,
                    medicines=members,
                )
            else:
                looked = say(
                    "**Medication history:** no {medicines} recorded (any status, including stopped).",
                    medicines=members,
                )
            yield Finding(
                rule_id=rule.id,
                concern=f"positioning:{rule.id}:{order.order_id}",
                indicator=rule.indicator,
                summary=rule.summary.format(drug=order.name.capitalize()),
                detail=(
                    say(
                        "**Indication:** {indication} ({how}); age {age}.",
                        indication=k.indications[order.indication].display,
                        how=how_text(order.indication_how),
                        age=str(ctx.facts.age),
                    )
                    + f"  \n{looked}\n\n{rule.detail}"
                    + (f"\n\n{rule.scope_note}" if rule.scope_note else "")
                ),
                sources=list(rule.sources) + [s for c in classes for s in c.sources if s not in rule.sources],
                order_id=order.order_id,
                drug=order.drug,
            )
