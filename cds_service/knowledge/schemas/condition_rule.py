"""``[[condition_rule]]``: a coded concept on the record that contraindicates a drug."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, common_checks


class ConditionRule(Strict):
    id: str
    concept: str
    drugs: list[str] = Field(min_length=1)
    indicator: Literal["info", "warning", "critical"]
    summary: str
    action: str
    sources: list[str] = Field(min_length=1)


def check(knowledge, rules: list[ConditionRule]) -> list[str]:
    problems: list[str] = []
    for rule in rules:
        problems += common_checks(knowledge, rule, rule.drugs)
        if rule.concept not in knowledge.concepts:
            problems.append(f"rule {rule.id}: unknown concept {rule.concept!r}")
    return problems


register("condition_rule", ConditionRule, "list", check)
