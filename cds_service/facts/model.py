"""PatientFacts: the few things the rules need, read once from the patient record.

Built complete by ``build.build_facts`` from the pure readers (patient, labs, conditions, medications, hepatic,
coded_records, safety) and never changed afterwards; every field is typed. Missing or uninterpretable values
are kept as explicit gaps (``unavailable``, ``gaps``, ``LabSeries.unreadable``), never as normal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from cds_service.facts.coded_records import CodedRecord
from cds_service.facts.conditions import ConditionFact
from cds_service.facts.hepatic import ChildPugh
from cds_service.facts.labs import LabSeries, LabValue, Uninterpretable
from cds_service.facts.medications import MEDICATION_TYPES, MedicationFact
from cds_service.facts.patient import age_on
from cds_service.facts.safety import (
    AllergyFact,
    CodedResult,
    ImmunizationFact,
    ResultReading,
    TreatmentRecord,
    read_results,
)


@dataclass(frozen=True)
class PatientFacts:
    today: date
    patient_id: str
    birth_date: date | None = None
    birth_date_precision: int = 10  # 4 = year only, 7 = year-month, 10 = full date
    birth_date_problem: str | None = None
    sex: str | None = None
    labs: Mapping[str, LabSeries] = field(default_factory=dict)  # newest first, read on demand
    conditions: Sequence[ConditionFact] = ()
    medications: Sequence[MedicationFact] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)  # prefetch key -> why
    gaps: Mapping[str, str] = field(default_factory=dict)  # "Observation|<loinc>" / type -> why
    child_pugh: ChildPugh | None = None  # latest class A/B/C, or None: not recorded
    records: Mapping[str, Sequence[CodedRecord]] = field(default_factory=dict)  # "loinc|code" -> newest first
    coded_results: Mapping[str, Sequence[CodedResult]] = field(
        default_factory=dict
    )  # qualitative_test id -> newest first
    immunizations: Sequence[ImmunizationFact] = ()
    allergies: Sequence[AllergyFact] = ()  # active, not refuted
    treatments: Sequence[TreatmentRecord] = ()  # ART, TB preventive treatment

    # -- age ----------------------------------------------------------------
    @property
    def age(self) -> int | None:
        """Completed years at the evaluation date (lowest possible if birthDate is partial)."""
        latest = self.birth_date_latest
        return age_on(latest, self.today) if latest is not None else None

    @property
    def age_max(self) -> int | None:
        return age_on(self.birth_date, self.today) if self.birth_date else None

    @property
    def birth_date_latest(self) -> date | None:
        if self.birth_date is None:
            return None
        if self.birth_date_precision == 4:
            return date(self.birth_date.year, 12, 31)
        if self.birth_date_precision == 7:
            nxt = date(self.birth_date.year + (self.birth_date.month == 12), self.birth_date.month % 12 + 1, 1)
            return date.fromordinal(nxt.toordinal() - 1)
        return self.birth_date

    # -- labs ---------------------------------------------------------------
    def latest(self, analyte: str, max_age_days: int | None = None) -> LabValue | None:
        series = self.labs.get(analyte)
        newest = series.newest() if series is not None else None
        if newest is None:
            return None
        if max_age_days is not None and (self.today - newest.when).days > max_age_days:
            return None
        return newest

    def unreadable(self, analyte: str, since: date | None = None) -> list[Uninterpretable]:
        """Results of ``analyte`` that could not be interpreted and are not older than its newest usable
        result (undated ones included), dated on or after ``since`` if given; newest first."""
        series = self.labs.get(analyte)
        return series.unreadable(since) if series is not None else []

    def unreadable_within(self, analyte: str, max_age_days: int) -> list[Uninterpretable]:
        """``unreadable`` for results at most ``max_age_days`` old (the age limit ``latest`` applies)."""
        return self.unreadable(analyte, since=self.today - timedelta(days=max_age_days))

    def concept_present(self, concept: str) -> list[ConditionFact]:
        return [c for c in self.conditions if concept in c.concepts]

    def results(self, test_ids: Sequence[str] | set[str] | frozenset[str], since: date | None = None) -> ResultReading:
        """The coded results of these ``[qualitative_test.*]`` tests (dated ``since`` or later, if given)."""
        return read_results(self.coded_results, test_ids, since)

    def why_unavailable(self, resource_type: str, codes: list[str] | tuple[str, ...] = ()) -> str | None:
        """Why data of this type (and, for Observations, these codes) could not be obtained, if it could not."""
        for code in codes:
            why = self.gaps.get(f"{resource_type}|{code}")
            if why:
                return why
        return self.gaps.get(resource_type)

    def why_medications_unavailable(self) -> str | None:
        """Why the medication list (requests or statements) could not be obtained, if it could not."""
        for resource_type in MEDICATION_TYPES:
            why = self.why_unavailable(resource_type)
            if why:
                return why
        return None
