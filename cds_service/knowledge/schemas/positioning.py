"""Positioning family tables: where a guideline places a JAK inhibitor in the treatment sequence.

``[therapy_class.<id>]``  a class of earlier therapies, matched among ALL the patient's MedicationRequests and
                          MedicationStatements (any status: completed and stopped ones are the history) by ATC
                          code, RxNorm code or name
``[[positioning]]``       an info note when an order for one of ``drugs`` for one of ``indications`` (age band
                          optional) finds none of the ``prior_classes`` on record
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
)
from cds_service.knowledge.textmatch import WORD_START, WordList


class TherapyClass(MedicationClass):
    """Prior therapy a positioning rule looks for: whole ATC or RxNorm codes, names at a word start, no local form.

    A name matches at the start of a word ("ciclosporin" in "Neoral (ciclosporin)" and in "ciclosporine");
    a text naming a local form (eye drops, cream) is not a member, even when coded."""

    NAME_BOUNDS = WORD_START
    members: list[str] = Field(min_length=1)  # how the card names the members
    names: WordList = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


class PositioningRule(Strict):
    id: str
    drugs: list[str] = Field(min_length=1)
    indications: list[str] = Field(min_length=1)  # the order's indication must be one of these
    age_at_least: float | None = Field(default=None, ge=0, le=130)
    age_below: float | None = Field(default=None, gt=0, le=130)
    prior_classes: list[str] = Field(min_length=1)
    new_start_only: bool = True  # silent when the patient already takes the drug (a renewal)
    indicator: Literal["info"] = "info"
    summary: str  # placeholders: {drug}
    detail: str  # what the guideline says and what to do
    scope_note: str | None = None  # e.g. a drug included by analogy
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _band(self) -> PositioningRule:
        if self.age_at_least is not None and self.age_below is not None and self.age_at_least >= self.age_below:
            raise ValueError("age_at_least must be below age_below")
        return self


def check_classes(knowledge, classes: dict[str, TherapyClass]) -> list[str]:
    problems = [
        f"therapy_class {name}: unknown source {s!r}"
        for name, entry in classes.items()
        for s in entry.sources
        if s not in knowledge.sources
    ]
    problems += [
        f"therapy_class {name}: RxNorm code {c!r} is not numeric"
        for name, entry in classes.items()
        for c in entry.rxnorm
        if not c.isdigit()
    ]
    return problems


def check_rules(knowledge, rules: list[PositioningRule]) -> list[str]:
    problems: list[str] = []
    classes = knowledge.rules.therapy_class
    for rule in rules:
        problems += common_checks(knowledge, rule, rule.drugs)
        problems += indication_checks(knowledge, rule)
        problems += [f"rule {rule.id}: unknown therapy_class {c!r}" for c in rule.prior_classes if c not in classes]
        for drug in rule.drugs:
            entry = knowledge.drugs.get(drug)
            if entry is not None and not set(rule.indications) & set(entry.indications):
                problems.append(f"rule {rule.id}: {drug} is approved for none of {rule.indications}")
    return problems


register("therapy_class", TherapyClass, "map", check_classes)
register("positioning", PositioningRule, "list", check_rules)
