"""The two cards about an order that is not checked the usual way (decisions 17 and 18).

``[co_prescription.<id>]``  a non-JAK order for a patient who already takes a systemic JAK inhibitor: one card per
                            order naming both drugs. What is advised (and how severe it is) comes from the JAK
                            inhibitor's own rules (the dose rules of an interacting class, the contraindications
                            of a medicine class or a live vaccine), so each fact keeps one source; this entry only
                            words the card.
``[record_unreadable.<id>]`` a JAK inhibitor order whose patient record could not be read at all: a warning that no
                            safety check was run and why, never a silent answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, source_checks


class CoPrescriptionCard(Strict):
    id: str  # rule id on the card
    summary: str  # {ordered} {drug} {advice}
    intro: str  # {ordered} {drug} {taking}
    remove_label: str  # suggestion on a critical card: {ordered}
    # how a contraindication rule's advice reads when its medicine is the one ordered now (rule id -> text with
    # {drug}); a rule not listed is shown with its own summary
    headlines: dict[str, str] = {}
    sources: list[str] = Field(min_length=1)  # cited only when the JAK inhibitor's rules cite none


class RecordUnreadable(Strict):
    id: str
    indicator: Literal["warning", "critical"] = "warning"
    summary: str  # {drug}
    detail: str  # {drug}; the reasons follow as a list
    sources: list[str] = Field(min_length=1)


def _check(knowledge, entries: dict) -> list[str]:
    problems = source_checks(knowledge, entries)
    if len(entries) > 1:
        problems.append(f"one entry expected, found {sorted(entries)}")
    return problems


def _check_cards(knowledge, entries: dict[str, CoPrescriptionCard]) -> list[str]:
    rules = {rule.id for rule in knowledge.rules.contraindication}
    return _check(knowledge, entries) + [
        f"{name}: headline for unknown contraindication rule {rule_id!r}"
        for name, entry in entries.items()
        for rule_id in entry.headlines
        if rule_id not in rules
    ]


register("co_prescription", CoPrescriptionCard, "map", _check_cards)
register("record_unreadable", RecordUnreadable, "map", _check)
