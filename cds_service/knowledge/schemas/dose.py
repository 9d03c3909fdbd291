"""Dose family tables.

``[[dose]]``                  caps on the daily dose of one drug (indication maxima and adjustments for age,
                              weight, kidney and liver function, interacting drugs, start vs continuation), and
                              halvings of the dose that otherwise applies (decision 14)
``[[dose_halving]]``          per drug: the labelled halving steps (10 mg twice daily -> 5 mg twice daily ...) and
                              the doses that otherwise apply besides the caps (a lower-risk dose, a maintenance dose)
``[dose_phase.<phase>]``      words in an order that say it is an induction or a maintenance order
``[interacting_class.<id>]``  drug classes that change JAKi exposure (CYP3A4, CYP2C19, OAT3 inhibitors, CYP inducers)
``[child_pugh.<id>]``         how a Child-Pugh class is read from the record (exposed as ``facts.child_pugh``)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import (
    MedicationClass,
    Strict,
    common_checks,
    indication_checks,
    source_checks,
)
from cds_service.knowledge.textmatch import WordList

Phase = Literal["induction", "maintenance"]
ChildPughClass = Literal["A", "B", "C"]
RiskGroup = Literal["prac", "vte"]  # the groups of [[prac_factor]] (cds_service.rules.common)

_BANDS = (
    ("age_at_least", "age_below"),
    ("weight_at_least_kg", "weight_below_kg"),
    ("crcl_at_least", "crcl_below"),
    ("egfr_at_least", "egfr_below"),
)


class DoseWhen(Strict):
    """Every key given must hold (lower bounds inclusive, upper bounds exclusive)."""

    age_at_least: float | None = Field(default=None, ge=0, le=130)
    age_below: float | None = Field(default=None, gt=0, le=130)
    weight_at_least_kg: float | None = Field(default=None, ge=0, le=500)
    weight_below_kg: float | None = Field(default=None, gt=0, le=500)
    crcl_at_least: float | None = Field(default=None, ge=0, le=300)  # mL/min (measured, else Cockcroft-Gault)
    crcl_below: float | None = Field(default=None, gt=0, le=300)
    egfr_at_least: float | None = Field(default=None, ge=0, le=300)  # mL/min/1.73 m2 (reported, else CKD-EPI 2021)
    egfr_below: float | None = Field(default=None, gt=0, le=300)
    condition: str | None = None  # a concept id (cards/concepts*.toml) recorded as active, e.g. ESRD/dialysis
    child_pugh: list[ChildPughClass] = []  # the latest Child-Pugh class is one of these
    interacting: list[str] = []  # every listed interacting_class is among the active medications
    phase: Phase | None = None  # the order says it is an induction / maintenance order
    new_start: bool | None = None  # True: the patient has no active order/statement of this drug
    formulation: Literal["immediate_release", "modified_release"] | None = None

    @model_validator(mode="after")
    def _bands_in_order(self) -> DoseWhen:
        for low, high in _BANDS:
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"{low} ({lo:g}) must be below {high} ({hi:g})")
        if len(set(self.child_pugh)) != len(self.child_pugh):
            raise ValueError("child_pugh lists a class twice")
        return self

    def patient_keys(self) -> list[str]:
        """The patient-dependent keys that are set (maxima must not have any)."""
        keys = [k for pair in _BANDS for k in pair if getattr(self, k) is not None]
        keys += [k for k in ("condition", "new_start") if getattr(self, k) is not None]
        keys += [k for k in ("child_pugh", "interacting") if getattr(self, k)]
        return keys


class DoseRule(Strict):
    id: str
    drug: str
    # kind = "maximum": the licensed maximum for the listed indications (or, without indications, the drug's
    #   overall maximum); it is applied only when the order's indication is one of them.
    # kind = "adjustment": a lower dose for a patient situation; applied also when the indication is unknown.
    kind: Literal["maximum", "adjustment"] = "adjustment"
    # outcome = "cap": reduce to max_mg x per_day; "not_recommended": suggest stopping the draft;
    # "note": information only (shown when the order exceeds max_mg x per_day, or always without max_mg);
    # "halve": halve the dose that otherwise applies along the drug's [[dose_halving]] steps, once per
    #   halving_group (two reasons of one group, e.g. CrCl < 30 and dialysis, halve once).
    outcome: Literal["cap", "not_recommended", "note", "halve"] = "cap"
    halving_group: Literal["renal", "hepatic", "interaction"] | None = None
    indications: list[str] = []
    when: DoseWhen = DoseWhen()
    max_mg: float | None = Field(default=None, gt=0)
    per_day: int | None = Field(default=None, ge=1, le=4)
    reason: str
    detail: str
    evidence: str | None = None  # caveat on the quality of the source, shown on the card
    sources: list[str] = Field(min_length=1)

    @property
    def limit(self) -> tuple[float, int] | None:
        """(max_mg, per_day) of a rule that gives a limit (both or neither, checked below)."""
        if self.max_mg is None or self.per_day is None:
            return None
        return self.max_mg, self.per_day

    @model_validator(mode="after")
    def _consistent(self) -> DoseRule:
        if (self.max_mg is None) != (self.per_day is None):
            raise ValueError("give both max_mg and per_day, or neither")
        if self.outcome == "cap" and self.max_mg is None:
            raise ValueError("a cap needs max_mg and per_day")
        if self.outcome == "not_recommended" and self.max_mg is not None:
            raise ValueError("a not_recommended rule has no max_mg")
        if self.outcome == "halve":
            if self.max_mg is not None:
                raise ValueError("a halving has no max_mg: its limit follows from the dose that otherwise applies")
            if self.halving_group is None:
                raise ValueError("a halving needs a halving_group (renal, hepatic or interaction)")
            if self.kind != "adjustment" or self.when.phase is not None:
                raise ValueError("a halving is an adjustment for every phase (the phase decides the dose halved)")
        elif self.halving_group is not None:
            raise ValueError('halving_group is only for outcome = "halve"')
        if self.kind == "maximum":
            if self.outcome != "cap":
                raise ValueError("a maximum is a cap")
            if self.when.patient_keys():
                raise ValueError(
                    f"a maximum depends only on indication, phase and formulation, not on {self.when.patient_keys()}"
                )
        return self


class DoseStep(Strict):
    """One labelled halving step; ``to`` equal to ``from`` marks a dose that is not lowered further."""

    from_mg: float = Field(gt=0)
    from_per_day: int = Field(ge=1, le=4)
    to_mg: float = Field(gt=0)
    to_per_day: int = Field(ge=1, le=4)

    @model_validator(mode="after")
    def _not_higher(self) -> DoseStep:
        if self.to_mg * self.to_per_day > self.from_mg * self.from_per_day:
            raise ValueError(
                f"a halving step may not raise the daily dose ({self.from_mg:g} x {self.from_per_day} "
                f"-> {self.to_mg:g} x {self.to_per_day})"
            )
        return self


class OtherwiseDose(Strict):
    """A dose that otherwise applies besides the caps of [[dose]], when the order matches (indication, phase) and
    the patient has a risk factor of one of ``risk_groups`` (cds_service.rules.common.prac_risk_factors)."""

    mg: float = Field(gt=0)
    per_day: int = Field(ge=1, le=4)
    indications: list[str] = []
    phase: Phase | None = None
    risk_groups: list[RiskGroup] = []
    reason: str
    detail: str
    sources: list[str] = Field(min_length=1)


class DoseHalving(Strict):
    """Halving (decision 14): the dose that otherwise applies (the lowest cap of the order's indication, phase and
    patient, and the ``otherwise`` doses that match) is stepped down once per halving group."""

    id: str
    drug: str
    steps: list[DoseStep] = Field(min_length=1)
    otherwise: list[OtherwiseDose] = []
    detail: str  # shown on the card: what the label halves
    combination: str  # shown when two halving groups apply (the labels do not state the combination)
    floor: str = ""  # shown when a due halving meets a step to itself (nothing lower is labelled);
    # empty where the label keeps that dose (upadacitinib 15 mg)
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_step_per_dose(self) -> DoseHalving:
        seen = set()
        for step in self.steps:
            key = (step.from_mg, step.from_per_day)
            if key in seen:
                raise ValueError(f"two steps from {step.from_mg:g} mg x {step.from_per_day}")
            seen.add(key)
        return self

    def step_from(self, dose_mg: float, per_day: float) -> DoseStep | None:
        return next((s for s in self.steps if abs(s.from_mg - dose_mg) < 1e-9 and s.from_per_day == per_day), None)


class PhaseWords(Strict):
    words: WordList = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


class InteractingClass(MedicationClass):
    """Medicines that change a JAK inhibitor's dose: whole ATC or RxNorm codes, whole-word names, no local form.

    A text naming a local form (cream, shampoo ...) is not a member, even when coded."""

    names: WordList = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


class ChildPughReader(Strict):
    display: str
    loinc: list[str] = []  # Observation codes carrying a Child-Pugh class or score
    snomed_class: dict[ChildPughClass, list[str]] = {}  # Condition/Observation codes meaning class A/B/C
    class_a_max_score: int = Field(ge=5, le=15)
    class_b_max_score: int = Field(ge=5, le=15)
    max_age_days: int = Field(gt=0)
    sources: list[str] = Field(min_length=1)

    def codes_read(self) -> dict[str, list[str]]:
        return {"Observation": [*self.loinc, *(c for codes in self.snomed_class.values() for c in codes)]}

    @model_validator(mode="after")
    def _scores(self) -> ChildPughReader:
        if self.class_a_max_score >= self.class_b_max_score:
            raise ValueError("class_a_max_score must be below class_b_max_score")
        return self


def check(knowledge, rules: list[DoseRule]) -> list[str]:
    problems = []
    halved = {h.drug for h in knowledge.rules.dose_halving}
    # every indication a drug lists must be defined (an orphan key would make its orders "indication unknown")
    problems += [
        f"drug {name}: unknown indication {i!r} (no [indications.{i}])"
        for name, drug in knowledge.drugs.items()
        for i in drug.indications
        if i not in knowledge.indications
    ]
    for rule in rules:
        if rule.outcome == "halve" and rule.drug not in halved:
            problems.append(f"rule {rule.id}: no [[dose_halving]] entry for {rule.drug!r}")
        problems += common_checks(knowledge, rule, [rule.drug])
        problems += indication_checks(knowledge, rule)
        classes = knowledge.rules.interacting_class
        problems += [
            f"rule {rule.id}: unknown interacting_class {c!r}" for c in rule.when.interacting if c not in classes
        ]
        if rule.when.condition is not None and rule.when.condition not in knowledge.concepts:
            problems.append(f"rule {rule.id}: unknown concept {rule.when.condition!r}")
        if rule.when.phase is not None and rule.when.phase not in knowledge.rules.dose_phase:
            problems.append(f"rule {rule.id}: no [dose_phase.{rule.when.phase}] words to recognise the phase")
    return problems


def check_classes(knowledge, classes: dict[str, InteractingClass]) -> list[str]:
    problems = source_checks(knowledge, classes)
    for name, entry in classes.items():
        problems += [
            f"interacting_class {name}: RxNorm code {c!r} is not numeric" for c in entry.rxnorm if not c.isdigit()
        ]
    return problems


def check_halving(knowledge, entries: list[DoseHalving]) -> list[str]:
    problems = []
    drugs = [h.drug for h in entries]
    problems += [f"dose_halving: two entries for {d!r}" for d in sorted(set(drugs)) if drugs.count(d) > 1]
    for entry in entries:
        problems += common_checks(knowledge, entry, [entry.drug])
        for other in entry.otherwise:
            problems += [
                f"dose_halving {entry.id}: unknown source {s!r}" for s in other.sources if s not in knowledge.sources
            ]
            problems += [
                f"dose_halving {entry.id}: unknown indication {i!r}"
                for i in other.indications
                if i not in knowledge.indications
            ]
    return problems


def check_child_pugh(knowledge, readers: dict[str, ChildPughReader]) -> list[str]:
    problems = source_checks(knowledge, readers)
    if len(readers) > 1:
        problems.append(f"child_pugh: one reader expected, found {sorted(readers)}")
    return problems


register("dose", DoseRule, "list", check)
register("dose_halving", DoseHalving, "list", check_halving)
register("dose_phase", PhaseWords, "map", source_checks)
register("interacting_class", InteractingClass, "map", check_classes)
register("child_pugh", ChildPughReader, "map", check_child_pugh)
