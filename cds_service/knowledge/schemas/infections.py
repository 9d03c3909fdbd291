"""Infection rules that read screening results (decisions 5, 15 and 21): latent tuberculosis, hepatitis B core
antibody with HBV DNA, hepatitis C antibody with HCV RNA, HIV with antiretroviral therapy and viral load.

Each table names the qualitative tests (``[qualitative_test.*]``, read by cds_service/facts/safety.py), the
concepts and the treatment classes it reads, and one card text per outcome (``CardText``: its own rule id,
indicator, summary and advice). The decision between outcomes is in cds_service/rules/infections/; every
code, window and wording is here and in cards/.

``[[latent_tb_rule]]``       positive IGRA/TST (or a latent TB diagnosis) without completed preventive treatment
                             after it -> ``latent``; newest test indeterminate -> ``indeterminate``
``[[hbv_core_rule]]``        anti-HBc positive, HBsAg not positive -> ``dna_unknown`` / ``dna_not_detected``
                             (HBV DNA detected: the critical hepatitis-b contraindication, same concern)
``[[hcv_antibody_rule]]``    HCV antibody positive without HCV RNA not detected after it -> ``rna_unknown``
                             (HCV RNA detected: the critical hepatitis-c contraindication, same concern)
``[[hiv_rule]]``             HIV infection: untreated / detectable load -> critical; treated and suppressed, or
                             treated without a current load -> warning; a reactive screen alone -> confirm
``[treatment_class.<id>]``   medicines of a treatment (ATC codes or prefixes, ``atc_not`` exceptions, names)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import (
    AtcCodes,
    MedicationClass,
    Strict,
    common_checks,
    source_checks,
)
from cds_service.knowledge.textmatch import LETTERS


class CardText(Strict):
    id: str  # the card's rule id (source.topic)
    indicator: Literal["info", "warning", "critical"]
    summary: str  # "{drug}" is replaced by the drug name; "{days}" by the window
    action: str


class TreatmentClass(MedicationClass):
    """A treatment looked for among medication requests and statements, whatever their status."""

    ATC_PREFIXES = True
    NAME_BOUNDS = EXCLUDE_BOUNDS = LETTERS
    atc_not: AtcCodes = ()  # codes inside a prefix that are not members (J05AE30 Paxlovid)
    sources: list[str] = Field(min_length=1)

    def contains(self, display: str, codes) -> bool:
        if self.atc_not and any(kind == "atc" and code.upper().startswith(self.atc_not) for kind, code in codes):
            return False
        return super().contains(display, codes)


class _InfectionRule(Strict):
    id: str
    # the card layer's de-duplication key (per order): "contraindication:hepatitis-b" is shared with that
    # [[contraindication]], "condition:active_tuberculosis" with that [[condition_rule]]; the most severe card wins
    concern: str
    drugs: list[str] = Field(min_length=1)
    note: str | None = None
    override_set: str = "contraindication"
    sources: list[str] = Field(min_length=1)

    def outcomes(self) -> list[CardText]:
        return [
            value for value in (getattr(self, name) for name in type(self).model_fields) if isinstance(value, CardText)
        ]


class LatentTbRule(_InfectionRule):
    tests: list[str] = Field(min_length=1)  # IGRA, TST: the newest readable result decides ...
    persistent_positive: list[str] = []  # ... except that a positive of these is not undone by a later negative
    concepts: list[str] = []  # latent TB diagnoses (Conditions)
    treatment_class: str  # preventive treatment; completed on/after the first positive -> treated
    indeterminate_within_days: int = Field(gt=0)
    latent: CardText
    indeterminate: CardText


class HbvCoreRule(_InfectionRule):
    core_tests: list[str] = Field(min_length=1)  # anti-HBc: any positive counts
    surface_tests: list[str] = Field(min_length=1)  # HBsAg: newest readable
    dna_test: str
    dna_within_days: int = Field(gt=0)
    dna_unknown: CardText
    dna_not_detected: CardText


class HcvAntibodyRule(_InfectionRule):
    antibody_tests: list[str] = Field(min_length=1)  # any positive counts
    rna_test: str
    rna_unknown: CardText


class HivRule(_InfectionRule):
    concepts: list[str] = Field(min_length=1)
    screen_tests: list[str] = []
    load_test: str
    load_within_days: int = Field(gt=0)
    treatment_class: str
    untreated: CardText
    detectable: CardText
    suppressed: CardText
    load_unknown: CardText
    screen_reactive: CardText


def _tests_of(rule) -> list[str]:
    found: list[str] = []
    for name in ("tests", "persistent_positive", "core_tests", "surface_tests", "antibody_tests", "screen_tests"):
        found += getattr(rule, name, None) or []
    found += [getattr(rule, name) for name in ("dna_test", "rna_test", "load_test") if getattr(rule, name, None)]
    return found


def check_rules(knowledge, rules: list) -> list[str]:
    problems: list[str] = []
    tests = knowledge.rules.qualitative_test
    classes = knowledge.rules.treatment_class
    others = {getattr(r, "id", None) for r in knowledge.rules.all_rules()}
    card_ids = [text.id for table in TABLES for rule in getattr(knowledge.rules, table) for text in rule.outcomes()]
    for rule in rules:
        problems += common_checks(knowledge, rule, rule.drugs)
        problems += [f"rule {rule.id}: unknown qualitative_test {t!r}" for t in _tests_of(rule) if t not in tests]
        problems += [
            f"rule {rule.id}: unknown concept {c!r}"
            for c in getattr(rule, "concepts", [])
            if c not in knowledge.concepts
        ]
        treatment = getattr(rule, "treatment_class", None)
        if treatment is not None and treatment not in classes:
            problems.append(f"rule {rule.id}: unknown treatment_class {treatment!r}")
        if rule.override_set not in knowledge.overrides.sets:
            problems.append(f"rule {rule.id}: unknown override set {rule.override_set!r}")
        for text in rule.outcomes():
            if card_ids.count(text.id) > 1 or text.id in others - {rule.id}:
                problems.append(f"rule {rule.id}: card id {text.id!r} is used twice")
    return problems


TABLES: dict[str, type[Strict]] = {
    "latent_tb_rule": LatentTbRule,
    "hbv_core_rule": HbvCoreRule,
    "hcv_antibody_rule": HcvAntibodyRule,
    "hiv_rule": HivRule,
}
for _name, _model in TABLES.items():
    register(_name, _model, "list", check_rules)
register("treatment_class", TreatmentClass, "map", source_checks)
