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
from cds_service.rules.text import lab, unit, sentence


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
    bad = facts.unreadable_within(analyte, max_days)
    values = facts.labs.get(analyte)
    if bad:
        when = f" of {bad[0].when.isoformat()}" if bad[0].when else ""
        return f"the result{when} could not be interpreted: {bad[0].why}"
    if values:
        return f"the latest result ({lab(values[0])}) is older than {max_days} days"
    why = facts.why_unavailable("Observation", knowledge.analytes[analyte].loinc)
    if why:
        return f"lab results could not be obtained: {why}"
    return f"no result in the last {max_days} days"


def _relative_limit(threshold: LabThreshold, value: LabValue, analyte) -> tuple[float, str]:
    """ULN-relative limit in the canonical unit, and where the ULN came from."""
    if value.ref_high is not None:
        uln, origin = value.ref_high, "the laboratory's reference range"
    else:
        uln, origin = threshold.default_uln[analyte.canonical_unit], "the configured default (no reference range on the result)"
    return threshold.above_uln_times * uln, f"ULN {uln:g} {unit(analyte.canonical_unit)} from {origin}"


def _baseline(facts: PatientFacts, analyte_name: str, start) -> tuple[LabValue | None, LabValue | None]:
    """(latest value after the start date, latest value on or before it)."""
    after = before = None
    for value in facts.labs.get(analyte_name, []):          # newest first
        if value.when > start and after is None:
            after = value
        elif value.when <= start:
            before = value
            break
    return after, before


def _latest_or_gap(facts: PatientFacts, k: Knowledge, threshold, order_id, drug_id):
    """(the latest current result, None), (None, the Missing that says why there is none), or the result
    and a Missing that says a newer result could not be interpreted (the check used the older one)."""
    analyte = k.analytes[threshold.analyte]
    value = facts.latest(threshold.analyte, analyte.max_age_days)
    if value is not None:
        newer = [u for u in facts.unreadable(threshold.analyte, since=value.when)
                 if u.when is None or u.when > value.when]
        if not newer:
            return value, None
        when = f" of {newer[0].when.isoformat()}" if newer[0].when else " without a date"
        return value, Missing(threshold.id, analyte.display,
                              f"a newer result{when} could not be interpreted: {newer[0].why}; checked against "
                              f"the previous result ({lab(value)})", tuple(threshold.sources), order_id, drug_id)
    return None, Missing(threshold.id, analyte.display, missing_reason(facts, k, threshold.analyte, analyte.max_age_days),
                         tuple(threshold.sources), order_id, drug_id)


def evaluate_phase(ctx: RuleContext, phase: str, drugs_in_use: list[tuple[str, str, str | None]], start=None):
    """Evaluate thresholds of ``phase`` for each (drug id, drug name, order id).

    ``start`` (treatment start date) is needed by baseline-relative thresholds; without it they are skipped.
    """
    k, facts = ctx.knowledge, ctx.facts
    for drug_id, drug_name, order_id in drugs_in_use:
        for threshold in k.rules.lab_threshold:
            if phase not in threshold.phase or drug_id not in threshold.drugs:
                continue
            analyte = k.analytes[threshold.analyte]
            verb = "do not start" if phase == "start" else "interrupt"
            if threshold.basis == "baseline":
                if start is None:
                    continue
                value, base = _baseline(facts, threshold.analyte, start)
                if value is None or (facts.today - value.when).days > analyte.max_age_days:
                    continue        # no on-treatment result yet: the monitoring schedule says so
                if base is None:
                    yield Missing(threshold.id, f"{analyte.display} rise against the pre-treatment baseline",
                                  f"no {analyte.display} result on or before the treatment start ({start.isoformat()})",
                                  tuple(threshold.sources), order_id, drug_id)
                    continue
                if base.value <= 0:
                    continue
                rise = (value.value / base.value - 1) * 100
                if rise <= threshold.above_baseline_percent:
                    continue
                limit_text = f"{threshold.above_baseline_percent:g} % above baseline"
                shown = f"{sentence(analyte.display)} {value.reported_value:g} {unit(value.reported_unit)} is +{rise:.0f} %"
                why = (f"**{sentence(analyte.display)}:** {lab(value)} — **+{rise:.0f} %** against the pre-treatment "
                       f"baseline {lab(base)} (threshold: more than {limit_text}).")
            elif threshold.basis == "uln":
                value, gap = _latest_or_gap(facts, k, threshold, order_id, drug_id)
                if gap is not None:
                    yield gap
                if value is None:
                    continue
                limit, origin = _relative_limit(threshold, value, analyte)
                if not value.value > limit:
                    continue
                times = value.value / (limit / threshold.above_uln_times)
                limit_text = f"{threshold.above_uln_times:g} x ULN"
                shown = f"{analyte.display} {value.reported_value:g} {unit(value.reported_unit)} is {times:.1f} x ULN"
                why = (f"**{analyte.display}:** {lab(value)} — **{times:.1f} x ULN** ({origin}); threshold: more than "
                       f"{limit_text} = {limit:g} {unit(analyte.canonical_unit)}.")
            else:
                value, gap = _latest_or_gap(facts, k, threshold, order_id, drug_id)
                if gap is not None:
                    yield gap
                if value is None:
                    continue
                crossed, limit, compared_unit = crosses(threshold, value, analyte.canonical_unit)
                if not crossed:
                    continue
                sign = "<" if threshold.direction == "below" else ">"
                limit_text = f"{sign} {limit:g} {unit(compared_unit)}"
                shown = f"{sentence(analyte.display)} {value.reported_value:g} {unit(value.reported_unit)} {sign} {limit:g}"
                why = (f"**{sentence(analyte.display)}:** {lab(value)} — threshold {sign} {limit:g} "
                       f"{unit(compared_unit)}.")
            if threshold.summary:
                summary = threshold.summary.format(analyte=analyte.display, value=shown, limit=limit_text, drug=drug_name)
            else:
                summary = f"{shown}: {verb} {drug_name}"
            yield Finding(
                rule_id=threshold.id,
                concern=f"lab:{threshold.analyte}:{threshold.direction}:{order_id or drug_id}",
                indicator=threshold.indicator,
                summary=summary,
                detail=f"{why}\n\n{threshold.action}",
                sources=list(threshold.sources),
                override_set="contraindication",
                order_id=order_id,
                drug=drug_id,
            )


def evaluate(ctx: RuleContext):
    yield from evaluate_phase(ctx, "start", [(o.drug, o.name, o.order_id) for o in ctx.systemic_orders()])
