"""Contraindication family tables (decisions 5 and 6).

``[[contraindication]]``          a reason not to start (critical) or a "not recommended" combination/history
                                  (warning); any one piece of evidence on the record triggers it, and one card
                                  per order gathers every piece found. Rules sharing a ``concern`` give one card
                                  (the most severe), e.g. hepatic failure (critical) over cirrhosis (warning).
``[qualitative_test.<id>]``       coded lab/observation results (positive/negative, yes/no, smoking status) by
                                  LOINC code, read into ``facts.coded_results`` (cds_service/facts/safety.py)
``[answer_set.<id>]``             what a coded answer means: category -> answer codes, interpretation codes, words
``[drug_class.<id>]``             medication classes matched among ACTIVE medications by ATC prefix or name
``[live_vaccine.<id>]``           live attenuated vaccines by CVX code, ATC code/prefix or name
``[condition_text.<id>]``         words that keep a Condition's text from naming a concept (family history ...)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import (
    AtcCodes,
    MedicationClass,
    Strict,
    common_checks,
    source_checks,
)
from cds_service.knowledge.schemas.results import CATEGORIES, QuantityReading
from cds_service.knowledge.textmatch import LETTERS, WordList


class Contraindication(Strict):
    id: str
    concern: str | None = None  # rules with the same concern give one card per order (most severe)
    drugs: list[str] = Field(min_length=1)
    indicator: Literal["warning", "critical"]
    summary: str  # "{drug}" is replaced by the drug name
    action: str
    note: str | None = None  # where sources disagree (shown on the card)
    sources: list[str] = Field(min_length=1)
    override_set: str = "contraindication"
    # evidence: any one is enough
    concepts: list[str] = []  # Conditions (the concept's active_only decides if history counts)
    history_within_days: int | None = Field(default=None, gt=0)  # non-active Conditions count only this recent
    positive_tests: list[str] = []  # qualitative_test ids whose latest result is in a positive category
    quantity_at_least: dict[str, float] = {}  # analyte -> limit in its canonical unit (latest result)
    quantity_sex: Literal["female", "male"] | None = None  # quantities count only for this sex (or unknown sex)
    medication_classes: list[str] = []  # drug_class ids among active medications
    other_systemic_jak: bool = False  # another JAK inhibitor active or ordered together
    # drug categories (cards/drugs.toml) that count as "another JAK inhibitor" (not topical, not TYK2)
    other_jak_categories: list[Literal["systemic", "topical", "out_of_scope", "not_class", "unsupported"]] = [
        "systemic"
    ]
    drug_allergy: bool = False  # an AllergyIntolerance recognised as the ordered drug
    live_vaccine_within_days: int | None = Field(default=None, gt=0)
    child_pugh: list[Literal["A", "B", "C"]] = []
    # True: skip when a Child-Pugh class is recorded (the class itself decides, e.g. plain cirrhosis)
    unless_child_pugh_recorded: bool = False

    @model_validator(mode="after")
    def _has_evidence(self) -> Contraindication:
        if not (
            self.concepts
            or self.positive_tests
            or self.quantity_at_least
            or self.medication_classes
            or self.other_systemic_jak
            or self.drug_allergy
            or self.live_vaccine_within_days
            or self.child_pugh
        ):
            raise ValueError("a contraindication needs at least one kind of evidence")
        if self.history_within_days is not None and not self.concepts:
            raise ValueError("history_within_days applies to concepts")
        return self


class AnswerCategory(Strict):
    codes: list[str] = []  # answer codes (SNOMED CT, LOINC LA codes), any system
    interpretation: list[str] = []  # Observation.interpretation codes (v3 ObservationInterpretation)
    words: list[str] = []  # valueString / text, compared case-insensitively as whole text
    boolean: bool | None = None  # valueBoolean meaning this category


class AnswerSet(Strict):
    categories: dict[str, AnswerCategory] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


class QualitativeTest(Strict):
    display: str
    loinc: list[str] = Field(min_length=1)
    answers: str  # answer_set id
    positive: list[str] = Field(min_length=1)  # categories that count as positive / present
    max_age_days: int | None = Field(default=None, gt=0)  # None: any age (chronic infections)
    sex: Literal["female", "male"] | None = None  # applies only to this recorded sex (or unknown)
    note: str | None = None  # shown with a positive result (e.g. "HCV RNA confirms")
    # how a number is read (viral loads, quantitative hCG, skin-test induration); without it a number is read
    # only through Observation.interpretation (cds_service/schemas/results.py)
    quantity: QuantityReading | None = None
    sources: list[str] = Field(min_length=1)

    def codes_read(self) -> dict[str, list[str]]:
        return {"Observation": list(self.loinc)}


class DrugClass(MedicationClass):
    """Current medicines a contraindication looks for: ATC codes or prefixes, names as words, no local form."""

    ATC_PREFIXES = True  # ATC codes or prefixes (L04AB matches L04AB01 ...)
    NAME_BOUNDS = EXCLUDE_BOUNDS = LETTERS  # names and local-form words not inside a longer word
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _something(self) -> DrugClass:
        if not self.atc and not self.names:
            raise ValueError("a drug class needs ATC codes or names")
        return self


class LiveVaccines(Strict):
    display: str
    cvx: list[str] = []
    atc: AtcCodes = ()  # codes or prefixes
    atc_not: AtcCodes = ()  # exceptions inside a prefix (J07BK03 recombinant zoster is not live)
    names: WordList = ()
    sources: list[str] = Field(min_length=1)


class ConditionText(Strict):
    """Words that stop a Condition's text from naming any concept (decision 16, recognition by name): "family
    history of", "suspected", "screening for", "risk of", "ruled out" ... (``exclude_words``), and words that make
    a concept named in the text history, never active ("history of", "previous": ``history_words``). Both match
    at the start of a word ("suspect" matches "suspected"); each concept adds its own ``exclude_words``."""

    exclude_words: WordList = Field(min_length=1)
    history_words: WordList = ()
    sources: list[str] = Field(min_length=1)


class ChildPughStage(Strict):
    """Condition.stage read for a Child-Pugh class (decision 16; cds_service/facts/hepatic.py): a stage that names
    Child-Pugh counts on any Condition; a bare class ("B", "class C") or "CP-B" only on a Condition coded as one
    of these liver ``concepts``."""

    concepts: list[str] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


def _check_staging(knowledge, entries: dict) -> list[str]:
    return source_checks(knowledge, entries) + [
        f"child_pugh_stage {name}: unknown concept {c!r}"
        for name, entry in entries.items()
        for c in entry.concepts
        if c not in knowledge.concepts
    ]


def check(knowledge, rules: list[Contraindication]) -> list[str]:
    problems: list[str] = []
    tests = knowledge.rules.qualitative_test
    classes = knowledge.rules.drug_class
    for rule in rules:
        problems += common_checks(knowledge, rule, rule.drugs)
        problems += [f"rule {rule.id}: unknown concept {c!r}" for c in rule.concepts if c not in knowledge.concepts]
        problems += [f"rule {rule.id}: unknown qualitative_test {t!r}" for t in rule.positive_tests if t not in tests]
        problems += [f"rule {rule.id}: unknown drug_class {c!r}" for c in rule.medication_classes if c not in classes]
        for analyte in rule.quantity_at_least:
            if analyte not in knowledge.analytes:
                problems.append(f"rule {rule.id}: unknown analyte {analyte!r}")
        if rule.override_set not in knowledge.overrides.sets:
            problems.append(f"rule {rule.id}: unknown override set {rule.override_set!r}")
        if rule.live_vaccine_within_days and not knowledge.rules.live_vaccine:
            problems.append(f"rule {rule.id}: no [live_vaccine.*] list")
    return problems


def check_tests(knowledge, tests: dict[str, QualitativeTest]) -> list[str]:
    problems = source_checks(knowledge, tests)
    answer_sets = knowledge.rules.answer_set
    seen: dict[str, str] = {}
    for name, test in tests.items():
        answers = answer_sets.get(test.answers)
        if answers is None:
            problems.append(f"qualitative_test {name}: unknown answer_set {test.answers!r}")
            continue
        problems += [
            f"qualitative_test {name}: category {c!r} is not in answer_set {test.answers}"
            for c in test.positive
            if c not in answers.categories
        ]
        if test.quantity is not None:
            problems += [
                f"qualitative_test {name}: a number is read as {c!r}, which is not in answer_set {test.answers}"
                for c in CATEGORIES
                if c not in answers.categories
            ]
            analyte = test.quantity.analyte
            if analyte is not None and analyte not in knowledge.analytes:
                problems.append(f"qualitative_test {name}: unknown analyte {analyte!r}")
            elif analyte is not None and set(knowledge.analytes[analyte].loinc) != set(test.loinc):
                problems.append(f"qualitative_test {name}: its LOINC codes must be those of analyte {analyte}")
        for code in test.loinc:
            if code in seen:
                problems.append(f"qualitative_test {name}: LOINC {code} is also in {seen[code]}")
            seen[code] = name
    return problems


register("contraindication", Contraindication, "list", check)
register("qualitative_test", QualitativeTest, "map", check_tests)
register("answer_set", AnswerSet, "map", source_checks)
register("drug_class", DrugClass, "map", source_checks)
register("live_vaccine", LiveVaccines, "map", source_checks)
register("condition_text", ConditionText, "map", source_checks)
register("child_pugh_stage", ChildPughStage, "map", _check_staging)
