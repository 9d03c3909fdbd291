"""Shared pieces for rule-table schemas."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt threshold must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ATC codes are upper case; kept so (a tuple, so that a prefix test is one ``str.startswith``)
AtcCodes = Annotated[tuple[str, ...], AfterValidator(lambda codes: tuple(c.strip().upper() for c in codes))]


def common_checks(knowledge, rule, drugs: list[str]) -> list[str]:
    """Every rule: known sources and known drugs."""
    problems = [f"rule {rule.id}: unknown source {s!r}" for s in rule.sources if s not in knowledge.sources]
    problems += [f"rule {rule.id}: unknown drug {d!r}" for d in drugs if d not in knowledge.drugs]
    return problems


def indication_checks(knowledge, rule) -> list[str]:
    """Rules limited to indications must name known ones."""
    return [f"rule {rule.id}: unknown indication {i!r}" for i in rule.indications if i not in knowledge.indications]
