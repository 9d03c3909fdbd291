"""One order against its drug's dose rules: which rules apply, which limit binds, and which card (if any) says so:
not recommended (remove the draft), reduce or change the dose (edit the draft), or information. The lowest
applicable cap wins; ONE card per order (concern ``dose:<order id>``).
"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge.schemas.dose import DoseRule
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.dose.advice import indication_text, info_finding, reduce_finding, stop_finding
from cds_service.rules.dose.halving import halve
from cds_service.rules.dose.situation import EPS, Applied, evaluate_when
from cds_service.rules.text import mg, phase_name


def _indication_applies(rule: DoseRule, order: DraftOrder) -> bool:
    if not rule.indications:
        return True
    if rule.kind == "maximum":
        return order.indication in rule.indications
    return order.indication is None or order.indication in rule.indications


def _exceeds(order: DraftOrder, applied: Applied) -> bool:
    """Over the daily cap, or taken more often than the limit allows (baricitinib 2 mg twice daily is not
    the labelled 4 mg once daily, even at the same daily total)."""
    dose = order.dose
    if dose.daily_mg is None:
        return False
    too_often = dose.per_day is not None and dose.per_day > applied.limit[1] + EPS
    return dose.daily_mg > applied.limit_daily + EPS or too_often


def evaluate_order(ctx: RuleContext, order: DraftOrder, rules: list[DoseRule]) -> Iterator[Finding | Missing]:
    """One order against ``rules`` (its drug's dose rules, or some of them): its dose card, or the gaps. Also
    reads the dose a patient already takes when another medicine is ordered (rules/co_prescription.py)."""
    phase = order.phase
    ordered = order.dose.daily_mg
    caps: list[Applied] = []
    stops: list[Applied] = []
    notes: list[Applied] = []
    halvings: list[Applied] = []
    for rule in rules:
        if not _indication_applies(rule, order):
            continue
        check = evaluate_when(rule, ctx, order, phase)
        if not check.holds:
            continue
        if check.missing:
            for what, why in check.missing:
                yield Missing(rule.id, what, why, tuple(rule.sources), order.order_id, order.drug)
            continue
        indication_unknown = bool(rule.indications) and order.indication is None
        applied = Applied(rule, check)
        if rule.outcome == "not_recommended":
            if indication_unknown:
                applied.note = say(
                    "Applies if the indication is {indications}; the order's indication is {indication}.",
                    indications=", ".join(rule.indications),
                    indication=indication_text(ctx, order),
                )
                notes.append(applied)
            else:
                stops.append(applied)
        elif rule.outcome == "halve":
            halvings.append(applied)
        elif rule.outcome == "note":
            if applied.cap is None or ordered is None or ordered > applied.cap + EPS:
                notes.append(applied)
        elif check.phase_unknown:
            if ordered is not None and ordered > applied.limit_daily + EPS:
                applied.note = say(
                    "Applies to a {phase} order; the order does not say whether it is induction or maintenance, "
                    "so this limit on its own does not flag it. Confirm the phase and limit the induction period.",
                    phase=phase_name(rule.when.phase or ""),
                )
                notes.append(applied)
        else:
            if indication_unknown:
                applied.note = say(
                    "This limit is for {indications}; it is applied because the order's indication is {indication}.",
                    indications=", ".join(rule.indications),
                    indication=indication_text(ctx, order),
                )
            caps.append(applied)

    halving = halve(ctx, order, rules, halvings) if halvings else None
    if halving is not None:
        for applied in halvings:
            applied.dose = halving.results[0].limit
        caps += halvings

    if ordered is None and caps and not stops:
        lowest = min(caps, key=lambda a: a.limit_daily)
        yield Missing(
            lowest.rule.id,
            say("{drug} dose against its limit ({dose})", drug=order.name, dose=mg(*lowest.limit)),
            order.dose.problem or say("the ordered dose could not be read"),
            tuple(lowest.rule.sources),
            order.order_id,
            order.drug,
        )
    if ordered is not None:  # list only the limits this order exceeds (the overall maximum is not a reason)
        caps_exceeded = [a for a in caps if _exceeds(order, a)]
    else:
        caps_exceeded = [a for a in caps if a.rule.kind == "adjustment"]
    halving_shown = halving if any(a.rule.outcome == "halve" for a in caps_exceeded) else None
    if stops:
        yield stop_finding(ctx, order, stops, caps_exceeded, notes, halving_shown)
        return
    binding = min(caps, key=lambda a: (a.limit_daily, a.rule.outcome != "halve")) if caps else None
    if binding is not None and ordered is not None and (_exceeds(order, binding) or caps_exceeded):
        yield reduce_finding(ctx, order, binding, caps_exceeded, notes, phase, halving_shown)
        return
    if notes:
        yield info_finding(ctx, order, notes)
