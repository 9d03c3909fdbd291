"""``jak-cds report [--json]``: per rule, cards issued, accepted, overridden, top override reasons.

Reads the database named by ``JAK_CDS_DATABASE_URL``. Counts of accepted and
overridden are distinct cards; feedback for a card we have no record of is
listed under "(unknown card)".
"""
from __future__ import annotations

import json
import sys

from sqlalchemy.exc import SQLAlchemyError

from cds_service.config import Settings
from cds_service.store import Store


def build_report(store: Store) -> dict:
    rules = store.rule_report()
    totals = {k: sum(r[k] for r in rules) for k in ("issued", "accepted", "overridden")}
    return {"rules": rules, "totals": totals}


def format_text(report: dict) -> str:
    rules = report["rules"]
    if not rules:
        return "no cards issued and no feedback recorded yet\n"
    width = max(len("rule"), *(len(r["rule"]) for r in rules))
    lines = [f"{'rule':<{width}}  {'issued':>7}  {'accepted':>8}  {'overridden':>10}  top override reasons",
             "-" * (width + 60)]
    for r in rules:
        reasons = ", ".join(f"{x['display'] or x['code']} ({x['count']})" for x in r["top_override_reasons"])
        lines.append(f"{r['rule']:<{width}}  {r['issued']:>7}  {r['accepted']:>8}  {r['overridden']:>10}  {reasons}")
    t = report["totals"]
    lines.append("-" * (width + 60))
    lines.append(f"{'total':<{width}}  {t['issued']:>7}  {t['accepted']:>8}  {t['overridden']:>10}")
    return "\n".join(lines) + "\n"


def main(args, settings: Settings | None = None, out=None) -> int:
    settings = settings or Settings.from_env()
    out = out or sys.stdout
    store = Store.from_settings(settings)
    try:
        report = build_report(store)
    except SQLAlchemyError as exc:
        raise SystemExit(f"cannot read the database named by JAK_CDS_DATABASE_URL ({type(exc).__name__}); "
                         "is it running and reachable?") from None
    finally:
        store.dispose()
    if getattr(args, "json", False):
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(format_text(report))
    return 0
