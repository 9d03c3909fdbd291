"""PRAC 2022 risk groups (decision 7): one warning card per order gathering every factor found.

Factors come from ``[[prac_factor]]``: age, smoking status (LOINC 72166-2), atherosclerotic CV disease and CV
risk factors, malignancy risk (group "prac": use only if no suitable alternative), and VTE risk factors
(group "vte": use with caution, inform about clot symptoms). The lower dose of ``[[prac_lower_dose]]`` is
offered as an edit of the draft when the order asks for more. A patient without any factor gets no card.
"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.i18n import say
from cds_service.knowledge.schemas.prac import PracCard, PracLowerDose
from cds_service.rules.common import corrected_order, prac_risk_factors
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.text import mg


def _lower_dose(ctx: RuleContext, order: DraftOrder) -> tuple[PracLowerDose | None, str | None]:
    phase = order.phase
    for entry in ctx.knowledge.rules.prac_lower_dose:
        if entry.drug != order.drug:
            continue
        if entry.indications and order.indication not in entry.indications:
            continue  # an indication-specific dose is not suggested when the indication is unknown
        if entry.phase is not None and phase != entry.phase:
            continue
        return entry, phase
    return None, phase


def _phase(phase: str) -> str:
    return say("this is induction treatment") if phase == "induction" else say("this is maintenance treatment")


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    k = ctx.knowledge
    for card in k.rules.prac.values():
        for order in ctx.systemic_orders():
            if order.drug not in card.drugs:
                continue
            yield from _evaluate_order(ctx, card, order)


def _evaluate_order(ctx: RuleContext, card: PracCard, order: DraftOrder) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    found, not_recorded = prac_risk_factors(ctx)
    unavailable = []
    if why := facts.why_unavailable("Condition"):
        unavailable.append(say("conditions could not be obtained: {why}", why=why))
    if why := facts.why_medications_unavailable():
        unavailable.append(say("current medications could not be obtained: {why}", why=why))
    surgery_codes = [c for f in k.rules.prac_factor for c in f.procedure_snomed]
    no_factor = not found["prac"] and not found["vte"]
    if surgery_codes and (why := facts.why_unavailable("Procedure", surgery_codes)) and no_factor:
        unavailable.append(say("procedures (recent major surgery) could not be obtained: {why}", why=why))
    if not found["prac"] and not found["vte"]:
        for why in unavailable:
            yield Missing(
                card.id,
                say("PRAC risk groups (CV disease, cancer, VTE risk)"),
                why,
                tuple(card.sources),
                order.order_id,
                order.drug,
            )
        return
    factors = [f for group in ("prac", "vte") for f, _ in found[group]]
    names = ", ".join(f.display.split(" (")[0] for f in factors)
    template = card.prac_summary if found["prac"] else card.vte_summary
    lines = []
    for factor, evidence in found["prac"] + found["vte"]:
        lines.append(f"- **{factor.display}:** " + "; ".join(evidence))
        if factor.note:
            lines.append(f"  - {factor.note}")
    detail = say("**Risk factors on record:**") + "\n" + "\n".join(lines)
    if found["prac"]:
        detail += f"\n\n{card.prac_action}"
    if found["vte"]:
        detail += f"\n\n{card.vte_action}"
    entry, phase = _lower_dose(ctx, order)
    suggestions = []
    sources = list(card.sources) + [s for f in factors for s in f.sources]
    if entry is not None:
        target = mg(entry.dose_mg, entry.per_day)
        sources += entry.sources
        ordered = order.dose.daily_mg
        if ordered is None:
            detail += "\n\n" + say(
                "**Lower dose:** {dose}. {detail} The ordered dose could not be read ({problem}), "
                "so it was not compared.",
                dose=target,
                detail=entry.detail,
                problem=order.dose.problem or say("unknown"),
            )
        elif ordered > entry.dose_mg * entry.per_day + 1e-9:
            detail += "\n\n" + say(
                "**Lower dose:** {dose} (ordered: {ordered}). {detail}",
                dose=target,
                ordered=order.dose.describe(),
                detail=entry.detail,
            )
            suggestions.append(
                ProposedSuggestion(
                    label=say("Change to {dose} (lower-risk dose)", dose=target),
                    actions=(
                        ProposedAction(
                            "update",
                            say("Change the {drug} order to {dose}", drug=order.name, dose=target),
                            corrected_order(order, entry.dose_mg, entry.per_day, phase),
                        ),
                    ),
                )
            )
        else:
            detail += "\n\n" + say(
                "**Dose:** the ordered {ordered} is the lower-risk dose for these risk factors "
                "(kidney or liver function, or an interacting medicine, may lower it further: see "
                "the dose card if there is one).",
                ordered=order.dose.describe(),
            )
    else:
        for e in k.rules.prac_lower_dose:
            if e.drug != order.drug:
                continue
            unknown_indication = bool(e.indications) and order.indication is None
            other_phase = e.phase is not None and e.phase != phase
            if not (unknown_indication or (other_phase and (not e.indications or order.indication in e.indications))):
                continue
            when = say(" and ").join(
                filter(
                    None,
                    [
                        say("the indication is {indications}", indications=", ".join(e.indications))
                        if unknown_indication
                        else None,
                        _phase(e.phase) if e.phase else None,
                    ],
                )
            )
            detail += "\n\n" + say(
                "**If {when}:** lower dose {dose}. {detail} Not suggested as an edit: the order does not say so.",
                when=when,
                dose=mg(e.dose_mg, e.per_day),
                detail=e.detail,
            )
    checks = list(card.not_checked) + not_recorded + unavailable
    if checks:
        detail += "\n\n" + say("**Not checked / not recorded:** {checks}.", checks="; ".join(checks))
    yield Finding(
        rule_id=card.id,
        concern=f"prac:{order.order_id}",
        indicator="warning",
        summary=template.format(drug=order.name, factors=names),
        detail=detail,
        sources=list(dict.fromkeys(sources)),
        override_set="contraindication",
        suggestions=suggestions,
        order_id=order.order_id,
        drug=order.drug,
    )
