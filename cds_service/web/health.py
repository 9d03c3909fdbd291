"""``GET /healthz`` and ``GET /readyz``: what an orchestrator (Kubernetes, Docker, a load balancer) asks.

- ``/healthz`` (liveness): the process answers. No dependency is consulted, so a database outage never gets a
  replica restarted. Always 200.
- ``/readyz`` (readiness): may this replica be given hook calls? 200 when the knowledge is loaded and
  validated, the database reachable and migrated, and the audit writer can record what is answered; 503 with
  a JSON body naming the failing part otherwise.

Readiness through a database outage (docs/reliability.md): a replica whose schema was migrated keeps answering
hook calls with cards while the database is away, and its audit rows go to the local spool
(``store/spool.py``) and reach the database once it is back. Taking every replica out of the Service then
would withhold cards for nothing, so such a replica stays Ready, the body saying
``"degraded: database unreachable, audit spooled"``. It is 503 when the spool does not take rows either
(audit rows would pile up in memory), and before the first successful migration (the patient-hash key and
the schema are not known yet: ``jak-cds serve`` starts anyway and ``/readyz`` keeps trying to migrate).

Both answer without a token (an orchestrator has none), are not audited and not counted as hook calls, log
nothing, and hold no patient data. ``/readyz`` is cheap: the database is asked (``SELECT 1``, or the
migration while it is missing) at most once per ``CHECK_EVERY_S`` per process; in between the last answer
stands, and a call that finds a check in progress does not wait for it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, json
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cds_service.store.health import db_error_kind

bp = Blueprint("health", __name__)
PATHS = ("/healthz", "/readyz")
CHECK_EVERY_S = 2.0
DEGRADED = "degraded: database unreachable, audit spooled"
_HEADERS = {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz():
    return Response('{"status":"alive"}', mimetype="application/json", headers=_HEADERS)


@bp.get("/readyz")
def readyz():
    ready, body = readiness(current_app)
    return Response(json.dumps(body), status=200 if ready else 503, mimetype="application/json", headers=_HEADERS)


@dataclass
class _Check:
    at: float = float("-inf")
    ok: bool = False
    detail: str = "not checked yet"


class DatabaseCheck:
    """What this process last found of its database; asks it again at most every ``CHECK_EVERY_S``."""

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._last = _Check()
        self._pid = os.getpid()

    def state(self) -> _Check:
        if self._pid != os.getpid():  # a forked worker: its own view, its own lock
            self._pid, self._lock, self._last = os.getpid(), threading.Lock(), _Check()
        now = time.monotonic()
        if now - self._last.at < CHECK_EVERY_S or not self._lock.acquire(blocking=False):
            return self._last
        try:
            self._last = self._check()
            return self._last
        finally:
            self._lock.release()

    def _check(self) -> _Check:
        store = self.store
        started = time.monotonic()
        try:
            if not store.migrated:
                version = store.migrate()
                return _Check(time.monotonic(), True, f"reachable, migrated (schema version {version})")
            health = store.health
            down_since = health.down_since
            if down_since is not None and not health.should_try():
                return _Check(time.monotonic(), False, f"unreachable for {time.monotonic() - down_since:.0f} s")
            with store.fast_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            health.ok()
            return _Check(time.monotonic(), True, "reachable, migrated")
        except SQLAlchemyError as exc:
            if store.migrated:
                store.health.failed(exc, time.monotonic() - started)
                return _Check(time.monotonic(), False, f"unreachable ({db_error_kind(exc)})")
            return _Check(time.monotonic(), False, f"unreachable, not migrated yet ({db_error_kind(exc)})")


def _database_check(app) -> DatabaseCheck:
    check = app.extensions.get("jak_db_check")
    if check is None:
        check = app.extensions["jak_db_check"] = DatabaseCheck(app.extensions["jak_store"])
    return check


def readiness(app) -> tuple[bool, dict]:
    """(ready, body): each part with ``ok`` and a ``detail``; ``failing`` names the parts that are not."""
    checks: dict[str, dict] = {}
    engine = app.extensions.get("jak_engine")
    if engine is None:
        checks["knowledge"] = {"ok": False, "detail": "not loaded"}
    else:
        checks["knowledge"] = {
            "ok": True,
            "detail": f"loaded and validated (version {engine.knowledge.version}, {len(engine.services)} services)",
        }
    store = app.extensions["jak_store"]
    database = _database_check(app).state()
    checks["database"] = {"ok": database.ok, "detail": database.detail}
    audit = store.audit.writer_state()
    spool_ok = store.spool is not None and not audit["spool_failing"] and os.access(store.spool.directory, os.W_OK)
    checks["audit"] = {
        "ok": audit["writer"] != "stopped",
        "detail": f"writer {audit['writer']}",
        "spool": "writable" if spool_ok else "not writable",
    }
    tolerated = set()
    if not database.ok and store.migrated:
        # a migrated replica through an outage: cards flow, the audit goes to the spool
        if spool_ok:
            tolerated.add("database")
        else:
            checks["audit"]["ok"] = False
            checks["audit"]["detail"] += "; the database is unreachable and the spool does not take rows"
    failing = [name for name, check in checks.items() if not check["ok"]]
    ready = not set(failing) - tolerated
    status = "not ready" if not ready else (DEGRADED if failing else "ready")
    return ready, {"status": status, "failing": failing, "checks": checks}


def install(app) -> None:
    """Register the routes (before authentication: ``PATHS`` need no token)."""
    app.register_blueprint(bp)
