"""``[[dose]]``: caps on the daily dose of one drug when conditions hold."""
from __future__ import annotations

from pydantic import Field

from cds_service.schemas import register
from cds_service.schemas.base import Strict, common_checks


class DoseWhen(Strict):
    age_at_least: float | None = Field(default=None, ge=0, le=130)
    age_below: float | None = Field(default=None, ge=0, le=130)


class DoseRule(Strict):
    id: str
    drug: str
    indications: list[str] = []
    when: DoseWhen
    max_mg: float = Field(gt=0)
    per_day: int = Field(ge=1, le=4)
    reason: str
    detail: str
    sources: list[str] = Field(min_length=1)


def check(knowledge, rules: list[DoseRule]) -> list[str]:
    problems = []
    for rule in rules:
        problems += common_checks(knowledge, rule, [rule.drug])
        problems += [f"rule {rule.id}: unknown indication {i!r}" for i in rule.indications
                     if i not in knowledge.indications]
    return problems


register("dose", DoseRule, "list", check)
