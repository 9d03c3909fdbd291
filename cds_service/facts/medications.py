"""Medications: every MedicationRequest and MedicationStatement of the record, the drug recognised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.fhir.values import VOID_STATUS, codings, parse_date
from cds_service.knowledge import Knowledge
from cds_service.knowledge import drugs as drugmod
from cds_service.record.index import PatientRecord


@dataclass(frozen=True)
class MedicationFact:
    drug: drugmod.DrugMatch | None
    display: str
    active: bool
    start: date | None
    codes: tuple[tuple[str, str], ...]  # (system kind or raw system, code)
    resource_type: str
    resource_id: str | None
    status: str = ""  # as recorded (active, completed, stopped, draft ...)
    end: date | None = None  # end of the dispense validity / effective period, if recorded

    @property
    def systemic_jaki_in_use(self) -> bool:
        """An active record of a systemic JAK inhibitor: what patient-view monitors."""
        return self.active and self.drug is not None and self.drug.category == "systemic"


MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")


def read_medications(knowledge: Knowledge, record: PatientRecord) -> list[MedicationFact]:
    """Every medication request and statement of the record, recognised (entered in error or cancelled: left out)."""
    found = []
    for kind in MEDICATION_TYPES:
        for resource in record.resources(kind):
            fact = medication_fact(knowledge, resource)
            if fact is not None:
                found.append(fact)
    return found


def medication_fact(knowledge: Knowledge, resource: dict[str, Any]) -> MedicationFact | None:
    """One MedicationRequest or MedicationStatement, recognised (None if entered in error or cancelled)."""
    kind = str(resource.get("resourceType") or "")  # the callers pass requests and statements only
    status = resource.get("status")
    if status in VOID_STATUS:
        return None
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, str):  # a bare name where R4 wants a CodeableConcept: unambiguous, read it
        concept = {"text": concept}
    elif not isinstance(concept, dict):
        concept = None
    medication = drugmod.contained_medication(resource)
    match = drugmod.recognise(knowledge, concept, medication, drugmod.route_hint(resource))
    if kind == "MedicationRequest":
        # a draft is an order being decided on (the hook's draftOrders), not a medication the patient takes
        active = status in ("active", "on-hold") and resource.get("intent") != "proposal"
        start = parse_date(resource.get("authoredOn"))
        dispense = resource.get("dispenseRequest")
        period = dispense.get("validityPeriod") if isinstance(dispense, dict) else None
    else:
        active = status in ("active", "intended")
        start = parse_date(resource.get("effectiveDateTime"))
        period = resource.get("effectivePeriod")
    period = period if isinstance(period, dict) else {}
    concepts = (concept, (medication or {}).get("code"))
    codes = tuple(
        (drugmod.system_kind(c.get("system")) or str(c.get("system") or ""), str(c.get("code") or "").strip())
        for cc in concepts
        for c in codings(cc)
    )
    display = (
        next(
            (cc["text"] for cc in concepts if isinstance(cc, dict) and isinstance(cc.get("text"), str) and cc["text"]),
            None,
        )
        or next((c.get("display") for cc in concepts for c in codings(cc) if c.get("display")), None)
        or (match.entry.display if match else "medication")
    )
    return MedicationFact(
        match,
        str(display),
        active,
        start or parse_date(period.get("start")),
        codes,
        kind,
        resource.get("id"),
        str(status or ""),
        parse_date(period.get("end")),
    )
