"""Child-Pugh class from the record, exposed to every rule as ``facts.child_pugh``.

Read from Observations whose LOINC code is listed in ``[child_pugh.*]`` (a class "A"/"B"/"C" as string or
coded value, or a numeric score converted with the configured score bands), from Conditions or Observations
coded with a SNOMED CT concept listed there for class A, B or C, and from the ``stage`` of an active Condition
(decision 16): a summary or type that names Child-Pugh ("Child-Pugh B", "Child Pugh class C", "Child-Turcotte-Pugh
B7", "CTP score 11") on any Condition, and a bare class ("B", "class B") or "CP-B" on a Condition of one of the
liver concepts of ``[child_pugh_stage.*]`` (cirrhosis, hepatic failure). The newest dated finding wins; a result
counts within ``max_age_days``, an active Condition's stage counts whatever its age (the EHR keeps it current; it
is dated by the Condition's recorded or onset date). ``None`` means no Child-Pugh class is recorded (never
"normal liver function").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.facts.conditions import icd10_lookup, is_icd10
from cds_service.fhir.values import VOID_STATUS, codings, parse_date
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.schemas.dose import ChildPughReader
from cds_service.record.index import PatientRecord

_CLASS_IN_TEXT = re.compile(r"(?:^|\b(?:class|klasse|grade|child[- ]?pugh)\s*)([ABC])\b", re.I)
# Condition.stage: the scale named ("Child-Pugh", "Child Turcotte Pugh", "CTP"), then a class (maybe with its score,
# "B7") or a score; "CP" only on a liver Condition (elsewhere it could mean cerebral palsy)
_NAMED = r"(?:child[-\s]*(?:turcotte[-\s]*)?pugh|\bctp)"
_STAGE_CLASS = re.compile(_NAMED + r"[-\s:]*(?:class|grade|stage|klasse)?[-\s:]*([ABC])(?=\d{1,2}\b|\b)", re.I)
_STAGE_SCORE = re.compile(_NAMED + r"[-\s:]*(?:score|points?)?[-\s:=]*(\d{1,2})\b", re.I)
_CP_CLASS = re.compile(r"\bcp[-\s:]*(?:class[-\s:]*)?([ABC])(?=\d{1,2}\b|\b)", re.I)
_BARE_CLASS = re.compile(r"^\s*(?:class|grade|stage)?[-\s:]*([ABC])\d{0,2}\s*$", re.I)


@dataclass(frozen=True)
class ChildPugh:
    klass: str  # "A" | "B" | "C"
    score: int | None
    when: date | None
    how: str  # "Child-Pugh panel (LOINC 98153-0) 'B' on 2026-10-01"

    def describe(self) -> str:
        return self.how


def _class_from_text(text: str) -> str | None:
    text = text.strip()
    if text.upper() in ("A", "B", "C"):
        return text.upper()
    found = _CLASS_IN_TEXT.search(text)
    return found.group(1).upper() if found else None


def _class_from_score(score: float, reader: ChildPughReader) -> str | None:
    if score < 5 or score > 15:
        return None
    if score <= reader.class_a_max_score:
        return "A"
    return "B" if score <= reader.class_b_max_score else "C"


def _observation_class(obs: dict[str, Any], reader: ChildPughReader) -> tuple[str | None, int | None]:
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), (int, float)):
        return _class_from_score(float(quantity["value"]), reader), int(quantity["value"])
    if isinstance(obs.get("valueInteger"), int) and not isinstance(obs.get("valueInteger"), bool):
        return _class_from_score(obs["valueInteger"], reader), obs["valueInteger"]
    if isinstance(obs.get("valueString"), str):
        return _class_from_text(obs["valueString"]), None
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        for coding in codings(concept):
            for klass, codes in reader.snomed_class.items():
                if str(coding.get("code")) in codes:
                    return klass, None
        for text in (
            [concept.get("text")]
            + [c.get("display") for c in codings(concept)]
            + [c.get("code") for c in codings(concept)]
        ):
            if isinstance(text, str) and _class_from_text(text):
                return _class_from_text(text), None
    return None, None


def _stage_texts(stage: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(texts of Condition.stage.summary, texts of its type): text, displays and codes."""

    def texts(concept: object) -> list[str]:
        if not isinstance(concept, dict):
            return []
        found = [concept.get("text")] + [c.get(k) for c in codings(concept) for k in ("display", "code")]
        return [t for t in found if isinstance(t, str) and t.strip()]

    return texts(stage.get("summary")), texts(stage.get("type"))


def _stage_class(stage: dict[str, Any], liver: bool, reader: ChildPughReader) -> tuple[str | None, int | None]:
    """The Child-Pugh class (and score) a Condition.stage states, if it states one."""
    summary, kind = _stage_texts(stage)
    named_type = any(re.search(_NAMED, t, re.I) for t in kind)
    for text in summary + kind:
        found = _STAGE_CLASS.search(text)
        if found:
            return found.group(1).upper(), None
        score = _STAGE_SCORE.search(text)
        if score and _class_from_score(int(score.group(1)), reader):
            return _class_from_score(int(score.group(1)), reader), int(score.group(1))
    for text in summary:
        found = (_BARE_CLASS.match(text) if named_type or liver else None) or (
            _CP_CLASS.search(text) if liver else None
        )
        if found:
            return found.group(1).upper(), None
        if named_type and text.strip().isdigit() and _class_from_score(int(text), reader):
            return _class_from_score(int(text), reader), int(text)
    return None, None


def _is_liver_condition(knowledge: Knowledge, condition: dict[str, Any], liver_concepts: set[str]) -> bool:
    """Is the Condition coded (SNOMED CT or ICD-10) as one of the liver concepts (cirrhosis, hepatic failure)?"""
    for coding in codings(condition.get("code")):
        value, system = str(coding.get("code") or "").strip(), str(coding.get("system") or "").lower()
        if "snomed" in system:
            found = knowledge.snomed_to_concepts.get(value, [])
        elif is_icd10(system):
            found = icd10_lookup(knowledge.icd10_to_concepts, value)
        else:
            found = []
        if liver_concepts.intersection(found):
            return True
    return False


def _stage_findings(knowledge: Knowledge, record: PatientRecord, reader: ChildPughReader) -> list[ChildPugh]:
    """Child-Pugh classes stated in the stage of active Conditions."""
    staging = getattr(knowledge.rules, "child_pugh_stage", {}) or {}
    liver_concepts = {c for entry in staging.values() for c in entry.concepts}
    found = []
    for condition in record.resources("Condition"):
        stages = condition.get("stage")
        if not stages:
            continue
        if isinstance(stages, dict):
            stages = [stages]
        status = [c.get("code") for c in codings(condition.get("clinicalStatus"))]
        if status and not set(status) & {"active", "recurrence", "relapse"}:
            continue
        if any(c.get("code") in ("entered-in-error", "refuted") for c in codings(condition.get("verificationStatus"))):
            continue
        liver = _is_liver_condition(knowledge, condition, liver_concepts)
        for stage in stages if isinstance(stages, list) else ():
            if not isinstance(stage, dict):
                continue
            klass, score = _stage_class(stage, liver, reader)
            if klass is None:
                continue
            when = parse_date(condition.get("recordedDate")) or parse_date(condition.get("onsetDateTime"))
            code = condition.get("code")
            if not isinstance(code, dict):
                code = {}
            name = code.get("text") or next(
                (c.get("display") for c in codings(code) if c.get("display")), say("condition")
            )
            score_text = say(", score {score}", score=str(score)) if score is not None else ""
            found.append(
                ChildPugh(
                    klass,
                    score,
                    when,
                    say(
                        "Child-Pugh class {klass}{score} (stage of the active condition '{condition}', recorded {date})",
                        klass=klass,
                        score=score_text,
                        condition=name,
                        date=when,
                    )
                    if when
                    else say(
                        "Child-Pugh class {klass}{score} (stage of the active condition '{condition}')",
                        klass=klass,
                        score=score_text,
                        condition=name,
                    ),
                )
            )
            break
    return found


def read_child_pugh(knowledge: Knowledge, record: PatientRecord, today: date) -> ChildPugh | None:
    """The newest current Child-Pugh class on record, or None (not recorded: never "normal")."""
    readers = getattr(knowledge.rules, "child_pugh", {})
    if not readers:
        return None
    reader = next(iter(readers.values()))
    by_snomed = {code: klass for klass, codes in reader.snomed_class.items() for code in codes}
    found: list[ChildPugh] = []
    for obs in record.with_codes("Observation", {*reader.loinc, *by_snomed}):
        if obs.get("status") in VOID_STATUS:
            continue
        for coding in codings(obs.get("code")):
            code = str(coding.get("code") or "")
            when = parse_date(obs.get("effectiveDateTime")) or parse_date(obs.get("issued"))
            if code in reader.loinc:
                klass, score = _observation_class(obs, reader)
                if klass:
                    score_text = say(" (score {score})", score=str(score)) if score is not None else ""
                    found.append(
                        ChildPugh(
                            klass,
                            score,
                            when,
                            say(
                                "Child-Pugh class {klass}{score}, Observation LOINC {code}",
                                klass=klass,
                                score=score_text,
                                code=code,
                            )
                            + (say(" on {date}", date=when) if when else ""),
                        )
                    )
                break
            if code in by_snomed:
                found.append(
                    ChildPugh(
                        by_snomed[code],
                        None,
                        when,
                        say("Child-Pugh class {klass} (SNOMED CT {code})", klass=by_snomed[code], code=code)
                        + (say(" on {date}", date=when) if when else ""),
                    )
                )
                break
    for condition in record.resources("Condition"):
        status = [c.get("code") for c in codings(condition.get("clinicalStatus"))]
        if status and not set(status) & {"active", "recurrence", "relapse"}:
            continue
        for coding in codings(condition.get("code")):
            code = str(coding.get("code") or "")
            if code in by_snomed:
                when = parse_date(condition.get("recordedDate")) or parse_date(condition.get("onsetDateTime"))
                found.append(
                    ChildPugh(
                        by_snomed[code],
                        None,
                        when,
                        say("Child-Pugh class {klass} (condition, SNOMED CT {code})", klass=by_snomed[code], code=code)
                        + (say(" since {date}", date=when) if when else ""),
                    )
                )
    current = [f for f in found if f.when is None or (today - f.when).days <= reader.max_age_days]
    current += _stage_findings(knowledge, record, reader)  # an active Condition's stage: current
    if not current:
        return None
    current.sort(key=lambda f: f.when or date.min, reverse=True)
    return current[0]
