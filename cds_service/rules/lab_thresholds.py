"""Lab thresholds: do-not-start (order hooks) and interrupt (patient-view).

Each threshold is compared in the unit the lab reported when the knowledge
gives a limit in that unit (Hb 8 g/dL vs 5.0 mmol/L, decision 4); otherwise
the value is converted to the analyte's canonical unit.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from cds_service import i18n
from cds_service.facts import LabValue, PatientFacts
from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.model import AnalyteEntry
from cds_service.knowledge.schemas.lab_threshold import LabThreshold
from cds_service.rules.common import missing_reason
from cds_service.rules.context import RuleContext
from cds_service.rules.text import lab, sentence, unit

num = i18n.number


def crosses(threshold: LabThreshold, value: LabValue, canonical_unit: str) -> tuple[bool, float, str]:
    """(crossed?, limit, unit of comparison)."""
    limits = threshold.limits
    if value.reported_unit in limits:
        limit, compared_unit, observed = limits[value.reported_unit], value.reported_unit, value.reported_value
    else:
        limit, compared_unit, observed = limits[canonical_unit], canonical_unit, value.value
    crossed = observed < limit if threshold.direction == "below" else observed > limit
    return crossed, limit, compared_unit


def relative_limit(threshold: LabThreshold, value: LabValue, analyte: AnalyteEntry) -> tuple[float, str]:
    """ULN-relative limit in the canonical unit, and where the ULN came from."""
    times, default_uln = threshold.above_uln_times, threshold.default_uln
    if times is None or default_uln is None:  # not reached: LabThreshold gives both or neither
        raise ValueError(f"{threshold.id} is not relative to the upper limit of normal")
    if value.ref_high is not None:
        uln = value.ref_high
        return times * uln, say(
            "ULN {uln} {unit} from the laboratory's reference range", uln=float(uln), unit=unit(analyte.canonical_unit)
        )
    uln = default_uln[analyte.canonical_unit]
    return times * uln, say(
        "ULN {uln} {unit} from the configured default (no reference range on the result)",
        uln=float(uln),
        unit=unit(analyte.canonical_unit),
    )


def _baseline(facts: PatientFacts, analyte_name: str, start: date) -> LabValue | None:
    """The pre-treatment baseline: the latest usable result on or before the start date."""
    for value in facts.labs.get(analyte_name, []):  # newest first
        if value.when <= start:
            return value
    return None


_EPS = 1e-9  # a change of exactly the limit is not "more than" it (12.9 -> 10.9 g/dL is not > 2 g/dL)


def _change(threshold: LabThreshold, value: LabValue, base: LabValue, canonical_unit: str) -> tuple[bool, str, str]:
    """(crossed?, the change as shown, the threshold as shown) of an on-treatment result against its baseline:
    "+31 %" / "2.3 g/dL below the pre-treatment value".

    An amount is compared in the unit both results were reported in when the knowledge lists it (2 g/dL, or 1.24
    mmol/L when both are in mmol/L; decision 4), otherwise in the canonical unit."""
    change = threshold.from_baseline
    if change is None:  # not reached: only from_baseline thresholds are compared with a baseline
        raise ValueError(f"{threshold.id} is not relative to a baseline")
    by = change.by or {}  # LabThreshold: percent or by
    sign = 1 if change.direction == "rise" else -1
    if change.percent is not None:
        if base.value <= 0:
            return False, "", ""
        percent = (value.value / base.value - 1) * 100
        limit = (
            say("a rise of more than {percent} %", percent=float(change.percent))
            if change.direction == "rise"
            else say("a fall of more than {percent} %", percent=float(change.percent))
        )
        return sign * percent > change.percent + _EPS, f"{i18n.fixed(percent, 0, sign=True)} %", limit
    if value.reported_unit == base.reported_unit and value.reported_unit in by:
        compared, delta = value.reported_unit, value.reported_value - base.reported_value
    else:
        compared, delta = canonical_unit, value.value - base.value
    amount = by[compared]
    values = {"amount": float(abs(round(delta, 2))), "unit": unit(compared)}
    shown = (
        say("{amount} {unit} above the pre-treatment value", **values)
        if delta > 0
        else say("{amount} {unit} below the pre-treatment value", **values)
    )
    limits = {"amount": float(amount), "unit": unit(compared)}
    limit = (
        say("a rise of more than {amount} {unit}", **limits)
        if change.direction == "rise"
        else say("a fall of more than {amount} {unit}", **limits)
    )
    return sign * delta > amount + _EPS, shown, limit


def _latest_or_gap(
    facts: PatientFacts, k: Knowledge, threshold: LabThreshold, order_id: str | None, drug_id: str
) -> tuple[LabValue | None, Missing | None]:
    """(the latest current result, None), (None, the Missing that says why there is none), or the result
    and a Missing that says a newer result could not be interpreted (the check used the older one)."""
    analyte = k.analytes[threshold.analyte]
    value = facts.latest(threshold.analyte, analyte.max_age_days)
    if value is not None:
        newer = [
            u for u in facts.unreadable(threshold.analyte, since=value.when) if u.when is None or u.when > value.when
        ]
        if not newer:
            return value, None
        if newer[0].when:
            why = say(
                "a newer result of {when} could not be interpreted: {why}; checked against the previous "
                "result ({result})",
                when=newer[0].when,
                why=newer[0].why,
                result=lab(value),
            )
        else:
            why = say(
                "a newer result without a date could not be interpreted: {why}; checked against the previous "
                "result ({result})",
                why=newer[0].why,
                result=lab(value),
            )
        return value, Missing(threshold.id, analyte.display, why, tuple(threshold.sources), order_id, drug_id)
    return None, Missing(
        threshold.id,
        analyte.display,
        missing_reason(facts, k, threshold.analyte, analyte.max_age_days),
        tuple(threshold.sources),
        order_id,
        drug_id,
    )


def evaluate_phase(
    ctx: RuleContext, phase: str, drugs_in_use: list[tuple[str, str, str | None]], start: date | None = None
) -> Iterator[Finding | Missing]:
    """Evaluate thresholds of ``phase`` for each (drug id, drug name, order id).

    ``start`` (treatment start date) is needed by baseline-relative thresholds; without it they are skipped.
    """
    k, facts = ctx.knowledge, ctx.facts
    for drug_id, drug_name, order_id in drugs_in_use:
        for threshold in k.rules.lab_threshold:
            if phase not in threshold.phase or drug_id not in threshold.drugs:
                continue
            analyte = k.analytes[threshold.analyte]
            if threshold.basis == "baseline":
                if start is None:
                    continue
                change = threshold.from_baseline
                check = (
                    say("{analyte} rise against the pre-treatment baseline", analyte=analyte.display)
                    if change.direction == "rise"
                    else say("{analyte} fall against the pre-treatment baseline", analyte=analyte.display)
                )
                value, gap = _latest_or_gap(facts, k, threshold, order_id, drug_id)
                if gap is not None and facts.unreadable_within(threshold.analyte, analyte.max_age_days):
                    yield gap  # a result that could not be interpreted is said; an absent one is the schedule's
                if value is None or value.when <= start:
                    continue  # no on-treatment result yet: the monitoring schedule says when one is due
                base = _baseline(facts, threshold.analyte, start)
                series = facts.labs.get(threshold.analyte)
                bad = series.unreadable_between(base.when if base else None, start) if series is not None else []
                if bad:
                    if bad[0].when:
                        why = say(
                            "the pre-treatment result of {when} could not be interpreted: {why}",
                            when=bad[0].when,
                            why=bad[0].why,
                        )
                    else:
                        why = say(
                            "the pre-treatment result without a date could not be interpreted: {why}", why=bad[0].why
                        )
                    if base:
                        why += say("; compared with the older {result}", result=lab(base))
                    yield Missing(threshold.id, check, why, tuple(threshold.sources), order_id, drug_id)
                if base is None:
                    if not bad:
                        yield Missing(
                            threshold.id,
                            check,
                            say(
                                "no {analyte} result on or before the treatment start ({start})",
                                analyte=analyte.display,
                                start=start,
                            ),
                            tuple(threshold.sources),
                            order_id,
                            drug_id,
                        )
                    continue
                crossed, delta, limit_text = _change(threshold, value, base, analyte.canonical_unit)
                if not crossed:
                    continue
                values = {
                    "analyte": sentence(analyte.display),
                    "value": float(value.reported_value),
                    "unit": unit(value.reported_unit),
                    "change": delta,
                }
                shown = (
                    say("{analyte} {value} {unit} is {change}", **values)
                    if change.percent is not None
                    else say("{analyte} {value} {unit}, {change}", **values)
                )
                why = say(
                    "**{analyte}:** {result} — **{change}** (pre-treatment baseline {base}; threshold: {limit}).",
                    analyte=sentence(analyte.display),
                    result=lab(value),
                    change=delta,
                    base=lab(base),
                    limit=limit_text,
                )
            elif threshold.basis == "uln":
                value, gap = _latest_or_gap(facts, k, threshold, order_id, drug_id)
                if gap is not None:
                    yield gap
                if value is None:
                    continue
                limit, origin = relative_limit(threshold, value, analyte)
                if not value.value > limit:
                    continue
                times = value.value / (limit / threshold.above_uln_times)
                limit_text = say("{times} x ULN", times=float(threshold.above_uln_times))
                shown = say(
                    "{analyte} {value} {unit} is {times} x ULN",
                    analyte=analyte.display,
                    value=float(value.reported_value),
                    unit=unit(value.reported_unit),
                    times=i18n.fixed(times, 1),
                )
                why = say(
                    "**{analyte}:** {result} — **{times} x ULN** ({origin}); threshold: more than {limit} = "
                    "{value} {unit}.",
                    analyte=analyte.display,
                    result=lab(value),
                    times=i18n.fixed(times, 1),
                    origin=origin,
                    limit=limit_text,
                    value=float(limit),
                    unit=unit(analyte.canonical_unit),
                )
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
                limit_text = f"{sign} {num(limit)} {unit(compared_unit)}"
                shown = (
                    f"{sentence(analyte.display)} {num(value.reported_value)} {unit(value.reported_unit)} "
                    f"{sign} {num(limit)}"
                )
                why = say(
                    "**{analyte}:** {result} — threshold {limit}.",
                    analyte=sentence(analyte.display),
                    result=lab(value),
                    limit=limit_text,
                )
            if threshold.summary:
                summary = threshold.summary.format(
                    analyte=analyte.display, value=shown, limit=limit_text, drug=drug_name
                )
            else:
                summary = (
                    say("{shown}: do not start {drug}", shown=shown, drug=drug_name)
                    if phase == "start"
                    else say("{shown}: interrupt {drug}", shown=shown, drug=drug_name)
                )
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


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    yield from evaluate_phase(ctx, "start", [(o.drug, o.name, o.order_id) for o in ctx.systemic_orders()])
