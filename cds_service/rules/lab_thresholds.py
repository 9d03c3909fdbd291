"""Lab thresholds: do-not-start (order hooks) and interrupt (patient-view).

Each threshold is compared in the unit the lab reported when the knowledge
gives a limit in that unit (Hb 8 g/dL vs 5.0 mmol/L, decision 4); otherwise
the value is converted to the analyte's canonical unit.
"""
from __future__ import annotations

from cds_service.facts import LabValue, PatientFacts
from cds_service.findings import Finding, Missing
from cds_service.knowledge import Knowledge
from cds_service.schemas.lab_threshold import LabThreshold
from cds_service.rules.context import RuleContext
from cds_service.rules.text import lab, unit


def crosses(threshold: LabThreshold, value: LabValue, canonical_unit: str) -> tuple[bool, float, str]:
    """(crossed?, limit, unit of comparison)."""
    limits = threshold.limits
    if value.reported_unit in limits:
        limit, compared_unit, observed = limits[value.reported_unit], value.reported_unit, value.reported_value
    else:
        limit, compared_unit, observed = limits[canonical_unit], canonical_unit, value.value
    crossed = observed < limit if threshold.direction == "below" else observed > limit
    return crossed, limit, compared_unit


def missing_reason(facts: PatientFacts, knowledge: Knowledge, analyte: str, max_days: int) -> str:
    """Why there is no usable value: unavailable data, uninterpretable, stale, or none."""
    bad = [u for u in facts.uninterpretable.get(analyte, []) if u.when is None or (facts.today - u.when).days <= max_days]
    values = facts.labs.get(analyte)
    if bad and (not values or bad[0].when is None or bad[0].when >= values[0].when):
        when = f" of {bad[0].when.isoformat()}" if bad[0].when else ""
        return f"the result{when} could not be interpreted: {bad[0].why}"
    if values:
        return f"the latest result ({lab(values[0])}) is older than {max_days} days"
    why = facts.why_unavailable("Observation", knowledge.analytes[analyte].loinc)
    if why:
        return f"lab results could not be obtained: {why}"
    return f"no result in the last {max_days} days"


def evaluate_phase(ctx: RuleContext, phase: str, drugs_in_use: list[tuple[str, str, str | None]]):
    """Evaluate thresholds of ``phase`` for each (drug id, drug name, order id)."""
    k, facts = ctx.knowledge, ctx.facts
    for drug_id, drug_name, order_id in drugs_in_use:
        for threshold in k.rules.lab_threshold:
            if phase not in threshold.phase or drug_id not in threshold.drugs:
                continue
            analyte = k.analytes[threshold.analyte]
            value = facts.latest(threshold.analyte, analyte.max_age_days)
            if value is None:
                yield Missing(threshold.id, analyte.display,
                              missing_reason(facts, k, threshold.analyte, analyte.max_age_days),
                              tuple(threshold.sources), order_id, drug_id)
                continue
            crossed, limit, compared_unit = crosses(threshold, value, analyte.canonical_unit)
            if not crossed:
                continue
            sign = "<" if threshold.direction == "below" else ">"
            verb = "do not start" if phase == "start" else "interrupt"
            yield Finding(
                rule_id=threshold.id,
                concern=f"lab:{threshold.analyte}:{threshold.direction}:{order_id or drug_id}",
                indicator=threshold.indicator,
                summary=f"{analyte.display.capitalize()} {value.reported_value:g} {unit(value.reported_unit)}"
                        f" {sign} {limit:g}: {verb} {drug_name}",
                detail=(f"**{analyte.display.capitalize()}:** {lab(value)} — threshold {sign} {limit:g} "
                        f"{unit(compared_unit)}.\n\n{threshold.action}"),
                sources=list(threshold.sources),
                override_set="contraindication",
                order_id=order_id,
                drug=drug_id,
            )


def evaluate(ctx: RuleContext):
    yield from evaluate_phase(ctx, "start", [(o.drug, o.name, o.order_id) for o in ctx.systemic_orders()])
