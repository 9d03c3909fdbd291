"""A quick proof that a draft MedicationRequest is valid FHIR R4, for the shape EHRs usually send.

Validating a draft with ``fhir.resources`` costs about 0.2-0.3 ms (its Python validators run for
each of the ~11 nested elements), the largest single step of an order hook. Most drafts have one
plain shape: status, intent, a coded or named medication, the subject, the date, dosage text,
frequency/period/unit and an mg quantity, maybe a reason, a category and a dispense request (as the
CDS Hooks sandbox sends). ``plainly_valid`` walks that shape with checks *stricter* than the
library's (see below) and answers True only when every element passes; anything else — another
element, an extension, an unusual value — answers False, and the caller validates with
``fhir.resources`` as before. So True never hides a problem the library would
report (tests/fhir/test_r4_draft_check.py checks this over every fixture draft and random mutations).

Stricter than the library, on purpose: strings must match the FHIR string pattern in full (the
library accepts any string with one matching character), codes may have single spaces only, URIs no
whitespace, no empty object or list, status/intent/periodUnit must be in their value sets (the
library does not check them; the value sets are read from its models), dateTime must be a full date or
a full date-time with a time zone, numbers must be plain (no boolean, no exponent, no string), a
period needs its unit. The elements taken are checked against the library's models on first use.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import date, datetime

log = logging.getLogger(__name__)

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CODE = re.compile(r"[^\s]+(?: [^\s]+)*")
_STRING = re.compile(r"[ \r\n\t\S]+")
_URI = re.compile(r"\S+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:0\d|1[0-3]):[0-5]\d|[+-]14:00)",
    re.ASCII,
)  # offsets up to 14:00
_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9]\d{0,14})(?:\.\d{1,15})?", re.ASCII)
_MAX_TEXT = 10_000

# the elements this check takes, per element type (everything else goes to fhir.resources)
_MEDICATION_REQUEST = {
    "resourceType",
    "id",
    "status",
    "intent",
    "medicationCodeableConcept",
    "subject",
    "authoredOn",
    "dosageInstruction",
    "reasonCode",
    "requester",
    "encounter",
    "category",
    "dispenseRequest",
}
_CODEABLE_CONCEPT = {"coding", "text"}
_CODING = {"system", "code", "display"}
_REFERENCE = {"reference", "display"}
_DOSAGE = {"text", "timing", "doseAndRate", "route"}
_TIMING = {"repeat"}
_REPEAT = {"frequency", "period", "periodUnit"}
_DOSE_AND_RATE = {"doseQuantity"}
_QUANTITY = {"value", "unit", "system", "code"}
_DISPENSE_REQUEST = {"expectedSupplyDuration", "numberOfRepeatsAllowed", "quantity"}

_value_sets: dict[str, frozenset[str]] | None = None


def _load_value_sets() -> dict[str, frozenset[str]]:
    """The value sets (from the library's models), after checking each element taken here is one of
    the model's own elements. A library update that renames or drops one turns the quick check off
    (every draft then goes to the library) and says so in the log; the tests fail on it."""
    from fhir.resources.R4B.codeableconcept import CodeableConcept
    from fhir.resources.R4B.coding import Coding
    from fhir.resources.R4B.dosage import Dosage, DosageDoseAndRate
    from fhir.resources.R4B.duration import Duration
    from fhir.resources.R4B.medicationrequest import (
        MedicationRequest,
        MedicationRequestDispenseRequest,
    )
    from fhir.resources.R4B.quantity import Quantity
    from fhir.resources.R4B.reference import Reference
    from fhir.resources.R4B.timing import Timing, TimingRepeat

    for model, taken in (
        (MedicationRequest, _MEDICATION_REQUEST - {"resourceType"}),
        (CodeableConcept, _CODEABLE_CONCEPT),
        (Coding, _CODING),
        (Reference, _REFERENCE),
        (Dosage, _DOSAGE),
        (Timing, _TIMING),
        (TimingRepeat, _REPEAT),
        (DosageDoseAndRate, _DOSE_AND_RATE),
        (Quantity, _QUANTITY),
        (Duration, _QUANTITY),
        (MedicationRequestDispenseRequest, _DISPENSE_REQUEST),
    ):
        elements = {field.alias or name for name, field in model.model_fields.items()}
        missing = taken - elements
        if missing:
            raise RuntimeError(f"fhir.resources {model.__name__} has no element(s) {sorted(missing)}")

    def value_set(model, name: str) -> frozenset[str]:
        return frozenset(model.model_fields[name].json_schema_extra["enum_values"])

    return {
        "status": value_set(MedicationRequest, "status"),
        "intent": value_set(MedicationRequest, "intent"),
        "periodUnit": value_set(TimingRepeat, "periodUnit"),
    }


def plainly_valid(resource: dict) -> bool:
    """True only if ``resource`` is a MedicationRequest of the plain shape and every element passes."""
    global _value_sets
    if _value_sets is None:
        try:
            _value_sets = _load_value_sets()
        except (RuntimeError, ImportError, KeyError, TypeError) as exc:
            log.error("quick R4 check of draft orders is off, fhir.resources validates every draft: %s", exc)
            _value_sets = {}
    if (
        not _value_sets
        or type(resource) is not dict
        or resource.get("resourceType") != "MedicationRequest"
        or not resource.keys() <= _MEDICATION_REQUEST
    ):
        return False
    if not (
        _in(resource.get("status"), "status")
        and _in(resource.get("intent"), "intent")
        and _codeable_concept(resource.get("medicationCodeableConcept"))
        and _reference(resource.get("subject"))
    ):
        return False
    for key, value in resource.items():
        if key == "id":
            ok = type(value) is str and _ID.fullmatch(value) is not None
        elif key == "authoredOn":
            ok = _date_time(value)
        elif key == "dosageInstruction":
            ok = _list_of(value, _dosage)
        elif key in ("reasonCode", "category"):
            ok = _list_of(value, _codeable_concept)
        elif key == "dispenseRequest":
            ok = _dispense_request(value)
        elif key in ("requester", "encounter"):
            ok = _reference(value)
        else:
            ok = True  # resourceType, status, intent, medication, subject: checked above
        if not ok:
            return False
    return True


def _in(value, value_set: str) -> bool:
    return type(value) is str and _value_sets is not None and value in _value_sets[value_set]


def _element(value, allowed: set[str]) -> bool:
    return type(value) is dict and bool(value) and value.keys() <= allowed


def _list_of(value, check) -> bool:
    return type(value) is list and bool(value) and all(check(item) for item in value)


def _string(value) -> bool:
    return type(value) is str and len(value) <= _MAX_TEXT and _STRING.fullmatch(value) is not None


def _code(value) -> bool:
    return type(value) is str and len(value) <= 256 and _CODE.fullmatch(value) is not None


def _uri(value) -> bool:
    return type(value) is str and len(value) <= 4096 and _URI.fullmatch(value) is not None


def _decimal(value) -> bool:
    if type(value) is int:
        return abs(value) < 10**15
    return type(value) is float and math.isfinite(value) and _PLAIN_DECIMAL.fullmatch(repr(value)) is not None


def _date_time(value) -> bool:
    if type(value) is not str:
        return False
    try:
        if _DATE.fullmatch(value):
            return 1900 <= date.fromisoformat(value).year <= 2200
        if _DATE_TIME.fullmatch(value):
            return 1900 <= datetime.fromisoformat(value).year <= 2200
    except ValueError:
        return False
    return False


def _coding(value) -> bool:
    return _element(value, _CODING) and all(
        (_uri if key == "system" else _code if key == "code" else _string)(item) for key, item in value.items()
    )


def _codeable_concept(value) -> bool:
    if not _element(value, _CODEABLE_CONCEPT):
        return False
    return all(_list_of(item, _coding) if key == "coding" else _string(item) for key, item in value.items())


def _reference(value) -> bool:
    return _element(value, _REFERENCE) and all(_string(item) for item in value.values())


_QUANTITY_CHECKS = {"value": _decimal, "unit": _string, "system": _uri, "code": _code}


def _quantity(value) -> bool:
    return _element(value, _QUANTITY) and all(_QUANTITY_CHECKS[key](item) for key, item in value.items())


def _timing(value) -> bool:
    if not _element(value, _TIMING):
        return False
    repeat = value.get("repeat")
    if not _element(repeat, _REPEAT):
        return False
    frequency, period, unit = repeat.get("frequency"), repeat.get("period"), repeat.get("periodUnit")
    if "frequency" in repeat and not (type(frequency) is int and 1 <= frequency <= 2**31 - 1):
        return False
    if "period" in repeat and not (_decimal(period) and period > 0 and unit is not None):
        return False
    return "periodUnit" not in repeat or _in(unit, "periodUnit")


def _dispense_request(value) -> bool:
    if not _element(value, _DISPENSE_REQUEST):
        return False
    repeats = value.get("numberOfRepeatsAllowed", 0)
    return (
        type(repeats) is int
        and 0 <= repeats <= 2**31 - 1
        and all(_quantity(value[key]) for key in ("expectedSupplyDuration", "quantity") if key in value)
    )


def _dose_and_rate(value) -> bool:
    return _element(value, _DOSE_AND_RATE) and _quantity(value.get("doseQuantity"))


def _dose_and_rates(value) -> bool:
    return _list_of(value, _dose_and_rate)


_DOSAGE_CHECKS = {"text": _string, "timing": _timing, "doseAndRate": _dose_and_rates, "route": _codeable_concept}


def _dosage(value) -> bool:
    return _element(value, _DOSAGE) and all(_DOSAGE_CHECKS[key](item) for key, item in value.items())
