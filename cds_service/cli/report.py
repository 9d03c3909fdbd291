"""``jak-cds report [--json]``: per rule, cards issued, accepted, overridden, top override reasons.

Reads the database named by ``JAK_CDS_DATABASE_URL``. Counts of accepted and
overridden are distinct cards; feedback for a card we have no record of is
listed under "(unknown card)". It also says how many issued-card rows wait in
the local audit spool (``JAK_CDS_AUDIT_SPOOL``) for the database: rows a
database outage kept out, written by the service once the database is back
(not yet counted above). Rows a running process still holds in memory (its
last tenth of a second) are not visible from here.
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
    return {"rules": rules, "totals": totals, "audit_spool": spool_status(store)}


def spool_status(store: Store) -> dict:
    if store.spool is None:
        return {"directory": None, "rows_waiting": 0, "files": 0, "rows_waiting_for_other_databases": 0}
    return store.spool.status()


def format_spool(spool: dict) -> str:
    if not spool["rows_waiting"] and not spool["rows_waiting_for_other_databases"]:
        return "audit spool: no issued-card rows waiting for the database\n"
    line = (
        f"audit spool: {spool['rows_waiting']} issued-card row(s) waiting for the database in "
        f"{spool['directory']} (not counted above; written by the service once the database takes them)"
    )
    if spool["rows_waiting_for_other_databases"]:
        line += f"; {spool['rows_waiting_for_other_databases']} row(s) there belong to another database URL or schema"
    return line + "\n"


def format_text(report: dict) -> str:
    rules = report["rules"]
    spool = format_spool(report["audit_spool"]) if "audit_spool" in report else ""
    if not rules:
        return "no cards issued and no feedback recorded yet\n" + spool
    width = max(len("rule"), *(len(r["rule"]) for r in rules))
    lines = [
        f"{'rule':<{width}}  {'issued':>7}  {'accepted':>8}  {'overridden':>10}  top override reasons",
        "-" * (width + 60),
    ]
    for r in rules:
        reasons = ", ".join(f"{x['display'] or x['code']} ({x['count']})" for x in r["top_override_reasons"])
        lines.append(f"{r['rule']:<{width}}  {r['issued']:>7}  {r['accepted']:>8}  {r['overridden']:>10}  {reasons}")
    t = report["totals"]
    lines.append("-" * (width + 60))
    lines.append(f"{'total':<{width}}  {t['issued']:>7}  {t['accepted']:>8}  {t['overridden']:>10}")
    return "\n".join(lines) + "\n" + spool


def main(args, settings: Settings | None = None, out=None) -> int:
    settings = settings or Settings.from_env()
    out = out or sys.stdout
    store = Store.from_settings(settings)
    try:
        report = build_report(store)
    except SQLAlchemyError as exc:
        waiting = format_spool(spool_status(store)).rstrip()
        raise SystemExit(
            f"cannot read the database named by JAK_CDS_DATABASE_URL ({type(exc).__name__}); "
            f"is it running and reachable? ({waiting})"
        ) from None
    finally:
        store.dispose()
    if getattr(args, "json", False):
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(format_text(report))
    return 0
