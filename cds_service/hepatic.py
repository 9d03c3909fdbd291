"""Child-Pugh class from the record, exposed to every rule as ``facts.child_pugh``.

Read from Observations whose LOINC code is listed in ``[child_pugh.*]`` (a class "A"/"B"/"C" as string or
coded value, or a numeric score converted with the configured score bands) and from Conditions or
Observations coded with a SNOMED CT concept listed there for class A, B or C. The newest dated finding within
``max_age_days`` wins. ``None`` means no Child-Pugh class is recorded (never "normal liver function").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from cds_service.facts import codings, parse_date

_CLASS_IN_TEXT = re.compile(r"(?:^|\b(?:class|klasse|grade|child[- ]?pugh)\s*)([ABC])\b", re.I)


@dataclass(frozen=True)
class ChildPugh:
    klass: str                  # "A" | "B" | "C"
    score: int | None
    when: date | None
    how: str                    # "Child-Pugh panel (LOINC 98153-0) 'B' on 2026-10-01"

    def describe(self) -> str:
        return self.how


def _class_from_text(text: str) -> str | None:
    text = text.strip()
    if text.upper() in ("A", "B", "C"):
        return text.upper()
    found = _CLASS_IN_TEXT.search(text)
    return found.group(1).upper() if found else None


def _class_from_score(score: float, reader) -> str | None:
    if score < 5 or score > 15:
        return None
    if score <= reader.class_a_max_score:
        return "A"
    return "B" if score <= reader.class_b_max_score else "C"


def _observation_class(obs: dict, reader) -> tuple[str | None, int | None]:
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
        for text in [concept.get("text")] + [c.get("display") for c in codings(concept)] + \
                    [c.get("code") for c in codings(concept)]:
            if isinstance(text, str) and _class_from_text(text):
                return _class_from_text(text), None
    return None, None


def read_child_pugh(knowledge, prefetched, today: date) -> ChildPugh | None:
    readers = getattr(knowledge.rules, "child_pugh", {})
    if not readers:
        return None
    reader = next(iter(readers.values()))
    by_snomed = {code: klass for klass, codes in reader.snomed_class.items() for code in codes}
    found: list[ChildPugh] = []
    for obs in prefetched.with_codes("Observation", {*reader.loinc, *by_snomed}):
        if obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        for coding in codings(obs.get("code")):
            code = str(coding.get("code") or "")
            when = parse_date(obs.get("effectiveDateTime")) or parse_date(obs.get("issued"))
            if code in reader.loinc:
                klass, score = _observation_class(obs, reader)
                if klass:
                    score_text = f" (score {score})" if score is not None else ""
                    found.append(ChildPugh(klass, score, when, f"Child-Pugh class {klass}{score_text}, "
                                           f"Observation LOINC {code}" + (f" on {when.isoformat()}" if when else "")))
                break
            if code in by_snomed:
                found.append(ChildPugh(by_snomed[code], None, when, f"Child-Pugh class {by_snomed[code]} "
                                       f"(SNOMED CT {code})" + (f" on {when.isoformat()}" if when else "")))
                break
    for condition in prefetched.resources("Condition"):
        status = [c.get("code") for c in codings(condition.get("clinicalStatus"))]
        if status and not set(status) & {"active", "recurrence", "relapse"}:
            continue
        for coding in codings(condition.get("code")):
            code = str(coding.get("code") or "")
            if code in by_snomed:
                when = parse_date(condition.get("recordedDate")) or parse_date(condition.get("onsetDateTime"))
                found.append(ChildPugh(by_snomed[code], None, when, f"Child-Pugh class {by_snomed[code]} "
                                       f"(condition, SNOMED CT {code})" + (f" since {when.isoformat()}" if when else "")))
    current = [f for f in found if f.when is None or (today - f.when).days <= reader.max_age_days]
    if not current:
        return None
    current.sort(key=lambda f: f.when or date.min, reverse=True)
    return current[0]
