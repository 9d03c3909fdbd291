"""PRAC 2022 risk-group tables (decision 7).

``[prac.<id>]``          the card: which drugs, its wording, what could not be checked (one entry)
``[[prac_factor]]``      one risk factor and how it is read from the record; ``group`` says which advice it
                         triggers: "prac" (use only if no suitable alternative) or "vte" (use with caution,
                         inform the patient about clot symptoms)
``[[prac_lower_dose]]``  the lower dose to suggest at increased risk, per drug (and indication / phase)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, common_checks, indication_checks


class PracCard(Strict):
    id: str  # rule id on the card
    drugs: list[str] = Field(min_length=1)
    prac_summary: str  # "{drug}", "{factors}"
    vte_summary: str  # when only VTE factors are found
    prac_action: str
    vte_action: str
    not_checked: list[str] = []  # factors this service cannot read (said on the card)
    sources: list[str] = Field(min_length=1)


class PracFactor(Strict):
    id: str
    group: Literal["prac", "vte"]
    display: str
    # exactly one way of reading it
    age_at_least: int | None = Field(default=None, ge=0, le=130)
    smoking: list[str] = []  # categories of qualitative_test `smoking_test` that count
    smoking_test: str | None = None
    concepts: list[str] = []
    history_within_days: int | None = Field(default=None, gt=0)  # non-active Conditions count only this recent
    bmi_at_least: float | None = Field(default=None, gt=0)
    medication_classes: list[str] = []
    # a Procedure coded with one of these SNOMED CT codes, performed within ``procedure_within_days`` (major surgery)
    procedure_snomed: list[str] = []
    procedure_within_days: int | None = Field(default=None, gt=0)
    note: str | None = None  # where sources disagree (shown when the factor is found)
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_reader(self) -> PracFactor:
        # a BMI factor may also name concepts: a recorded problem (obesity) when no BMI of the last year says it
        readers = [
            self.age_at_least is not None,
            bool(self.smoking),
            bool(self.concepts) and self.bmi_at_least is None,
            self.bmi_at_least is not None,
            bool(self.medication_classes),
            bool(self.procedure_snomed),
        ]
        if sum(readers) != 1:
            raise ValueError(
                "give exactly one of age_at_least, smoking, concepts, bmi_at_least, medication_classes, "
                "procedure_snomed"
            )
        if self.smoking and not self.smoking_test:
            raise ValueError("smoking needs smoking_test")
        if bool(self.procedure_snomed) != (self.procedure_within_days is not None):
            raise ValueError("procedure_snomed and procedure_within_days go together")
        for code in self.procedure_snomed:
            if not code.isdigit() or not 6 <= len(code) <= 18:
                raise ValueError(f"{code!r} is not a SNOMED CT concept id")
        return self

    RECORD_TYPES: ClassVar[tuple[str, ...]] = ("Procedure",)  # what the prefetch asks for them in

    def record_keys(self) -> list[str]:
        """The Procedure codes read (cds_service/facts/coded_records.py; the prefetch asks for them, decision 16)."""
        return [f"snomed|{code}" for code in self.procedure_snomed]


class PracLowerDose(Strict):
    id: str
    drug: str
    indications: list[str] = []  # empty: every indication; an unknown indication also matches
    phase: Literal["induction", "maintenance"] | None = None  # the order must say so ([dose_phase.*] words)
    dose_mg: float = Field(gt=0)
    per_day: int = Field(ge=1, le=4)
    detail: str
    sources: list[str] = Field(min_length=1)


def check_card(knowledge, cards: dict[str, PracCard]) -> list[str]:
    problems = []
    if len(cards) > 1:
        problems.append(f"prac: one card expected, found {sorted(cards)}")
    for card in cards.values():
        problems += common_checks(knowledge, card, card.drugs)
    return problems


def check_factors(knowledge, factors: list[PracFactor]) -> list[str]:
    problems = []
    tests = knowledge.rules.qualitative_test
    classes = knowledge.rules.drug_class
    for factor in factors:
        problems += common_checks(knowledge, factor, [])
        problems += [f"rule {factor.id}: unknown concept {c!r}" for c in factor.concepts if c not in knowledge.concepts]
        problems += [
            f"rule {factor.id}: unknown drug_class {c!r}" for c in factor.medication_classes if c not in classes
        ]
        if factor.smoking_test:
            test = tests.get(factor.smoking_test)
            if test is None:
                problems.append(f"rule {factor.id}: unknown qualitative_test {factor.smoking_test!r}")
            else:
                categories = knowledge.rules.answer_set[test.answers].categories
                problems += [
                    f"rule {factor.id}: {c!r} is not a category of {test.answers}"
                    for c in factor.smoking
                    if c not in categories
                ]
        if factor.bmi_at_least is not None and "bmi" not in knowledge.analytes:
            problems.append(f"rule {factor.id}: no [analytes.bmi]")
    return problems


def check_doses(knowledge, doses: list[PracLowerDose]) -> list[str]:
    problems = []
    for dose in doses:
        problems += common_checks(knowledge, dose, [dose.drug])
        problems += indication_checks(knowledge, dose)
    return problems


register("prac", PracCard, "map", check_card)
register("prac_factor", PracFactor, "list", check_factors)
register("prac_lower_dose", PracLowerDose, "list", check_doses)
