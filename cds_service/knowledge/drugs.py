"""Recognise JAK inhibitors in medication resources and read the ordered dose.

Recognition order: RxNorm, ATC, SNOMED CT codes, then ingredient/brand names
in the text (EHRs often send only text for newer drugs). Dose is read from
``dosageInstruction``: an mg quantity, or tablets x strength where the
strength is known from the code, the Medication or the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cds_service.fhir.tolerant import as_list
from cds_service.fhir.values import codings
from cds_service.i18n import number, say
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.model import DrugEntry
from cds_service.knowledge.textmatch import WORD_START, any_word

RXNORM = "rxnorm"
ATC = "atc"
SNOMED = "snomed"
_TOPICAL_ROUTE_CODES = {"6064005", "45890007", "359540000"}  # SNOMED topical / transdermal / cutaneous
_MODIFIED_RELEASE_WORDS = re.compile(r"\b(XR|ER|prolonged|extended|retard)\b", re.I)
_TOPICAL_WORDS = re.compile(r"\b(cream|topical|ointment|crème|creme|1\.5\s*%)", re.I)
_MG_IN_TEXT = re.compile(r"(\d+(?:[.,]\d+)?)\s*mg\b(?!\s*/)", re.I)  # not a concentration (15 mg/g, 1 mg/mL)
_TABLET_UNITS = {
    "tablet",
    "tablets",
    "tab",
    "tabs",
    "{tbl}",
    "{tablet}",
    "{tablets}",
    "tbl",
    "1",
    "{tab}",
    "capsule",
    "{capsule}",
    "{cap}",
    "{pill}",
    "{pills}",
    "pill",
    "pills",
}  # UCUM annotation the CDS Hooks sandbox sends
_PER_DAY_BY_CODE = {
    "QD": 1,
    "OD": 1,
    "DAILY": 1,
    "Q24H": 1,
    "QAM": 1,
    "QPM": 1,
    "HS": 1,
    "BID": 2,
    "Q12H": 2,
    "TID": 3,
    "Q8H": 3,
    "QID": 4,
    "Q6H": 4,
}
_PERIOD_DAYS = {"h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0}
# most specific first: "twice daily" also contains "daily"
_TEXT_FREQUENCY = [
    (
        re.compile(r"\b(twice|2\s*x|two times)\s*(a\s*)?(daily|day|per day)\b|\bbid\b|\bx\s*2\s*daglig|\bq12h\b", re.I),
        2,
    ),
    (
        re.compile(
            r"\b(once|1\s*x|one time)\s*(a\s*)?(daily|day|per day)\b|\bdaily\b|\bx\s*1\s*daglig|\bqd\b|\bod\b", re.I
        ),
        1,
    ),
]


def system_kind(system: str | None) -> str | None:
    if not system:
        return None
    s = system.lower()
    if "rxnorm" in s:
        return RXNORM
    if "atc" in s or "whocc" in s:
        return ATC
    if "snomed" in s:
        return SNOMED
    return None


@dataclass(frozen=True)
class DrugMatch:
    drug_id: str
    entry: DrugEntry
    matched_by: str  # rxnorm | atc | snomed | text
    strength_mg: float | None  # per unit (tablet), when known
    modified_release: bool = False

    @property
    def category(self) -> str:
        return self.entry.category


def _texts(concept: dict | None, medication: dict | None) -> list[str]:
    texts = []
    for source in (concept, (medication or {}).get("code")):
        if isinstance(source, dict):
            if isinstance(source.get("text"), str):
                texts.append(source["text"])
            texts.extend(c["display"] for c in codings(source) if isinstance(c.get("display"), str))
    return texts


def _strength_from_medication(medication: dict | None) -> float | None:
    """Medication.ingredient[0].strength as mg per 1 unit, if unambiguous."""
    if not isinstance(medication, dict):
        return None
    for ingredient in as_list(medication.get("ingredient")):
        strength = (ingredient or {}).get("strength") or {}
        numerator, denominator = strength.get("numerator") or {}, strength.get("denominator") or {}
        unit = (numerator.get("code") or numerator.get("unit") or "").lower()
        per = str(denominator.get("code") or denominator.get("unit") or "").strip().lower()
        if per and per not in _TABLET_UNITS:
            continue  # mg per mL / per g is a concentration, not a tablet strength
        if unit == "mg" and isinstance(numerator.get("value"), (int, float)) and denominator.get("value", 1) == 1:
            return float(numerator["value"])
    return None


def _strength_from_text(texts: list[str], entry: DrugEntry) -> float | None:
    for text in texts:
        match = _MG_IN_TEXT.search(text)
        if match:
            value = float(match.group(1).replace(",", "."))
            if not entry.strengths_mg or value in entry.strengths_mg:
                return value
    return None


def recognise(
    knowledge: Knowledge, concept: dict | None, medication: dict | None = None, route_hint: str | None = None
) -> DrugMatch | None:
    """Which drug of the knowledge base (if any) a medication concept names."""
    found_codings = codings(concept) + codings((medication or {}).get("code"))
    found: tuple[str, str, float | None, bool] | None = None
    for coding in found_codings:
        kind, code = system_kind(coding.get("system")), str(coding.get("code") or "").strip()
        if not code:
            continue
        if kind == RXNORM and code in knowledge.rxnorm_to_drug:
            drug_id, rx = knowledge.rxnorm_to_drug[code]
            found = (drug_id, RXNORM, rx.strength_mg, rx.modified_release)
            break
        if kind == ATC and code.upper() in knowledge.atc_to_drug:
            found = (knowledge.atc_to_drug[code.upper()], ATC, None, False)
            break
        if kind == SNOMED and code in knowledge.snomed_to_drug:
            found = (knowledge.snomed_to_drug[code], SNOMED, None, False)
            break
    texts = _texts(concept, medication)
    if found is None:
        lowered = " ".join(texts).lower()
        names = knowledge.drug_names
        if names and any_word(lowered, names, *WORD_START):  # one cached pattern rules out most medications
            for name, drug_id in knowledge.name_to_drug:  # longest name first
                if any_word(lowered, (name,), *WORD_START):
                    found = (drug_id, "text", None, False)
                    break
    if found is None:
        return None
    drug_id, matched_by, strength, modified = found
    # Ruxolitinib: the same ingredient code is oral or cream; the form decides (decision 12).
    if drug_id == "ruxolitinib-oral" and (route_hint == "topical" or any(_TOPICAL_WORDS.search(t) for t in texts)):
        drug_id = "ruxolitinib-topical"
    entry = knowledge.drugs[drug_id]
    if strength is None:
        strength = _strength_from_medication(medication) or _strength_from_text(texts, entry)
    if not modified and any(_MODIFIED_RELEASE_WORDS.search(t) for t in texts):
        modified = True
    return DrugMatch(drug_id, entry, matched_by, strength, modified)


@dataclass(frozen=True)
class OrderedDose:
    """The dose an order asks for; ``problem`` says why a part could not be read."""

    dose_mg: float | None
    per_day: float | None
    problem: str | None = None

    @property
    def daily_mg(self) -> float | None:
        if self.dose_mg is None or self.per_day is None:
            return None
        return self.dose_mg * self.per_day

    def describe(self) -> str:
        if self.dose_mg is None:
            return say("dose not stated")
        dose = number(self.dose_mg)
        if self.per_day == 1:
            return say("{dose} mg once daily", dose=dose)
        if self.per_day == 2:
            return say("{dose} mg twice daily", dose=dose)
        if self.per_day == 3:
            return say("{dose} mg three times daily", dose=dose)
        if self.per_day == 4:
            return say("{dose} mg four times daily", dose=dose)
        if self.per_day:
            return say("{dose} mg {times} times daily", dose=dose, times=number(self.per_day))
        return say("{dose} mg frequency not stated", dose=dose)


def contained_medication(resource: dict) -> dict | None:
    """The contained Medication a ``medicationReference`` of the form "#id" points to."""
    reference = resource.get("medicationReference")
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(ref, str) and ref.startswith("#"):
        for item in as_list(resource.get("contained")):
            if isinstance(item, dict) and item.get("id") == ref[1:]:
                return item
    return None


_TOPICAL_ROUTE_TEXT = re.compile(r"topical|cutaneous|skin", re.I)


def route_hint(request: dict) -> str | None:
    for dosage in as_list(request.get("dosageInstruction")):
        route = (dosage or {}).get("route")
        if route is None:  # the usual case: no route stated
            continue
        for coding in codings(route):
            if str(coding.get("code")) in _TOPICAL_ROUTE_CODES:
                return "topical"
        text = " ".join([str((route or {}).get("text") or "")] + [str(c.get("display") or "") for c in codings(route)])
        if _TOPICAL_ROUTE_TEXT.search(text):
            return "topical"
    return None


def _per_day(dosage: dict) -> tuple[float | None, str | None]:
    timing = dosage.get("timing") or {}
    repeat = timing.get("repeat") or {}
    if repeat.get("frequency") is not None or repeat.get("period") is not None:
        frequency = repeat.get("frequencyMax") or repeat.get("frequency") or 1
        period = repeat.get("period") or 1
        unit = repeat.get("periodUnit") or "d"
        if (
            unit not in _PERIOD_DAYS
            or not isinstance(frequency, (int, float))
            or not isinstance(period, (int, float))
            or frequency <= 0
            or period <= 0
        ):
            return None, say("the dosing frequency could not be interpreted")
        return frequency / (period * _PERIOD_DAYS[unit]), None
    for coding in codings(timing.get("code")):
        code = str(coding.get("code") or "").upper()
        if code in _PER_DAY_BY_CODE:
            return float(_PER_DAY_BY_CODE[code]), None
    texts = [str(dosage.get("text") or ""), str((timing.get("code") or {}).get("text") or "")]
    for pattern, per_day in _TEXT_FREQUENCY:
        if any(pattern.search(t) for t in texts):
            return float(per_day), None
    return None, say("the order does not state how often the dose is taken")


def ordered_dose(request: dict, match: DrugMatch) -> OrderedDose:
    """Read dose and frequency from the first dosageInstruction."""
    dosages = [d for d in as_list(request.get("dosageInstruction")) if isinstance(d, dict)]
    if not dosages:
        return OrderedDose(None, None, say("the order has no dosage instruction"))
    dosage = dosages[0]
    per_day, freq_problem = _per_day(dosage)
    dose_mg, dose_problem = None, None
    rates = as_list(dosage.get("doseAndRate"))
    quantity = next((r.get("doseQuantity") for r in rates if isinstance(r, dict) and r.get("doseQuantity")), None)
    if quantity is None:
        match_text = _MG_IN_TEXT.search(str(dosage.get("text") or ""))
        if match_text:
            dose_mg = float(match_text.group(1).replace(",", "."))
        else:
            dose_problem = say("the order does not state a dose quantity")
    else:
        value = quantity.get("value")
        unit = str(quantity.get("code") or quantity.get("unit") or "").strip()
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            dose_problem = say("the dose quantity {value} is not a positive number", value=repr(value))
        elif unit.lower() == "mg":
            dose_mg = float(value)
        elif unit.lower() == "g":
            dose_mg = float(value) * 1000
        elif unit.lower() in _TABLET_UNITS:
            if match.strength_mg:
                dose_mg = float(value) * match.strength_mg
            else:
                dose_problem = say(
                    "the dose is {value} tablet(s) but the tablet strength is not stated", value=number(value)
                )
        else:
            dose_problem = say("the dose unit {unit} could not be interpreted", unit=repr(unit or "(none)"))
    problem = "; ".join(p for p in (dose_problem, freq_problem) if p) or None
    return OrderedDose(dose_mg, per_day, problem)
