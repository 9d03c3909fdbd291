"""Patient facts: the few things the rules need, read once from the patient record.

``patient``, ``labs``, ``conditions``, ``medications``, ``hepatic``, ``coded_records`` and ``safety`` are pure
readers (record in, values out); ``model`` holds ``PatientFacts``, built complete by ``build``; ``renal``
derives creatinine clearance and eGFR from the facts. Nothing here imports a rule.
"""

from cds_service.facts.build import build_facts, today_from
from cds_service.facts.coded_records import CodedRecord
from cds_service.facts.conditions import ConditionFact, coded_indication
from cds_service.facts.hepatic import ChildPugh
from cds_service.facts.labs import LabSeries, LabValue, Uninterpretable, lab_text, pretty_unit
from cds_service.facts.medications import MEDICATION_TYPES, MedicationFact, medication_fact, read_medications
from cds_service.facts.model import PatientFacts
from cds_service.facts.renal import Derived, creatinine_clearance, egfr
from cds_service.facts.safety import (
    AllergyFact,
    CodedResult,
    ImmunizationFact,
    ResultReading,
    TreatmentRecord,
)

__all__ = [
    "MEDICATION_TYPES",
    "AllergyFact",
    "ChildPugh",
    "CodedRecord",
    "CodedResult",
    "ConditionFact",
    "Derived",
    "ImmunizationFact",
    "LabSeries",
    "LabValue",
    "MedicationFact",
    "PatientFacts",
    "ResultReading",
    "TreatmentRecord",
    "Uninterpretable",
    "build_facts",
    "coded_indication",
    "creatinine_clearance",
    "egfr",
    "lab_text",
    "medication_fact",
    "pretty_unit",
    "read_medications",
    "today_from",
]
