"""``build_facts``: the patient record reduced to ``PatientFacts`` by the pure readers, one pass each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from cds_service.facts import coded_records, conditions, hepatic, labs, medications, patient, safety
from cds_service.facts.medications import MedicationFact
from cds_service.facts.model import PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.record.index import PatientRecord


def build_facts(
    knowledge: Knowledge,
    record: PatientRecord,
    patient_id: str,
    today: date,
    known_medications: Sequence[MedicationFact] | None = None,
) -> PatientFacts:
    """Every fact the rules read, built complete (each reader is looked up on its module, so ``bench.stages`` can
    time it).

    ``known_medications``: ``read_medications`` of the same record, if the caller has read them already."""
    demographics = patient.read_patient(record, today)
    meds = medications.read_medications(knowledge, record) if known_medications is None else known_medications
    return PatientFacts(
        today=today,
        patient_id=patient_id,
        birth_date=demographics.birth_date,
        birth_date_precision=demographics.birth_date_precision,
        birth_date_problem=demographics.birth_date_problem,
        sex=demographics.sex,
        labs=labs.read_labs(knowledge, record),
        conditions=conditions.read_conditions(knowledge, record),
        medications=meds,
        unavailable=dict(record.unavailable),
        gaps=dict(record.gaps),
        child_pugh=hepatic.read_child_pugh(knowledge, record, today),
        records=coded_records.read_records(knowledge, record),
        coded_results=safety.read_coded_results(knowledge, record),
        immunizations=safety.read_immunizations(record),
        allergies=safety.read_allergies(record),
        treatments=safety.read_treatments(knowledge, meds),
    )


def today_from(setting: str | None) -> date:
    """The evaluation date: the configured one (replays, tests), else today (UTC)."""
    if setting:
        return date.fromisoformat(setting)
    return datetime.utcnow().date()
