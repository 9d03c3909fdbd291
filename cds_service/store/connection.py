"""Connecting to the database: SQLite (a file, WAL, busy timeouts) or PostgreSQL (``postgresql+psycopg://``).

SQLAlchemy 2 Core. A database that hangs instead of refusing must not hold a hook call: SQLite's busy timeout
is short on the request path and for the audit writer (``REQUEST_BUSY_MS``), PostgreSQL's statements and
connects are bounded (``PG_CONNECT_ARGS``). Also which database is which (``database_key``, for the spool)
and where the spool is when none is configured.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

MEMORY_SQLITE = ("sqlite://", "sqlite:///:memory:")
REQUEST_BUSY_MS = 1000  # SQLite: request path and audit writer wait at most this for a locked file
DEFAULT_BUSY_MS = 30000  # ... migrations, reports and other readers
# PostgreSQL: a database that hangs instead of refusing must not hold a hook call either. Every statement of
# the request path and the audit writer takes milliseconds; migrations and reports lift the limit
# (``_unbounded``).
PG_STATEMENT_TIMEOUT_MS = 3000
PG_CONNECT_ARGS = {
    "connect_timeout": 2,  # s: a server that does not answer the connection
    "tcp_user_timeout": 3000,  # ms: a connection whose packets go unacknowledged
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
}


def _enable_wal(cursor, patience_s: float = 30.0) -> None:
    """Switch a SQLite database to WAL. Several workers opening a new database at once race for the
    switch, and SQLite answers "database is locked" at once (its busy timeout does not cover this
    pragma): try again until ``patience_s``, as the busy timeout would for any other statement."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_engine(url: str, schema: str | None = None) -> Engine:
    """A new engine for ``url`` (in ``schema``, PostgreSQL): one per process (a forked worker makes its own)."""
    if url.startswith("sqlite"):
        extra: dict[str, Any] = {}
        if url in MEMORY_SQLITE:
            extra["poolclass"] = StaticPool  # one in-memory database shared by all threads
        engine = create_engine(
            url, connect_args={"timeout": DEFAULT_BUSY_MS / 1000, "check_same_thread": False}, **extra
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _begin)
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={DEFAULT_BUSY_MS}")
            _enable_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            record.info["jak_busy_ms"] = DEFAULT_BUSY_MS

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # the busy timeout of this transaction: short on the request path and for the audit writer
            # (a locked file is an outage for them, not a reason to hold a hook call), long otherwise
            busy = conn.get_execution_options().get("jak_busy_ms", DEFAULT_BUSY_MS)
            info = conn.connection.info
            if info.get("jak_busy_ms") != busy:
                conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout={int(busy)}")
                info["jak_busy_ms"] = busy
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks
    else:
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_timeout=5, connect_args=dict(PG_CONNECT_ARGS)
        )
    if schema:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def database_key(url: str, schema: str | None = None) -> str:
    """A short, stable name of one database (URL without password, and schema): the spool keeps the rows
    of different databases apart."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL fails later, where it is used
        shown = url
    return hashlib.sha256(f"{shown}|{schema or ''}".encode()).hexdigest()[:16]


def default_spool_dir(url: str) -> Path | None:
    """Where audit rows wait when ``JAK_CDS_AUDIT_SPOOL`` is unset: next to a SQLite file
    (``<name>-audit-spool``, so ``jak-cds-audit-spool`` for the default ``jak-cds.sqlite3``),
    ``./jak-cds-audit-spool`` for a server database; none for in-memory SQLite."""
    if url in MEMORY_SQLITE:
        return None
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001
        return Path.cwd() / "jak-cds-audit-spool"
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return Path(parsed.database).with_name(Path(parsed.database).stem + "-audit-spool")
    return Path.cwd() / "jak-cds-audit-spool"
