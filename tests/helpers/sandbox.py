"""A draft MedicationRequest exactly as the CDS Hooks sandbox (cds-hooks/sandbox) builds it
(``createFhirResource`` in src/reducers/medication-reducers.js)."""

TOFACITINIB_5_TABLET = ("1357541", "tofacitinib 5 MG Oral Tablet")


def sandbox_order(drug=TOFACITINIB_5_TABLET, pills=1, per_day=2, reason=None) -> dict:
    code, name = drug
    resource = {
        "resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
        "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-01",
        "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": {"value": pills, "system": "http://unitsofmeasure.org",
                                                                 "code": "{pill}"}}]}],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "unit": "days",
                                                       "system": "http://unitsofmeasure.org", "code": "d"}},
        "intent": "order",
        "category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                 "code": "community"}]},
        "medicationCodeableConcept": {"text": name, "coding": [{"display": name, "code": code,
                                                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm"}]},
    }
    if reason is not None:
        resource["reasonCode"] = reason["code"]
    return resource
