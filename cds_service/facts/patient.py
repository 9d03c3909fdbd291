"""The patient: birth date (with its precision, or why it cannot be used) and administrative sex."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.fhir.values import parse_date
from cds_service.i18n import say
from cds_service.record.index import PatientRecord

MAX_PLAUSIBLE_AGE = 125


@dataclass(frozen=True)
class Demographics:
    birth_date: date | None = None
    birth_date_precision: int = 10  # 4 = year only, 7 = year-month, 10 = full date
    birth_date_problem: str | None = None
    sex: str | None = None  # "female" | "male" | None: not recorded as either


def age_on(born: date, today: date) -> int:
    """Completed years on ``today``."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def read_patient(record: PatientRecord, today: date) -> Demographics:
    """The record's Patient resource (the first, if several) read; nothing recorded if there is none."""
    patient = next(iter(record.resources("Patient")), None)
    if not isinstance(patient, dict):
        return Demographics()
    raw = patient.get("birthDate")
    born = parse_date(raw)
    birth_date, precision, problem = None, 10, None
    if raw is not None and born is None:
        problem = say("the birth date {value} could not be interpreted", value=repr(str(raw)[:20]))
    elif born and (born > today or age_on(born, today) > MAX_PLAUSIBLE_AGE):
        problem = say("the birth date {value} gives an implausible age", value=str(raw))
    elif born and isinstance(raw, str):  # (a date was read, so raw is a string)
        birth_date, precision = born, min(len(raw), 10)
    gender = patient.get("gender")
    return Demographics(birth_date, precision, problem, gender if gender in ("female", "male") else None)
