"""Findings -> CDS Hooks cards.

One card per concern (the most severe finding wins), one "could not check"
card per order gathering every gap, sources rendered as links, override
reasons from the knowledge, and nothing empty on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from cds_service.findings import SEVERITY, Finding, Missing
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.wire import MAX_SUMMARY, Action, Card, Coding, Link, Source, Suggestion

RULE_SYSTEM = "https://jak-cds.example.org/fhir/CodeSystem/rule"


@dataclass(frozen=True)
class IssuedCard:
    """A card with the rule behind it (what the audit records and feedback is grouped by)."""

    card: Card
    rule_id: str


@lru_cache(maxsize=512)  # one per rule id (a few dozen), shared by every card of that rule
def rule_topic(rule_id: str) -> Coding:
    """source.topic names the rule behind a card, so EHR analytics and feedback can group by rule."""
    return Coding(code=rule_id, system=RULE_SYSTEM, display=f"JAK CDS rule {rule_id}")


def _short(text: str) -> str:
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1].rstrip() + "…"


def _link_label(text: str, limit: int = 80) -> str:
    """A link label that fits ``limit``, cut at a word boundary with an ellipsis (never "... with JAK in")."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:/-(") + "…"


def _sources_md(knowledge: Knowledge, source_ids: list[str]) -> str:
    lines = [f"- [{knowledge.sources[s].label}]({knowledge.sources[s].url}) [{s}]" for s in dict.fromkeys(source_ids)]
    return "\n\n" + say("**Sources**") + "\n" + "\n".join(lines)


@dataclass(frozen=True)
class CardParts:
    """The parts of cards that follow from one knowledge alone, made once when it is loaded (each language's copy
    of the knowledge has its own) and shared by every card: immutable wire models.

    ``overrides``: override set -> its reasons as codings; ``links``: source id -> the link to it."""

    overrides: dict[str, tuple[Coding, ...]]
    links: dict[str, Link]

    @classmethod
    def of(cls, knowledge: Knowledge) -> CardParts:
        system = knowledge.overrides.system
        return cls(
            overrides={
                name: tuple(Coding(code=r.code, system=system, display=r.display) for r in entry.reasons)
                for name, entry in knowledge.overrides.sets.items()
            },
            links={
                sid: Link(label=_link_label(source.label), url=source.url) for sid, source in knowledge.sources.items()
            },
        )


def dedupe(findings: list[Finding]) -> list[Finding]:
    """Keep the most severe finding per concern; first one wins a tie (rule order is stable)."""
    best: dict[str, Finding] = {}
    for finding in findings:
        current = best.get(finding.concern)
        if current is None or SEVERITY[finding.indicator] > SEVERITY[current.indicator]:
            best[finding.concern] = finding
    return list(best.values())


def _edited_drafts(suggestion) -> set[str]:
    """Ids of the draft resources a suggestion updates or deletes."""
    out: set[str] = set()
    for action in suggestion.actions:
        if action.type not in ("update", "delete"):
            continue
        if isinstance(action.resource, dict) and action.resource.get("id"):
            out.add(f"{action.resource.get('resourceType')}/{action.resource['id']}")
        out.update(rid if "/" in rid else f"MedicationRequest/{rid}" for rid in action.resource_id)
    return out


def one_edit_per_draft(findings: list[Finding]) -> list[Finding]:
    """A draft order gets at most one card that edits it: the higher-priority card keeps its suggestion.

    Priority is severity, then rule-family order (dose rules run first), so e.g. a PRAC lower-dose suggestion
    is dropped when a dose card already changes the same draft; the PRAC card keeps its text.
    """
    ranked = sorted(range(len(findings)), key=lambda i: -SEVERITY[findings[i].indicator])
    edited: set[str] = set()
    out = list(findings)
    for i in ranked:
        finding = findings[i]
        kept = [s for s in finding.suggestions if not (_edited_drafts(s) & edited)]
        for suggestion in kept:
            edited |= _edited_drafts(suggestion)
        if len(kept) != len(finding.suggestions):
            out[i] = replace(finding, suggestions=kept)
    return out


def primary_source(finding_sources: list[str], drug: str | None) -> str:
    """The drug's own product information if cited, else the first source."""
    own = f"EU-{drug}" if drug else None
    return own if own in finding_sources else finding_sources[0]


def sources_for(source_ids: list[str], drug: str | None) -> list[str]:
    """Another drug's product information is no source for this drug's card (kept if nothing else is left)."""
    unique = list(dict.fromkeys(source_ids))
    if not drug:
        return unique
    kept = [s for s in unique if not s.startswith("EU-") or s == f"EU-{drug}"]
    return kept or unique


def finding_card(knowledge: Knowledge, parts: CardParts, finding: Finding, app_link: Link | None = None) -> Card:
    """The card of one finding; with ``app_link`` its one link is the app (its sources are listed in the detail)."""
    finding.sources = sources_for(finding.sources, finding.drug)
    first = knowledge.sources[primary_source(finding.sources, finding.drug)]
    suggestions = [
        Suggestion(
            label=s.label,
            isRecommended=s.recommended or None,
            actions=[
                Action(
                    type=a.type, description=a.description, resource=a.resource, resourceId=list(a.resource_id) or None
                )
                for a in s.actions
            ],
        )
        for s in finding.suggestions
    ] or None
    overrides = parts.overrides[finding.override_set] if finding.override_set and finding.indicator != "info" else None
    return Card(
        summary=_short(finding.summary),
        detail=finding.detail + _sources_md(knowledge, finding.sources),
        indicator=finding.indicator,
        source=Source(label=first.label, url=first.url, topic=rule_topic(finding.rule_id)),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=overrides,
        links=[app_link] if app_link else [parts.links[s] for s in dict.fromkeys(finding.sources)],
    )


def missing_card(
    knowledge: Knowledge, parts: CardParts, gaps: list[Missing], drug_name: str | None, app_link: Link | None = None
) -> Card:
    """One card listing every check that could not be done for one order (or for the patient)."""
    unique: dict[tuple[str, str], Missing] = {}
    for gap in gaps:
        unique.setdefault((gap.check, gap.why), gap)
    items = list(unique.values())
    n = len(items)
    if n == 1:
        said = drug_name and drug_name.lower() in items[0].check.lower()
        if said or not drug_name:
            summary = say("Could not check {check}: {why}", check=items[0].check, why=items[0].why)
        else:
            summary = say(
                "Could not check {check} for {drug}: {why}", check=items[0].check, drug=drug_name, why=items[0].why
            )
    elif drug_name:
        summary = say("{count} safety checks for {drug} could not be done: data missing", count=n, drug=drug_name)
    else:
        summary = say("{count} safety checks could not be done: data missing", count=n)
    lines = "\n".join(f"- **{g.check}**: {g.why}" for g in items)
    drugs = {g.drug for g in items if g.drug}
    sources = sources_for([s for g in items for s in g.sources], next(iter(drugs)) if len(drugs) == 1 else None)
    detail = (
        say("These checks were **not** done. Missing data is not evidence that the values are normal.")
        + "\n\n"
        + lines
        + _sources_md(knowledge, sources)
    )
    first = knowledge.sources[sources[0]]
    return Card(
        summary=_short(summary),
        detail=detail,
        indicator="warning",
        source=Source(label=first.label, url=first.url, topic=rule_topic("missing-data")),
        overrideReasons=parts.overrides["missing-data"],
        links=[app_link] if app_link else None,
    )


def absorb(findings: list[Finding], gaps: list[Missing]) -> list[Missing]:
    """Gaps a finding already states (``Finding.covers``: e.g. the baseline checklist lists the missing ANC)
    are not repeated on the could-not-check card. A gap that is only *caused* by a covered result (e.g. renal
    dose: "no serum creatinine in the last 90 days") is named on that finding's card instead. Returns the rest."""
    owners = [f for f in findings if f.covers]
    if not owners:
        return gaps
    remaining: list[Missing] = []
    for gap in gaps:
        owner = next((f for f in owners if f.order_id == gap.order_id and _caused_by(gap, f.covers)), None)
        if owner is None:
            remaining.append(gap)
        elif gap.check not in owner.covers:
            line = f"- {gap.check}: {gap.why}"
            heading = say("**Could not be checked until then:**")
            if heading not in owner.detail:
                owner.detail += "\n\n" + heading
            if line not in owner.detail:
                owner.detail += "\n" + line
    return remaining


def _caused_by(gap: Missing, covers: tuple[str, ...]) -> bool:
    if gap.check in covers:
        return True
    names = [re.compile(r"\b" + re.escape(c) + r"\b") for c in covers]
    return all(any(n.search(clause) for n in names) for clause in gap.why.split("; "))


def build_cards(
    knowledge: Knowledge,
    parts: CardParts,
    findings: list[Finding],
    gaps: list[Missing],
    drug_names: dict[str | None, str],
    app_link: Link | None = None,
    app_link_on_gaps: bool = False,
) -> list[IssuedCard]:
    """Cards in order of severity, each with its rule id. ``app_link`` (the SMART monitoring app) is the one link
    of every finding's card, and of the could-not-check cards too with ``app_link_on_gaps``."""
    cards: list[tuple[int, Card, str]] = []
    gaps = absorb(findings, gaps)
    for finding in one_edit_per_draft(dedupe(findings)):
        cards.append((SEVERITY[finding.indicator], finding_card(knowledge, parts, finding, app_link), finding.rule_id))
    by_order: dict[str | None, list[Missing]] = {}
    for gap in gaps:
        by_order.setdefault(gap.order_id, []).append(gap)
    if None in by_order and len(by_order) > 1:
        # a patient-level gap (e.g. no usable birth date) belongs on each order's card, not a card of its own
        patient_gaps = by_order.pop(None)
        for order_gaps in by_order.values():
            order_gaps[:0] = patient_gaps
    for order_id, order_gaps in by_order.items():
        cards.append(
            (
                SEVERITY["warning"],
                missing_card(
                    knowledge, parts, order_gaps, drug_names.get(order_id), app_link if app_link_on_gaps else None
                ),
                "missing-data",
            )
        )
    cards.sort(key=lambda item: -item[0])
    return [IssuedCard(card, rule_id) for _, card, rule_id in cards]
