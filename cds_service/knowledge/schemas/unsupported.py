"""``[[unsupported_notice]]``: an info card for a recognised JAK inhibitor this service does not check.

Without it, silence on such an order could be read as "checked, nothing found". Which drugs get it is decided
by their ``category`` in ``cards/drugs.toml`` (decision 12: oral ruxolitinib and deucravacitinib stay silent).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict

Category = Literal["systemic", "topical", "out_of_scope", "not_class", "unsupported"]


class UnsupportedNotice(Strict):
    id: str
    categories: list[Category] = Field(min_length=1)
    indicator: Literal["info"] = "info"
    summary: str  # placeholder: {drug}
    detail: str
    # per drug: what the product information says that the clinician must check (text with its source)
    drug_notes: dict[str, str] = {}
    sources: list[str] = Field(min_length=1)


def check(knowledge, notices: list[UnsupportedNotice]) -> list[str]:
    problems: list[str] = []
    for notice in notices:
        problems += [f"rule {notice.id}: unknown source {s!r}" for s in notice.sources if s not in knowledge.sources]
        problems += [f"rule {notice.id}: unknown drug {d!r}" for d in notice.drug_notes if d not in knowledge.drugs]
        if "systemic" in notice.categories:
            problems.append(f"rule {notice.id}: systemic drugs are checked; they cannot get an 'unsupported' notice")
    return problems


register("unsupported_notice", UnsupportedNotice, "list", check)
