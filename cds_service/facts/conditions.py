"""Conditions: each Condition of the record reduced to the concepts and indication it names.

A coding (SNOMED CT, ICD-10 and its parents) names concepts and an indication; "history of" codes make it
history; a Condition with no recognised coding is read by name as the last resort (decision 16). Entered in
error or refuted: left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from cds_service.fhir.values import codings, parse_date
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.textmatch import WORD_START, any_word
from cds_service.record.index import PatientRecord

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class ConditionFact:
    concepts: tuple[str, ...]
    indication: str | None
    active: bool
    onset: date | None
    display: str
    abatement: date | None = None
    by_name: bool = False  # no coding was recognised: the concepts were read from its text (decision 16)
    resource_id: str | None = None  # the Condition's id (an order's reasonReference names it)

    @property
    def how(self) -> str:
        """What the card adds after the dates: "; recognised by name" for a concept read from the text."""
        return say("; recognised by name") if self.by_name else ""


def read_conditions(knowledge: Knowledge, record: PatientRecord) -> list[ConditionFact]:
    """Every Condition of the record that names a concept or an indication, in the record's order."""
    found = []
    for condition in record.resources("Condition"):
        fact = condition_fact(knowledge, condition)
        if fact is not None:
            found.append(fact)
    return found


def condition_fact(knowledge: Knowledge, condition: dict[str, Any]) -> ConditionFact | None:
    """One Condition, recognised (None if entered in error, refuted, or naming nothing the knowledge knows)."""
    status = condition.get("verificationStatus")
    if any(c.get("code") in ("entered-in-error", "refuted") for c in codings(status)):
        return None
    concepts: list[str] = []
    history: list[str] = []  # recognised through a "history of" code only (e.g. ICD-10 Z85)
    left_out: list[str] = []  # concepts a coding rules out (icd10_not: C44 is not malignancy, by name neither)
    indication = None
    code = condition.get("code")
    for coding in codings(code):
        value = str(coding.get("code") or "").strip()
        system = str(coding.get("system") or "").lower()
        if "snomed" in system:
            kind, found = "snomed", knowledge.snomed_to_concepts.get(value, [])
        elif is_icd10(system):
            kind, found = "icd10", icd10_lookup(knowledge.icd10_to_concepts, value)
            if knowledge.icd10_not_to_concepts:
                left_out += icd10_lookup(knowledge.icd10_not_to_concepts, value)
                found = [c for c in found if c not in left_out]
        else:
            kind, found = "", []
        for name in found:
            (history if _history_code(knowledge, kind, name, value) else concepts).append(name)
        indication = indication or coded_indication(knowledge, coding)
    history_only = bool(history) and not concepts
    concepts += history
    by_name = False
    if not concepts and indication is None:
        concepts, history_only = _concepts_by_name(knowledge, _condition_texts(code))
        concepts = [c for c in concepts if c not in left_out]
        by_name = bool(concepts)
    if not concepts and indication is None:
        return None
    clinical = [c.get("code") for c in codings(condition.get("clinicalStatus"))]
    if clinical:
        active = any(c in _ACTIVE_CLINICAL for c in clinical)
    else:
        active = not (
            condition.get("abatementDateTime")
            or condition.get("abatementPeriod")
            or condition.get("abatementString")
            or condition.get("abatementAge")
        )
    if history_only:
        active = False  # "history of ...": history, whatever the clinical status says
    onset = parse_date(condition.get("onsetDateTime")) or parse_date(condition.get("recordedDate"))
    display = (code or {}).get("text") or next(
        (c.get("display") for c in codings(code) if c.get("display")), "condition"
    )
    abatement = parse_date(condition.get("abatementDateTime")) or parse_date(
        (condition.get("abatementPeriod") or {}).get("end")
        if isinstance(condition.get("abatementPeriod"), dict)
        else None
    )
    resource_id = condition.get("id")
    return ConditionFact(
        tuple(dict.fromkeys(concepts)),
        indication,
        active,
        onset,
        str(display),
        abatement,
        by_name,
        resource_id if isinstance(resource_id, str) else None,
    )


def _history_code(knowledge: Knowledge, kind: str, concept: str, value: str) -> bool:
    """Is this code one of the concept's "history of" codes (history_snomed / history_icd10)?"""
    history = knowledge.history_concept_codes
    if not history or not kind:
        return False
    if kind == "snomed":
        return ("snomed", concept, value) in history
    plain = value.upper().replace(".", "")
    return any(
        ("icd10", concept, candidate) in history
        for n in range(len(plain), 2, -1)
        for candidate in (plain[:n], plain[:3] + "." + plain[3:n] if n > 3 else plain[:3])
    )


def _condition_texts(code: object) -> list[str]:
    """The words a Condition is written with: its text and every coding's display, lower-cased."""
    texts = []
    if isinstance(code, dict) and isinstance(code.get("text"), str):
        texts.append(code["text"].lower())
    for coding in codings(code):
        display = coding.get("display")
        if isinstance(display, str) and display.lower() not in texts:
            texts.append(display.lower())
    return texts


def _concepts_by_name(knowledge: Knowledge, texts: list[str]) -> tuple[list[str], bool]:
    """(concepts named in these texts, whether the texts say it is history), the last resort of decision 16.

    A concept is named by a whole word or phrase of its ``names``; the texts must hold none of its
    ``exclude_words`` and none of the shared ``[condition_text.*]`` exclusions (family history, suspected,
    screening, risk of, ruled out ...). The shared ``history_words`` ("history of", "previous") make it history."""
    if not texts or not knowledge.concept_name_words:
        return [], False
    if not any(any_word(text, knowledge.concept_name_words) for text in texts):
        return [], False
    shared = getattr(knowledge.rules, "condition_text", {}) or {}
    for words in shared.values():
        if any(any_word(text, words.exclude_words, *WORD_START) for text in texts):
            return [], False
    found = [
        name
        for name, names, exclude in knowledge.concept_names
        if any(any_word(text, names) for text in texts)
        and not any(any_word(text, exclude, *WORD_START) for text in texts)
    ]
    history = bool(found) and any(
        any_word(text, words.history_words, *WORD_START) for words in shared.values() for text in texts
    )
    return found, history


def is_icd10(system: str) -> bool:
    system = system.lower()
    return "icd-10" in system or "icd10" in system


def coded_indication(knowledge: Knowledge, coding: dict[str, Any]) -> str | None:
    """The indication id (cards/indications*.toml) one SNOMED CT or ICD-10 coding names, if any."""
    value, system = str(coding.get("code") or "").strip(), str(coding.get("system") or "").lower()
    if "snomed" in system:
        return knowledge.snomed_to_indication.get(value)
    if is_icd10(system):
        found = icd10_lookup(knowledge.icd10_to_indication, value)
        return found[0] if found else None
    return None


def icd10_lookup(index: dict[str, _T] | dict[str, list[_T]], code: str) -> list[_T]:
    """ICD-10 codes match themselves or any parent: A15.0 and A150 both match A15."""
    plain = code.upper().strip().replace(".", "")
    found: list[_T] = []
    for n in range(len(plain), 2, -1):
        for candidate in {plain[:n], plain[:3] + "." + plain[3:n] if n > 3 else plain[:3]}:
            hit = index.get(candidate)
            if hit:
                found.extend(h for h in (hit if isinstance(hit, list) else [hit]) if h not in found)
    return found
