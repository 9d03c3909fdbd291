"""Info card for a recognised JAK inhibitor this service does not check (``[[unsupported_notice]]``)."""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding
from cds_service.rules.context import RuleContext
from cds_service.rules.text import sentence


def evaluate(ctx: RuleContext) -> Iterator[Finding]:
    k = ctx.knowledge
    for notice in k.rules.unsupported_notice:
        for order in ctx.orders:
            if order.match.category not in notice.categories:
                continue
            note = notice.drug_notes.get(order.drug)
            yield Finding(
                rule_id=notice.id,
                concern=f"unsupported:{order.order_id}",
                indicator=notice.indicator,
                summary=notice.summary.format(drug=sentence(order.name)),
                detail=notice.detail.format(drug=order.name) + (f"\n\n{note}" if note else ""),
                sources=list(dict.fromkeys(list(notice.sources) + list(order.match.entry.sources))),
                order_id=order.order_id,
                drug=order.drug,
            )
