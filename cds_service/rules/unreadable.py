"""Decision 18: a JAK inhibitor order whose patient record could not be read at all gets a warning, not silence."""

from __future__ import annotations

from cds_service.findings import Finding
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.orders import RecognisedDraft
from cds_service.rules.text import sentence


def findings(knowledge: Knowledge, drafts: list[RecognisedDraft], why: dict[str, str]) -> list[Finding]:
    """One warning per systemic JAK inhibitor draft; ``why``: prefetch key -> why it could not be obtained."""
    reasons = "\n".join(f"- **{key}**: {reason}" for key, reason in sorted(why.items()))
    out = []
    for notice in knowledge.rules.record_unreadable.values():
        for draft in drafts:
            if draft.match.category != "systemic":
                continue
            name = draft.match.entry.display
            out.append(
                Finding(
                    rule_id=notice.id,
                    concern=f"record-unreadable:{draft.order_id}",
                    indicator=notice.indicator,
                    summary=sentence(notice.summary.format(drug=name)),
                    detail=notice.detail.format(drug=name)
                    + "\n\n"
                    + say("**Why the record could not be read:**")
                    + "\n"
                    + reasons,
                    sources=list(dict.fromkeys([*notice.sources, *draft.match.entry.sources])),
                    override_set="missing-data",
                    order_id=draft.order_id,
                    drug=draft.match.drug_id,
                )
            )
    return out
