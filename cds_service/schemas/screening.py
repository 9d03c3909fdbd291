"""Baseline screening before a first JAK inhibitor (decision 9).

``[[screening_card]]``: the one checklist card per order (id, indicator, texts, sources).
``[[screening_item]]``: one checklist line (e.g. "hepatitis B and C serology"), made of
parts that must each be on record and current. A part is satisfied either by a numeric
lab analyte (``analytes``, any of them; read with units from the analyte tables) or by a
coded record of any kind (``codes``: Observation, DiagnosticReport, Procedure,
Immunization, ImagingStudy with that code; presence and date only). ``RecordPart`` is
shared with the monitoring schedule.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.schemas import register
from cds_service.schemas.base import Strict, common_checks


class CodeRef(Strict):
    system: Literal["loinc", "snomed", "cvx"]
    code: str = Field(min_length=1)
    display: str
    from_analyte: bool = False        # set by the rules (display is the analyte's local name), not in data


SYSTEM_URI = {"loinc": "http://loinc.org", "snomed": "http://snomed.info/sct", "cvx": "http://hl7.org/fhir/sid/cvx"}


class RecordPart(Strict):
    display: str
    analytes: list[str] = []          # numeric labs: any one of these analytes
    codes: list[CodeRef] = []         # coded records: any one of these codes
    order: CodeRef | None = None      # ServiceRequest code when the part can be ordered (default: the analyte's LOINC)
    orderable: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> "RecordPart":
        if bool(self.analytes) == bool(self.codes):
            raise ValueError("give exactly one of 'analytes' or 'codes'")
        if self.order is not None and self.order.system != "loinc":
            raise ValueError("orders are coded in LOINC")
        return self

    def record_keys(self) -> list[str]:
        return [f"{c.system}|{c.code}" for c in self.codes]


def check_parts(knowledge, owner: str, parts: list[RecordPart]) -> list[str]:
    return [f"{owner}: unknown analyte {a!r}" for p in parts for a in p.analytes if a not in knowledge.analytes]


class ScreeningCard(Strict):
    id: str
    drugs: list[str] = Field(min_length=1)
    indicator: Literal["info", "warning", "critical"]
    summary: str                      # {drug} {n}
    intro: str
    suggestion_label: str
    override_set: str
    sources: list[str] = Field(min_length=1)


class ScreeningItem(Strict):
    id: str
    display: str
    parts: list[RecordPart] = Field(min_length=1)
    max_age_days: int = Field(gt=0)   # how old a result may be and still count as current
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
