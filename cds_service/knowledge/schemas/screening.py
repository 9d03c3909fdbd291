"""Baseline screening before a first JAK inhibitor (decision 9).

``[[screening_card]]``: the one checklist card per order (id, indicator, texts, sources).
``[[screening_item]]``: one checklist line (e.g. "hepatitis B and C serology"), made of
parts that must each be on record and current. A part is satisfied either by a numeric
lab analyte (``analytes``, any of them; read with units from the analyte tables) or by a
coded record of any kind (``codes``: Observation, DiagnosticReport, Procedure,
Immunization, ImagingStudy with that code; presence and date only). A part that also names
``tests`` (``[qualitative_test.*]``: TB screening, viral serology, pregnancy tests) is read by
its RESULT (decision 15): a current result in an ``accept`` category (e.g. negative) or a
positive one that the result rules still read satisfies it; a record of its ``codes`` without
a readable result (a skin test recorded only as a Procedure, a report with text only) never
does, and a result that cannot be read is a stated gap. ``RecordPart`` is shared with the
monitoring schedule.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, common_checks


class CodeRef(Strict):
    system: Literal["loinc", "snomed", "cvx"]
    code: str = Field(min_length=1)
    display: str
    from_analyte: bool = False  # set by the rules (display is the analyte's local name), not in data


SYSTEM_URI = {"loinc": "http://loinc.org", "snomed": "http://snomed.info/sct", "cvx": "http://hl7.org/fhir/sid/cvx"}


class RecordPart(Strict):
    display: str
    analytes: list[str] = []  # numeric labs: any one of these analytes
    codes: list[CodeRef] = []  # coded records: any one of these codes
    order: CodeRef | None = None  # ServiceRequest code when the part can be ordered (default: the analyte's LOINC)
    orderable: bool = True
    tests: list[str] = []  # read by result: qualitative_test ids (their LOINC codes are among `codes`)
    accept: list[str] = ["negative"]  # result categories that satisfy the part while current (positives: see above)

    @model_validator(mode="after")
    def _one_kind(self) -> RecordPart:
        if bool(self.analytes) == bool(self.codes):
            raise ValueError("give exactly one of 'analytes' or 'codes'")
        if self.tests and not self.codes:
            raise ValueError("a part read by result lists its codes (the tests' LOINC codes and any record codes)")
        if self.order is not None and self.order.system != "loinc":
            raise ValueError("orders are coded in LOINC")
        return self

    def record_keys(self) -> list[str]:
        return [f"{c.system}|{c.code}" for c in self.codes]


def check_parts(knowledge, owner: str, parts: list[RecordPart]) -> list[str]:
    problems = [f"{owner}: unknown analyte {a!r}" for p in parts for a in p.analytes if a not in knowledge.analytes]
    tests = getattr(knowledge.rules, "qualitative_test", {})
    answer_sets = getattr(knowledge.rules, "answer_set", {})
    for part in parts:
        loinc = {c.code for c in part.codes if c.system == "loinc"}
        for name in part.tests:
            test = tests.get(name)
            if test is None:
                problems.append(f"{owner}: unknown qualitative_test {name!r}")
                continue
            problems += [
                f"{owner}: {part.display}: LOINC {c} of test {name} is not among its codes"
                for c in test.loinc
                if c not in loinc
            ]
            categories = getattr(answer_sets.get(test.answers), "categories", {})
            problems += [
                f"{owner}: {part.display}: category {c!r} is not an answer of test {name}"
                for c in part.accept
                if c not in categories
            ]
    return problems


class ScreeningCard(Strict):
    id: str
    drugs: list[str] = Field(min_length=1)
    indicator: Literal["info", "warning", "critical"]
    summary: str  # {drug} {n}
    intro: str
    suggestion_label: str
    override_set: str
    sources: list[str] = Field(min_length=1)


class ScreeningItem(Strict):
    id: str
    display: str
    parts: list[RecordPart] = Field(min_length=1)
    max_age_days: int = Field(gt=0)  # how old a result may be and still count as current
    sex: Literal["female", "male"] | None = None
    age_from: int | None = Field(default=None, ge=0)
    age_to: int | None = Field(default=None, ge=0)
    action: str
    sources: list[str] = Field(min_length=1)

    def record_keys(self) -> list[str]:
        return [k for p in self.parts for k in p.record_keys()]


def check_cards(knowledge, cards: list[ScreeningCard]) -> list[str]:
    problems: list[str] = []
    for card in cards:
        problems += common_checks(knowledge, card, card.drugs)
        if card.override_set not in knowledge.overrides.sets:
            problems.append(f"rule {card.id}: unknown override set {card.override_set!r}")
    return problems


def check_items(knowledge, items: list[ScreeningItem]) -> list[str]:
    problems: list[str] = []
    for item in items:
        problems += common_checks(knowledge, item, [])
        problems += check_parts(knowledge, f"rule {item.id}", item.parts)
    return problems


register("screening_card", ScreeningCard, "list", check_cards)
register("screening_item", ScreeningItem, "list", check_items)
