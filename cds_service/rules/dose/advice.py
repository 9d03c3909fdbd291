"""The dose card's text and suggestions: what was ordered, for which indication, every applying limit with the
patient's values, the halving worked out, and the edit to the draft that makes it pass on sign (or its removal).
"""

from __future__ import annotations

from dataclasses import replace

from cds_service.findings import Finding, ProposedAction, ProposedSuggestion
from cds_service.i18n import number, say
from cds_service.orders import how_text
from cds_service.rules.common import corrected_order
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.dose.halving import Halving, halving_text
from cds_service.rules.dose.situation import EPS, Applied, Dose, daily
from cds_service.rules.text import mg, phase_name, sentence


def _line(applied: Applied) -> str:
    rule = applied.rule
    if rule.outcome == "not_recommended":
        target = say("not recommended")
    elif rule.outcome == "note" and applied.dose is not None:
        target = say("for information: {dose} may be considered", dose=mg(*applied.dose))
    elif rule.outcome == "halve" and applied.dose is not None:
        target = say("halve the dose that otherwise applies: maximum {dose}", dose=mg(*applied.dose))
    elif applied.dose is not None:
        target = say("maximum {dose}", dose=mg(*applied.dose))
    else:
        target = say("information")
    evidence = "; ".join(applied.check.evidence)
    text = f"- **{rule.reason}**" + (f" — {evidence}" if evidence else "") + f" → {target}. {rule.detail}"
    if rule.evidence:
        text += " " + say("*Source quality: {evidence}*", evidence=rule.evidence)
    if applied.note:
        text += f" *{applied.note}*"
    return text


def indication_text(ctx: RuleContext, order: DraftOrder) -> str:
    if order.indication:
        display = ctx.knowledge.indications[order.indication].display
        if order.indication_how == "order reason":
            return say("{indication} (from the order reason)", indication=display)
        if order.indication_how == "active condition":
            return say("{indication} (from the active condition)", indication=display)
        return f"{display} ({how_text(order.indication_how)})"
    return say("not known ({how})", how=how_text(order.indication_how))


def _common_detail(ctx: RuleContext, order: DraftOrder, listed: list[Applied], halving: Halving | None) -> str:
    lines = "\n".join(_line(a) for a in listed)
    indication = indication_text(ctx, order)
    unknown = ""
    if order.indication is None:
        unknown = "\n\n" + say(
            "The order's indication is not recorded, so the dose is compared with the drug's overall "
            "maximum and with every adjustment that cannot be ruled out. Record the indication "
            "(reasonCode) for an indication-specific check."
        )
    halved = f"\n\n{halving_text(ctx, order, halving)}" if halving is not None else ""
    return (
        say("**Ordered:** {dose} ({drug}).", dose=order.dose.describe(), drug=order.name)
        + "  \n"
        + say("**Indication:** {indication}.", indication=indication)
        + "\n\n"
        + say("**Why:**")
        + f"\n{lines}{halved}{unknown}"
    )


def _sources(listed: list[Applied], halving: Halving | None = None) -> list[str]:
    sources = [s for a in listed for s in a.rule.sources]
    if halving is not None:
        sources += halving.table.sources
        sources += [s for h in halving.results for s in h.base_sources]
    return list(dict.fromkeys(sources))


def stop_finding(
    ctx: RuleContext,
    order: DraftOrder,
    stops: list[Applied],
    caps: list[Applied],
    notes: list[Applied],
    halving: Halving | None,
) -> Finding:
    reasons = "; ".join(dict.fromkeys(a.rule.reason for a in stops))
    listed = stops + caps + notes
    return Finding(
        rule_id=stops[0].rule.id,
        concern=f"dose:{order.order_id}",
        indicator="warning",
        summary=say("{drug} is not recommended ({reasons})", drug=sentence(order.name), reasons=reasons),
        detail=(
            _common_detail(ctx, order, listed, halving)
            + "\n\n"
            + say("**Recommended:** do not start; choose another treatment or document why it is needed.")
        ),
        sources=_sources(listed, halving),
        override_set="dose",
        suggestions=[
            ProposedSuggestion(
                label=say("Remove the {drug} order", drug=order.name),
                actions=(
                    ProposedAction(
                        "delete",
                        say("Remove the draft {drug} order", drug=order.name),
                        resource_id=(f"MedicationRequest/{order.order_id}",),
                    ),
                ),
            )
        ],
        order_id=order.order_id,
        drug=order.drug,
    )


def _keeps_modified_release(order: DraftOrder, applied: Applied) -> bool:
    """A prolonged-release order stays prolonged-release if the limit is for that form or the same tablet."""
    if not order.match.modified_release:
        return False
    return applied.rule.when.formulation == "modified_release" or applied.limit[0] == order.dose.dose_mg


def _change(order: DraftOrder, applied: Applied, dose: Dose, phase: str | None, label: str) -> ProposedSuggestion:
    target = mg(*dose) + (f" ({phase_name(phase)})" if phase and phase != order.phase else "")
    return ProposedSuggestion(
        label=label or say("Change to {target}", target=target),
        actions=(
            ProposedAction(
                "update",
                say("Change the {drug} order to {target}", drug=order.name, target=target),
                corrected_order(
                    order, dose[0], dose[1], phase, _keeps_modified_release(order, replace(applied, dose=dose))
                ),
            ),
        ),
    )


def _suggestions(order: DraftOrder, binding: Applied, halving: Halving | None) -> list[ProposedSuggestion]:
    """One edit to the binding limit; for a halving whose dose depends on a phase the order does not state, one
    edit per phase, each writing its phase into the order (so either passes on sign). The first is the phase
    whose usual (un-halved) dose was ordered, else the lower dose."""
    split = halving is not None and len(halving.results) == 2 and binding.rule.outcome == "halve"
    if not split or halving is None:
        return [_change(order, binding, binding.limit, order.phase, "")]
    ordered = (order.dose.dose_mg, order.dose.per_day)
    results = sorted(halving.results, key=lambda h: h.base != ordered)  # stable: lower first otherwise
    out = []
    for h in results:
        if daily(h.limit) + EPS >= (order.dose.daily_mg or 0) and h.limit[1] >= (order.dose.per_day or 0):
            if order.dose.dose_mg is None or order.dose.per_day is None:
                continue
            out.append(
                _change(
                    order,
                    binding,
                    (order.dose.dose_mg, order.dose.per_day),
                    h.phase,
                    say("Keep {dose}, recorded as {phase}", dose=order.dose.describe(), phase=phase_name(h.phase)),
                )
            )
        else:
            out.append(
                _change(
                    order,
                    binding,
                    h.limit,
                    h.phase,
                    say("Change to {dose} ({phase})", dose=mg(*h.limit), phase=phase_name(h.phase)),
                )
            )
    return out


def reduce_finding(
    ctx: RuleContext,
    order: DraftOrder,
    binding: Applied,
    caps: list[Applied],
    notes: list[Applied],
    phase: str | None,
    halving: Halving | None,
) -> Finding:
    target = mg(*binding.limit)
    binding_reasons = "; ".join(
        dict.fromkeys(a.rule.reason for a in caps if abs(a.limit_daily - binding.limit_daily) < EPS)
    )
    listed = sorted(caps, key=lambda a: a.limit_daily) + notes
    only_too_often = order.dose.daily_mg is not None and order.dose.daily_mg <= binding.limit_daily + EPS
    frequency_note = (
        "\n\n"
        + say(
            "The daily total is within the limit, but the order is taken {times} times a day where the limit is "
            "{target}.",
            times=number(order.dose.per_day or 0),
            target=target,
        )
        if only_too_often
        else ""
    )
    suggestions = _suggestions(order, binding, halving)
    if len(suggestions) > 1 and halving is not None:  # more than one: a halving per phase (_suggestions)
        low, high = halving.results
        values = dict(
            drug=order.name,
            low=mg(*low.limit),
            low_phase=phase_name(low.phase),
            high=mg(*high.limit),
            high_phase=phase_name(high.phase),
        )
        summary = (
            say(
                "Change {drug} to {low} ({low_phase}; {high_phase}: {high}) ({reasons})",
                reasons=binding_reasons,
                **values,
            )
            if only_too_often
            else say(
                "Reduce {drug} to {low} ({low_phase}; {high_phase}: {high}) ({reasons})",
                reasons=binding_reasons,
                **values,
            )
        )
        recommended = say(
            "{low} if this is {low_phase}, {high} if it is {high_phase}; record the phase in the order.", **values
        )
    else:
        summary = (
            say("Change {drug} to {target} ({reasons})", drug=order.name, target=target, reasons=binding_reasons)
            if only_too_often
            else say("Reduce {drug} to {target} ({reasons})", drug=order.name, target=target, reasons=binding_reasons)
        )
        recommended = say("{target} — the lowest applicable limit.", target=target)
    return Finding(
        rule_id=binding.rule.id,
        concern=f"dose:{order.order_id}",
        indicator="warning",
        summary=summary,
        detail=(
            _common_detail(ctx, order, listed, halving)
            + frequency_note
            + "\n\n"
            + say("**Recommended:** {recommended}", recommended=recommended)
        ),
        sources=_sources(listed, halving),
        override_set="dose",
        suggestions=suggestions,
        order_id=order.order_id,
        drug=order.drug,
    )


def info_finding(ctx: RuleContext, order: DraftOrder, notes: list[Applied]) -> Finding:
    reasons = "; ".join(dict.fromkeys(a.rule.reason for a in notes))
    return Finding(
        rule_id=notes[0].rule.id,
        concern=f"dose:{order.order_id}",
        indicator="info",
        summary=say(
            "{drug} {dose}: check {reasons}", drug=sentence(order.name), dose=order.dose.describe(), reasons=reasons
        ),
        detail=_common_detail(ctx, order, notes, None),
        sources=_sources(notes),
        order_id=order.order_id,
        drug=order.drug,
    )
