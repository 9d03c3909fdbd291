"""One synthetic call per service in the server's master process, before it forks its workers.

Without it the first hook call of every worker paid for what the pipeline loads on first use: the
fhir.resources models the draft-order check imports (~0.3 s to import alone), compiled patterns and
first-use caches; measured, the first order-sign call of a fresh app took 123 ms against 3-6 ms for
the next ones. Done in the master, that work is shared by every worker (and frozen with the rest by
``gc.freeze``), so the first clinician of a worker waits no longer than the hundredth.

The calls go through ``hooks.evaluate`` only: no HTTP route, so nothing is recorded as issued, and
every prefetch key is given (empty), so nothing is fetched. Their cards are discarded.
"""

from __future__ import annotations

import logging
from typing import Any

from cds_service import hooks
from cds_service.fhir.values import query_type

log = logging.getLogger(__name__)

PATIENT_ID = "warm-up"
ORDER_ID = "warm-up-order"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def warm_up(engine) -> dict[str, int]:
    """Evaluate every service once on a synthetic patient; returns the number of cards per service id.

    A failure is logged and the server starts anyway (the first real call then pays, as before)."""
    try:
        order = synthetic_order(engine.knowledge)
    except LookupError as exc:
        log.warning("no warm-up (%s); the first real call of each worker will be slower", exc)
        return {}
    cards: dict[str, int] = {}
    for service in engine.services.values():
        try:
            result = hooks.evaluate(engine, service, synthetic_request(service, order))
        except Exception as exc:  # noqa: BLE001 - a warm-up never stops the server
            log.warning(
                "warm-up call of %s failed (%s); its first real call will be slower", service.id, type(exc).__name__
            )
            continue
        cards[service.id] = len(result.cards)
    return cards


def synthetic_order(knowledge) -> dict:
    """A draft order of the first systemic JAK inhibitor product in the knowledge, once daily at its strength."""
    for entry in knowledge.drugs.values():
        if entry.category != "systemic":
            continue
        for code in entry.rxnorm:
            if code.kind == "product" and code.strength_mg:
                return _order(entry.display, code.code, code.strength_mg)
    raise LookupError("the knowledge names no systemic JAK inhibitor product with an RxNorm code and strength")


def _order(display: str, rxnorm: str, strength_mg: float) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": ORDER_ID,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM_SYSTEM, "code": rxnorm}],
            "text": f"{display} {strength_mg:g} mg tablet",
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": strength_mg, "unit": "mg"}}],
            }
        ],
    }


def synthetic_request(service, order: dict) -> dict:
    """The hook request: the order as draft (order hooks) or as the patient's active medication
    (patient-view), a patient, a condition and another medication known only by their text (so that the
    rules' text matching compiles its patterns here), and every other prefetch key an empty search result."""
    context: dict[str, Any] = {"userId": "Practitioner/warm-up", "patientId": PATIENT_ID}
    if service.hook in ("order-select", "order-sign"):
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}
        if service.hook == "order-select":
            context["selections"] = [f"MedicationRequest/{ORDER_ID}"]
    subject = {"reference": f"Patient/{PATIENT_ID}"}
    active = {**order, "status": "active", "authoredOn": "2020-01-01"}
    other = {
        "resourceType": "MedicationRequest",
        "id": "warm-up-other",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "warm-up medication"},
        "subject": subject,
    }
    condition = {
        "resourceType": "Condition",
        "id": "warm-up-condition",
        "code": {"text": "warm-up condition"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "subject": subject,
    }
    record = {
        "MedicationRequest": [other, active] if service.hook == "patient-view" else [other],
        "Condition": [condition],
    }
    prefetch: dict[str, Any] = {}
    for key, template in service.prefetch.items():
        kind = query_type(template)
        if kind == "Patient":
            prefetch[key] = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1970-01-01"}
        else:
            prefetch[key] = {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in record.pop(kind, [])],
            }
    return {"hook": service.hook, "hookInstance": f"warm-up-{service.id}", "context": context, "prefetch": prefetch}
