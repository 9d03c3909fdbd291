"""Dose rules: cap the daily dose when the patient's situation calls for it.

Reads ``[[dose]]`` entries; the lowest applicable cap wins, and the finding's
suggestion edits the draft order to that dose and frequency, so accepting it
makes the same order pass on sign.
"""
from __future__ import annotations

import copy

from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.schemas.dose import DoseRule
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.text import mg

UCUM = "http://unitsofmeasure.org"


def _condition_holds(rule: DoseRule, ctx: RuleContext) -> tuple[bool | None, str | None]:
    """True/False, or None with the reason when the patient data cannot decide."""
    when = rule.when
    facts = ctx.facts
    checks: list[bool] = []
    if when.age_at_least is not None or when.age_below is not None:
        if facts.age is None:
            return None, "no date of birth on record"
        low, high = facts.age, facts.age_max
        for bound, wants_above in ((when.age_at_least, True), (when.age_below, False)):
            if bound is None:
                continue
            if (low >= bound) != (high >= bound):
                return None, f"the recorded birth date is partial, so age {bound:g} cannot be confirmed"
            checks.append((low >= bound) if wants_above else (low < bound))
    return all(checks), None


def _applies_to_indication(rule: DoseRule, order: DraftOrder) -> bool:
    return not rule.indications or order.indication is None or order.indication in rule.indications


def corrected_order(order: DraftOrder, dose_mg: float, per_day: int) -> dict:
    """The draft MedicationRequest with dose and frequency replaced (for an update action)."""
    resource = copy.deepcopy(order.resource)
    dosages = resource.get("dosageInstruction")
    if isinstance(dosages, dict):
        dosages = [dosages]
    if not isinstance(dosages, list) or not dosages or not isinstance(dosages[0], dict):
        dosages = [{}]
    dosage = dict(dosages[0])
    dosage["text"] = f"{order.name} {mg(dose_mg, per_day)}"
    dosage["timing"] = {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}
    dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}]
    resource["dosageInstruction"] = [dosage] + list(dosages[1:])
    strength = order.match.strength_mg
    if strength is not None and strength != dose_mg and "medicationCodeableConcept" in resource:
        # the coded product no longer matches the dose: keep the ingredient, drop the strength-specific code
        concept = resource["medicationCodeableConcept"]
        codings = [c for c in (concept.get("coding") or []) if isinstance(c, dict)
                   and "rxnorm" not in str(c.get("system", "")).lower()]
        new_concept = {"text": f"{order.name} {dose_mg:g} mg"}
        if codings:
            new_concept["coding"] = codings
        resource["medicationCodeableConcept"] = new_concept
    return resource


def evaluate(ctx: RuleContext):
    for order in ctx.systemic_orders():
        caps: list[tuple[float, DoseRule]] = []
        for rule in ctx.knowledge.rules.dose:
            if rule.drug != order.drug or not _applies_to_indication(rule, order):
                continue
            holds, why = _condition_holds(rule, ctx)
            if holds is None:
                yield Missing(rule.id, f"dose for {rule.reason}", why, tuple(rule.sources), order.order_id, order.drug)
            elif holds:
                caps.append((rule.max_mg * rule.per_day, rule))
        if not caps:
            continue
        cap, rule = min(caps, key=lambda pair: pair[0])
        ordered = order.dose.daily_mg
        if ordered is None:
            yield Missing(rule.id, f"{order.name} dose against the {rule.reason} limit ({mg(rule.max_mg, rule.per_day)})",
                          order.dose.problem or "the ordered dose could not be read", tuple(rule.sources),
                          order.order_id, order.drug)
            continue
        if ordered <= cap + 1e-9:
            continue
        reasons = "; ".join(sorted({r.reason for c, r in caps if c == cap}))
        indication_note = ""
        if rule.indications and order.indication is None:
            indication_note = ("\n\nThe order's indication is not recorded; this limit applies to "
                               f"{', '.join(rule.indications)} and is shown because it cannot be ruled out.")
        target = mg(rule.max_mg, rule.per_day)
        yield Finding(
            rule_id=rule.id,
            concern=f"dose:{order.order_id}",
            indicator="warning",
            summary=f"Reduce {order.name} to {target} ({reasons})",
            detail=(f"**Ordered:** {order.dose.describe()}.  \n**Recommended:** {target} — {reasons} "
                    f"(patient age {ctx.facts.age}).\n\n{rule.detail}{indication_note}"),
            sources=list(rule.sources),
            override_set="dose",
            suggestions=[ProposedSuggestion(
                label=f"Change to {target}",
                actions=(ProposedAction("update", f"Change the {order.name} order to {target}",
                                        corrected_order(order, rule.max_mg, rule.per_day)),))],
            order_id=order.order_id,
            drug=order.drug,
        )
