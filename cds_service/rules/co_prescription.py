"""Decision 17: another medicine ordered for a patient who already takes a systemic JAK inhibitor.

The JAK inhibitor's own rules decide, as if the new medicine were already taken: the dose rules whose
``when.interacting`` class it belongs to (evaluated for the dose the patient takes now), and the contraindications
whose ``medication_classes`` it belongs to or whose ``live_vaccine_within_days`` it is. One card per ordered
medicine and JAK inhibitor names both, with the label's advice; its severity is the most severe rule's.

Which orders could interact is known from the drafts alone (``candidates``): any other order is answered
without reading the record, and one that could is answered after reading the medication list only, unless the
patient takes a systemic JAK inhibitor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from cds_service import orders as ordermod
from cds_service.facts import MedicationFact, medication_fact
from cds_service.fhir.tolerant import normalise
from cds_service.findings import (
    SEVERITY,
    Finding,
    Indicator,
    Missing,
    ProposedAction,
    ProposedSuggestion,
)
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.drugs import OrderedDose
from cds_service.knowledge.schemas.co_prescription import CoPrescriptionCard
from cds_service.knowledge.schemas.contraindication import DrugClass, LiveVaccines
from cds_service.knowledge.schemas.dose import DoseRule, InteractingClass
from cds_service.orders import DraftOrder
from cds_service.rules import dose as dosemod
from cds_service.rules.common import is_live_vaccine
from cds_service.rules.context import RuleContext
from cds_service.rules.text import sentence


@dataclass(frozen=True)
class Advice:
    """What one of the JAK inhibitor's rules says about the new medicine."""

    indicator: Indicator
    headline: str
    text: str
    sources: list[str]


@dataclass(frozen=True)
class Candidate:
    """A draft of another medicine that belongs to a class some JAK inhibitor rule reads."""

    resource: dict[str, Any]
    order_id: str
    medicine: MedicationFact
    interacting: frozenset[str]  # interacting_class ids (dose rules)
    classes: frozenset[str]  # drug_class ids (contraindications)
    live_vaccine: bool

    @property
    def display(self) -> str:
        return self.medicine.display


@dataclass(frozen=True)
class _Triggers:
    """The classes some JAK inhibitor rule reads, worked out once per knowledge."""

    interacting: tuple[tuple[str, InteractingClass], ...]  # of the dose rules' `when.interacting`
    classes: tuple[tuple[str, DrugClass], ...]  # of the contraindications' `medication_classes`
    vaccines: tuple[LiveVaccines, ...]  # the live-vaccine lists, if a contraindication reads them


_TRIGGERS: dict[int, tuple[Knowledge, _Triggers]] = {}


def _triggers(knowledge: Knowledge) -> _Triggers:
    cached = _TRIGGERS.get(id(knowledge))
    if cached is None or cached[0] is not knowledge:  # ids can be reused after a reload
        rules = knowledge.rules
        interacting = dict.fromkeys(c for rule in rules.dose for c in rule.when.interacting)
        classes = dict.fromkeys(c for rule in rules.contraindication for c in rule.medication_classes)
        vaccines = any(rule.live_vaccine_within_days for rule in rules.contraindication)
        cached = (
            knowledge,
            _Triggers(
                tuple((c, rules.interacting_class[c]) for c in interacting),
                tuple((c, rules.drug_class[c]) for c in classes),
                tuple(rules.live_vaccine.values()) if vaccines else (),
            ),
        )
        _TRIGGERS[id(knowledge)] = cached
    return cached[1]


def candidates(knowledge: Knowledge, drafts: list[dict[str, Any]]) -> list[Candidate]:
    """The drafts (not JAK inhibitors) that some JAK inhibitor rule would read; needs nothing but the drafts."""
    triggers = _triggers(knowledge)
    found = []
    for index, resource in enumerate(drafts):
        if not isinstance(resource, dict) or resource.get("resourceType") != "MedicationRequest":
            continue
        medicine = medication_fact(knowledge, resource)
        if medicine is None or medicine.drug is not None:
            continue  # a JAK inhibitor (or a recognised drug) is not "another medicine"
        display, codes = medicine.display, medicine.codes
        interacting = frozenset(c for c, entry in triggers.interacting if entry.contains(display, codes))
        classes = frozenset(c for c, entry in triggers.classes if entry.contains(display, codes))
        vaccine = any(is_live_vaccine(medicine, v) for v in triggers.vaccines)
        if interacting or classes or vaccine:
            order_id = str(resource.get("id") or f"draft-{index + 1}")
            found.append(Candidate(normalise(resource), order_id, medicine, interacting, classes, vaccine))
    return found


def _taken_as_order(
    ctx: RuleContext, medicine: MedicationFact, resources: dict[tuple[str, str], dict[str, Any]]
) -> DraftOrder | None:
    """The JAK inhibitor the patient takes, read like an order (its dose, indication and phase)."""
    resource = resources.get((medicine.resource_type, str(medicine.resource_id)))
    if resource is None or medicine.drug is None:
        return None
    if medicine.resource_type == "MedicationStatement":  # a statement's dosage reads like an order's
        resource = {**resource, "dosageInstruction": resource.get("dosage")}
    # an id of its own: the rules then count the active order itself as "already taking it" (not a new start)
    draft = ordermod.RecognisedDraft(normalise(resource), f"taken-now-{medicine.resource_id}", medicine.drug)
    return ordermod.read_orders(ctx.knowledge, [draft], ctx.facts)[0]


def _dose(
    ctx: RuleContext, order: DraftOrder, rules: list[DoseRule], also_ordered: list[dict[str, Any]]
) -> tuple[Finding | None, list[Missing]]:
    """The dose card (if any) and gaps for the JAK inhibitor taken now, with ``also_ordered`` drafts beside it."""
    as_ordered = replace(ctx, orders=[order], draft_resources=also_ordered)
    items = list(dosemod.evaluate_order(as_ordered, order, rules))
    return (next((i for i in items if isinstance(i, Finding)), None), [i for i in items if isinstance(i, Missing)])


def _taking(medicine: MedicationFact, dose: OrderedDose) -> str:
    if medicine.start:
        return say(
            "{medicine} — {dose} (active {record} since {start})",
            medicine=medicine.display,
            dose=dose.describe(),
            record=medicine.resource_type,
            start=medicine.start,
        )
    return say(
        "{medicine} — {dose} (active {record})",
        medicine=medicine.display,
        dose=dose.describe(),
        record=medicine.resource_type,
    )


def evaluate(
    ctx: RuleContext, found: list[Candidate], resources: dict[tuple[str, str], dict[str, Any]]
) -> Iterator[Finding | Missing]:
    """Findings (and gaps) for each candidate against each systemic JAK inhibitor the patient takes."""
    k = ctx.knowledge
    taking: dict[str, MedicationFact] = {}
    for medicine in ctx.facts.medications:
        if medicine.systemic_jaki_in_use and medicine.drug is not None:
            taking.setdefault(medicine.drug.drug_id, medicine)
    for card in k.rules.co_prescription.values():
        for candidate in found:
            for medicine in taking.values():
                yield from _one(ctx, card, candidate, medicine, resources)


def _one(
    ctx: RuleContext,
    card: CoPrescriptionCard,
    candidate: Candidate,
    medicine: MedicationFact,
    resources: dict[tuple[str, str], dict[str, Any]],
) -> Iterator[Finding | Missing]:
    k = ctx.knowledge
    if medicine.drug is None:
        return  # not reached: evaluate passes the recognised JAK inhibitors taken
    drug_id = medicine.drug.drug_id
    name = medicine.drug.entry.display
    order = _taken_as_order(ctx, medicine, resources)
    advice: list[Advice] = []
    gaps: list[Missing] = []
    dose_rules = k.rules.for_drug("dose", drug_id)
    by_class = {r.id for r in dose_rules if set(r.when.interacting) & candidate.interacting}
    if by_class and order is not None:
        # the dose taken now, judged without and with the new medicine: only what the medicine changes is said
        before, _ = _dose(ctx, order, dose_rules, [])
        after, after_gaps = _dose(ctx, order, dose_rules, [candidate.resource])
        if after is not None and (
            before is None or (after.indicator, after.summary) != (before.indicator, before.summary)
        ):
            advice.append(Advice(after.indicator, after.summary, after.detail, after.sources))
        gaps += [
            Missing(g.rule_id, g.check, g.why, g.sources, candidate.order_id, drug_id)
            for g in after_gaps
            if g.rule_id in by_class
        ]
    for rule in k.rules.for_drug("contraindication", drug_id):
        if set(rule.medication_classes) & candidate.classes or (
            rule.live_vaccine_within_days and candidate.live_vaccine
        ):
            headline = sentence(card.headlines.get(rule.id, rule.summary).format(drug=name))
            advice.append(Advice(rule.indicator, headline, rule.action, list(rule.sources)))
    yield from gaps
    if not advice:
        return
    indicator = max((a.indicator for a in advice), key=SEVERITY.__getitem__)
    taking = _taking(medicine, order.dose) if order is not None else medicine.display
    lines = "\n\n".join(f"**{a.headline}**\n\n{a.text}" for a in advice)
    first = advice[0].headline
    summary = card.summary.format(ordered=sentence(candidate.display), drug=name, advice=first[:1].lower() + first[1:])
    suggestions = []
    if indicator == "critical":
        label = card.remove_label.format(ordered=candidate.display)
        suggestions.append(
            ProposedSuggestion(
                label, (ProposedAction("delete", label, resource_id=(f"MedicationRequest/{candidate.order_id}",)),)
            )
        )
    yield Finding(
        rule_id=card.id,
        concern=f"co-prescription:{candidate.order_id}:{drug_id}",
        indicator=indicator,
        summary=summary,
        detail=card.intro.format(ordered=candidate.display, drug=name, taking=taking) + "\n\n" + lines,
        sources=list(dict.fromkeys(s for a in advice for s in a.sources)) or list(card.sources),
        override_set="contraindication" if indicator != "info" else None,
        suggestions=suggestions,
        order_id=candidate.order_id,
        drug=drug_id,
    )
