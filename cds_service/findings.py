"""Findings: what a rule concluded, before it becomes a card.

A finding carries its ``concern`` (the de-duplication key: one card per
concern per order), the rule and sources behind it, and any suggested edit.
``missing`` findings say what could not be checked; the card layer gathers
them into one card per order rather than one card per gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Indicator = Literal["info", "warning", "critical"]
ActionType = Literal["create", "update", "delete"]

SEVERITY: dict[Indicator, int] = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class ProposedAction:
    type: ActionType
    description: str
    resource: dict | None = None
    resource_id: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProposedSuggestion:
    label: str
    actions: tuple[ProposedAction, ...]
    recommended: bool = True


@dataclass
class Finding:
    rule_id: str
    concern: str
    indicator: Indicator
    summary: str
    detail: str
    sources: list[str]
    override_set: str | None = None
    suggestions: list[ProposedSuggestion] = field(default_factory=list)
    order_id: str | None = None
    drug: str | None = None
    covers: tuple[str, ...] = ()  # Missing.check texts this card already says for its order (not repeated)


@dataclass(frozen=True)
class Missing:
    """A check that could not be done, and why (said out loud, never read as normal)."""

    rule_id: str
    check: str  # what could not be checked, e.g. "neutrophil count (ANC)"
    why: str  # e.g. "no result in the last 90 days"
    sources: tuple[str, ...]
    order_id: str | None = None
    drug: str | None = None
