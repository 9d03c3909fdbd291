"""The store's read queries: what `jak-cds report` and the tests read back (cards issued, feedback, per-rule
acceptance). Plain functions over a connection; ``Store`` flushes the audit queue before it calls them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cds_service.store.schema import feedback, issued_card, metadata


def count(conn: Connection, table_name: str) -> int:
    table = metadata.tables[table_name]
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def issued(conn: Connection) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(select(issued_card).order_by(issued_card.c.issued_at))]


def feedback_rows(conn: Connection) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(select(feedback).order_by(feedback.c.id))]


def rule_report(conn: Connection, top_reasons: int) -> list[dict]:
    """Per rule: cards issued, cards accepted/overridden (distinct cards), top override reasons."""
    report: dict[str, dict] = {}

    def entry(rule: str) -> dict:
        return report.setdefault(
            rule, {"rule": rule, "issued": 0, "accepted": 0, "overridden": 0, "top_override_reasons": []}
        )

    rule_of_feedback = func.coalesce(issued_card.c.rule_id, "(unknown card)")
    joined = feedback.outerjoin(issued_card, issued_card.c.card_uuid == feedback.c.card_uuid)
    for rule, n in conn.execute(select(issued_card.c.rule_id, func.count()).group_by(issued_card.c.rule_id)):
        entry(rule)["issued"] = n
    for rule, outcome, n in conn.execute(
        select(rule_of_feedback, feedback.c.outcome, func.count(func.distinct(feedback.c.card_uuid)))
        .select_from(joined)
        .group_by(rule_of_feedback, feedback.c.outcome)
    ):
        if outcome in ("accepted", "overridden"):
            entry(rule)[outcome] = n
    reasons = conn.execute(
        select(
            rule_of_feedback,
            feedback.c.override_system,
            feedback.c.override_code,
            func.max(feedback.c.override_display),
            func.count(),
        )
        .select_from(joined)
        .where(feedback.c.outcome == "overridden", feedback.c.override_code.is_not(None))
        .group_by(rule_of_feedback, feedback.c.override_system, feedback.c.override_code)
    )
    by_rule: dict[str, list] = {}
    for rule, system, code, display, n in reasons:
        by_rule.setdefault(rule, []).append({"system": system, "code": code, "display": display, "count": n})
    for rule, items in by_rule.items():
        items.sort(key=lambda r: (-r["count"], r["code"]))
        entry(rule)["top_override_reasons"] = items[:top_reasons]
    return sorted(report.values(), key=lambda r: (-r["issued"], r["rule"]))
