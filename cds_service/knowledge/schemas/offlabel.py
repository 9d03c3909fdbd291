"""Off-label family tables (decision 13).

``[[offlabel]]``           the rule: which drugs are checked, the card's wording, the caveat on the evidence
``[[offlabel_evidence]]``  one entry per drug x off-label indication: best evidence, number of patients,
                           dose used, findings, source (jak-facts.md section E: S003, and S002 for
                           upadacitinib in myositis)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, common_checks


class OffLabelRule(Strict):
    id: str
    drugs: list[str] = Field(min_length=1)
    indicator: Literal["info"] = "info"
    # without an order reason, say off-label only for a recorded condition that has an evidence entry
    # (a patient may have an approved indication that is not coded); with a reason, always say it
    conditions_need_evidence: bool = True
    summary: str  # placeholders: {drug}, {indication}
    no_evidence: str  # shown when no evidence entry exists for the drug and indication
    caveat: str  # limits of the evidence, shown on every card
    sources: list[str] = Field(min_length=1)


class OffLabelEvidence(Strict):
    id: str
    drug: str
    indication: str  # an indication id (cards/indications*.toml) not approved for the drug
    evidence: str  # the best evidence, as the source describes it
    n: int | None = Field(default=None, ge=1)  # patients in the best evidence, as the source counts them
    dose: str | None = None  # dose used in the studies (not a recommendation)
    findings: str | None = None
    sources: list[str] = Field(min_length=1)


def check_rules(knowledge, rules: list[OffLabelRule]) -> list[str]:
    problems: list[str] = []
    for rule in rules:
        problems += common_checks(knowledge, rule, rule.drugs)
        for key in ("summary",):
            try:
                getattr(rule, key).format(drug="x", indication="y")
            except (KeyError, IndexError) as exc:
                problems.append(f"rule {rule.id}: {key} has an unknown placeholder {exc}")
    if len(rules) > 1:
        problems.append(f"offlabel: one rule expected, found {[r.id for r in rules]}")
    return problems


def check_evidence(knowledge, entries: list[OffLabelEvidence]) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        problems += common_checks(knowledge, entry, [entry.drug])
        if entry.indication not in knowledge.indications:
            problems.append(f"rule {entry.id}: unknown indication {entry.indication!r}")
        drug = knowledge.drugs.get(entry.drug)
        if drug is not None and entry.indication in drug.indications:
            problems.append(f"rule {entry.id}: {entry.indication} is an approved indication of {entry.drug}")
        key = (entry.drug, entry.indication)
        if key in seen:
            problems.append(f"rule {entry.id}: a second evidence entry for {key}")
        seen.add(key)
    return problems


register("offlabel", OffLabelRule, "list", check_rules)
register("offlabel_evidence", OffLabelEvidence, "list", check_evidence)
