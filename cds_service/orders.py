"""Draft orders from the hook context: recognised from the drafts alone, then read with the record.

``draftOrders`` should be a Bundle; a bare resource or a list of resources
is accepted too. Each MedicationRequest is validated as FHIR R4 with
fhir.resources after tolerant normalisation; an order that still fails is
evaluated from what could be read and the failure is said on a card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.errors import CdsError
from cds_service.facts import PatientFacts, coded_indication
from cds_service.fhir.r4_check import plainly_valid
from cds_service.fhir.tolerant import normalise
from cds_service.fhir.values import codings, resources_of
from cds_service.findings import Missing
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge import drugs as drugmod
from cds_service.knowledge.drugs import DrugMatch, OrderedDose
from cds_service.knowledge.textmatch import WORD_START, any_word

_validator = None


@dataclass(frozen=True)
class DraftOrder:
    """A recognised JAK inhibitor draft, read with the record: its dose, indication and phase."""

    resource: dict
    order_id: str
    match: DrugMatch
    dose: OrderedDose
    indication: str | None  # indication id from knowledge, or None
    indication_how: str  # "order reason" | "active condition" | "not recorded" | "ambiguous: ..."
    reason_given: bool = False  # the order carries a reasonCode or reasonReference (recognised or not)
    reasons: tuple[str, ...] = ()  # every indication id (approved or off-label) recognised in the order's reason
    phase: str | None = None  # "induction" / "maintenance" when the order's text says which (orders.order_phase)

    @property
    def drug(self) -> str:
        return self.match.drug_id

    @property
    def name(self) -> str:
        return self.match.entry.display


def validate_r4(resource: dict) -> str | None:
    """None if the MedicationRequest validates as FHIR R4(B), else the first problem.

    The usual plain shape is settled by ``r4_draft_check`` (stricter than the library, ~20 us);
    everything else by ``fhir.resources`` (~0.2-0.3 ms)."""
    if plainly_valid(resource):
        return None
    global _validator
    if _validator is None:
        from fhir.resources.R4B.medicationrequest import MedicationRequest

        _validator = MedicationRequest
    try:
        _validator.model_validate(resource)
        return None
    except Exception as exc:  # pydantic.ValidationError, or fhir_core errors
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return str(exc).splitlines()[0]


def draft_resources(context: dict) -> list[dict]:
    raw = context.get("draftOrders")
    resources = resources_of(raw)
    if resources is None:
        raise CdsError(
            400, "context.draftOrders must be a FHIR Bundle of draft orders", expression=["context.draftOrders"]
        )
    return resources


def selected(resources: list[dict], context: dict) -> list[dict]:
    """order-select: evaluate the selected orders; without usable selections, all of them."""
    selections = context.get("selections")
    if isinstance(selections, str):
        selections = [selections]
    if not isinstance(selections, list) or not selections:
        return resources
    wanted = {s.split("/", 1)[-1] for s in selections if isinstance(s, str)}
    chosen = [r for r in resources if r.get("id") in wanted]
    return chosen or resources


def _listed(value: object) -> list[dict[str, Any]]:
    """An R4 array element as a list of objects (a single object where R4 wants a list is tolerated)."""
    value = [value] if isinstance(value, dict) else value
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def reason_indications(
    knowledge: Knowledge, resource: dict[str, Any], facts: PatientFacts
) -> tuple[bool, tuple[str, ...]]:
    """(does the order state a reason at all?, every indication recognised in reasonCode/reasonReference, in
    order: codes first). A reasonReference is read through the Condition it names in ``facts.conditions``
    (a Condition entered in error or refuted names no indication)."""
    codes, refs = _listed(resource.get("reasonCode")), _listed(resource.get("reasonReference"))
    by_id = {c.resource_id: c for c in facts.conditions if c.resource_id is not None}
    found: list[str | None] = []
    for concept in codes:
        found.append(next(filter(None, (coded_indication(knowledge, coding) for coding in codings(concept))), None))
    for ref in refs:
        condition = by_id.get(str(ref.get("reference") or "").split("/")[-1])
        found.append(condition.indication if condition is not None else None)
    return bool(codes or refs), tuple(dict.fromkeys(f for f in found if f))


def _indication(
    knowledge: Knowledge, facts: PatientFacts, match: drugmod.DrugMatch, reasons: tuple[str, ...]
) -> tuple[str | None, str]:
    """The order's indication and how it was found: its reason first, else the one approved active condition."""
    if reasons:
        return reasons[0], "order reason"
    approved = set(match.entry.indications)
    active = {c.indication for c in facts.conditions if c.active and c.indication}
    candidates = active & approved if approved else active
    if len(candidates) == 1:
        return next(iter(candidates)), "active condition"
    if len(candidates) > 1:
        return None, "ambiguous: " + ", ".join(sorted(candidates))
    if active:  # conditions that are indications of other drugs: say them, it is not "nothing recorded"
        names = ", ".join(sorted(knowledge.indications[i].display for i in active if i in knowledge.indications))
        return None, say(
            "no approved indication of {drug} on record; recorded: {indications}",
            drug=match.entry.display,
            indications=names,
        )
    return None, "not recorded"


def how_text(how: str) -> str:
    """How an order's indication was found (``DraftOrder.indication_how``, a code or a said sentence) as a card
    says it."""
    if how == "order reason":
        return say("order reason")
    if how == "active condition":
        return say("active condition")
    if how == "not recorded":
        return say("not recorded")
    if how.startswith("ambiguous: "):
        return say("ambiguous: {indications}", indications=how.removeprefix("ambiguous: "))
    return how


def _order_texts(resource: dict) -> list[str]:
    texts: list[object] = []
    dosages = resource.get("dosageInstruction") or []
    for dosage in dosages if isinstance(dosages, list) else [dosages]:
        if isinstance(dosage, dict):
            texts += [dosage.get("text"), dosage.get("patientInstruction")]
            texts += [(a or {}).get("text") for a in dosage.get("additionalInstruction") or [] if isinstance(a, dict)]
    texts += [(n or {}).get("text") for n in resource.get("note") or [] if isinstance(n, dict)]
    course = resource.get("courseOfTherapyType")
    if isinstance(course, dict):  # a CodeableConcept; anything else is not read (like a note that is not one)
        texts.append(course.get("text"))
    return [t for t in texts if isinstance(t, str) and t]


def order_phase(knowledge: Knowledge, resource: dict) -> str | None:
    """'induction' / 'maintenance' if the order's text says so (and not both), else None (``[dose_phase.*]``)."""
    text = " ".join(_order_texts(resource)).lower()
    found = {phase for phase, entry in knowledge.rules.dose_phase.items() if any_word(text, entry.words, *WORD_START)}
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class RecognisedDraft:
    """A draft MedicationRequest of a drug the knowledge knows, before the patient's record is read."""

    resource: dict  # after tolerant normalisation
    order_id: str
    match: drugmod.DrugMatch


def recognise_drafts(knowledge: Knowledge, resources: list[dict]) -> tuple[list[RecognisedDraft], list[Missing]]:
    """The drafts this service speaks about, and what cannot be read of them (not R4, not valid).

    Needs nothing but the drafts: an order of any other drug is answered without reading the record."""
    recognised: list[RecognisedDraft] = []
    gaps: list[Missing] = []
    for index, raw in enumerate(resources):
        if raw.get("resourceType") == "MedicationOrder":
            gaps.extend(_dstu2_order(knowledge, raw, index))
        if raw.get("resourceType") != "MedicationRequest":
            continue
        resource = normalise(raw)
        order_id = str(resource.get("id") or f"draft-{index + 1}")
        match = drugmod.recognise(
            knowledge,
            resource.get("medicationCodeableConcept"),
            drugmod.contained_medication(resource),
            drugmod.route_hint(resource),
        )
        if match is None:
            continue
        problem = validate_r4(resource)
        if problem:
            gaps.append(
                Missing(
                    "fhir-validation",
                    say("the {drug} draft order", drug=match.entry.display),
                    say("it is not valid FHIR R4 ({problem}); checks used what could be read", problem=problem),
                    tuple(match.entry.sources),
                    order_id,
                    match.drug_id,
                )
            )
        recognised.append(RecognisedDraft(resource, order_id, match))
    return recognised, gaps


def read_orders(knowledge: Knowledge, drafts: list[RecognisedDraft], facts: PatientFacts) -> list[DraftOrder]:
    """Each recognised draft with its dose, its indication (from the order or the record) and its phase."""
    orders: list[DraftOrder] = []
    for draft in drafts:
        resource, match = draft.resource, draft.match
        dose = drugmod.ordered_dose(resource, match)
        reason_given, reasons = reason_indications(knowledge, resource, facts)
        indication, how = _indication(knowledge, facts, match, reasons)
        orders.append(
            DraftOrder(
                resource,
                draft.order_id,
                match,
                dose,
                indication,
                how,
                reason_given,
                reasons,
                order_phase(knowledge, resource),
            )
        )
    return orders


def _dstu2_order(knowledge: Knowledge, raw: dict, index: int) -> list[Missing]:
    """A FHIR DSTU2 MedicationOrder (what EHRs and the CDS Hooks sandbox send on DSTU2 servers) of a systemic
    JAK inhibitor is not read, and that is said: silence would look like "no problems"."""
    resource = normalise(raw)
    match = drugmod.recognise(knowledge, resource.get("medicationCodeableConcept"), None, drugmod.route_hint(resource))
    if match is None or match.category != "systemic":
        return []
    order_id = str(resource.get("id") or f"draft-{index + 1}")
    return [
        Missing(
            "fhir-version",
            say("the {drug} draft order", drug=match.entry.display),
            say("a FHIR DSTU2 MedicationOrder is not read (R4 MedicationRequest only): nothing was checked"),
            tuple(match.entry.sources),
            order_id,
            match.drug_id,
        )
    ]
