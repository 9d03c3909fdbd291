"""Persistent store: issued cards, feedback, JWT replay cache, report queries.

SQLAlchemy 2 Core over SQLite (default, a file; WAL and a busy timeout so
several gunicorn workers can write) or PostgreSQL (``postgresql+psycopg://``).

Privacy: the patient id is stored only as an HMAC-SHA256 under
``JAK_CDS_PATIENT_HASH_KEY`` (or a random key generated once and kept in the
database, so hashes stay stable across restarts). No token and no raw
patient id is ever written.

Schema changes are numbered migrations recorded in ``jak_schema_version``;
they run once, under a lock (PostgreSQL advisory lock, SQLite write lock),
so workers starting together do not race.
"""
from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, Text, bindparam, create_engine, event,
                        func, select, text)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

metadata = MetaData()

schema_version = Table(
    "jak_schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)
meta = Table(
    "jak_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
issued_card = Table(
    "jak_issued_card", metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(128), nullable=False),
    Column("rule_id", String(200), nullable=False, index=True),
    Column("knowledge_version", String(128), nullable=False),
    Column("hook_instance", String(200), nullable=False),
    Column("patient_hash", String(64), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)
feedback = Table(
    "jak_feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text, nullable=True),     # JSON list of suggestion uuids
    Column("override_system", String(300), nullable=True),
    Column("override_code", String(200), nullable=True),
    Column("override_display", String(300), nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_timestamp", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
seen_jti = Table(
    "jak_seen_jti", metadata,
    Column("iss", String(300), primary_key=True),
    Column("jti", String(300), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


def _migration_1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[meta, issued_card, feedback, seen_jti])


# Append only: never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, callable]] = [(1, _migration_1)]
SCHEMA_VERSION = MIGRATIONS[-1][0]
JTI_MIN_RETENTION = timedelta(hours=1)
JTI_PRUNE_INTERVAL_S = 60.0        # expired token ids are deleted at most this often per process
_INSERT_JTI = seen_jti.insert()
_PRUNE_JTI = seen_jti.delete().where(seen_jti.c.expires_at < bindparam("now"))
MAX_COMMENT = 2000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    """UTC, always: SQLite keeps no offset, so every stored instant is normalised first."""
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class FeedbackRow:
    card_uuid: str
    outcome: str
    outcome_timestamp: datetime
    accepted_suggestions: list[str] | None = None
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None


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


class AuditQueue:
    """Issued-card rows written by one background thread per process, many hook calls per transaction.

    A hook call hands its rows over in microseconds instead of waiting for a database transaction
    (about 0.3 ms on SQLite, a network round trip on PostgreSQL). Rows are written within a tenth
    of a second, all that is pending at exit is written first (``atexit``), and a failed write is
    counted and logged as a synchronous one was: only a crash (SIGKILL, power loss) can lose the
    rows of the last tenth of a second. Readers in the same process call ``flush`` first.

    The writer lingers ``LINGER_S`` after the first call of a batch, so that under load one
    transaction carries many calls and a hook call costs no thread wake-up of its own: waking the
    writer for every call cost about 1 ms of server CPU per request under load (`python -m bench`
    HTTP, 2 cores), mostly handing the interpreter lock back and forth. Each batch still costs a
    wake-up, a transaction and the lock handed to the writer and back around each database call:
    at 20 ms (4-5 calls per batch at ~200 calls/s per worker) that was 0.7-1.2 ms of server CPU per
    call in four of five alternating A/B runs (the same service with and without audit, same load;
    one showed no difference); at 100 ms, at most ten batches a second per process, it was 0.1 ms or
    less above no audit in three of the four runs that had it and 0.5 ms in the fourth (20 ms: 1.0).
    """

    MAX_PENDING_CALLS = 10_000          # a database that stays down must not grow memory without bound
    LINGER_S = 0.1                      # rows reach the database within this (plus the write itself)
    MAX_BATCH_CALLS = 500               # ... or as soon as this many calls wait

    def __init__(self, write_rows, on_failure):
        self._write_rows = write_rows   # list[dict] -> None, in one transaction
        self._on_failure = on_failure   # (calls lost, exception) -> None
        self._pid: int | None = None
        self._cond = threading.Condition()
        self._pending: list[list[dict]] = []
        self._busy = False
        self._urgent = False            # a reader (or the exit) waits: stop lingering
        self._thread: threading.Thread | None = None
        self._exit_hook = False

    def put(self, rows: list[dict]) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        with self._cond:
            if len(self._pending) >= self.MAX_PENDING_CALLS:
                self._on_failure(1, None)
                return
            self._pending.append(rows)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="jak-audit-writer", daemon=True)
                self._thread.start()
                if not self._exit_hook:
                    atexit.register(self.flush)
                    self._exit_hook = True
            if len(self._pending) == 1 or len(self._pending) >= self.MAX_BATCH_CALLS:
                self._cond.notify()     # the writer waits for a first call, or may stop lingering

    def _after_fork(self) -> None:
        """A forked worker starts with its own lock, no writer thread and nothing of its parent's pending."""
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending, self._busy, self._urgent, self._thread = [], False, False, None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                deadline = time.monotonic() + self.LINGER_S
                while not self._urgent and len(self._pending) < self.MAX_BATCH_CALLS:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                calls, self._pending, self._busy, self._urgent = self._pending, [], True, False
            try:
                self._write_rows([row for rows in calls for row in rows])
            except Exception as exc:  # noqa: BLE001 - a failed audit write must never stop the writer
                self._on_failure(len(calls), exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row handed over so far is written (or failed); False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._cond:
            if self._pending:
                self._urgent = True
                self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)


class Store:
    """One per process; the SQLAlchemy engine is created lazily and again after a fork."""

    def __init__(self, url: str, patient_hash_key: str | None = None, schema: str | None = None):
        self.url = url
        self.schema = schema                   # PostgreSQL schema (tests use a private one)
        self._configured_key = patient_hash_key
        self._key: bytes | None = None
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._migrated = False
        self.audit_failures = 0
        self._audit = AuditQueue(self._insert_issued, self._audit_failed)
        self.jti_prune_interval_s = JTI_PRUNE_INTERVAL_S
        self._next_jti_prune = 0.0             # time.monotonic() after which the next call prunes

    @classmethod
    def from_settings(cls, settings) -> "Store":
        return cls(settings.database_url, settings.patient_hash_key)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    # --- connection -----------------------------------------------------------------------------
    def _make_engine(self) -> Engine:
        if self.is_sqlite:
            extra = {}
            if self.url in ("sqlite://", "sqlite:///:memory:"):
                extra["poolclass"] = StaticPool          # one in-memory database shared by all threads
            engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False}, **extra)

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):
                dbapi_conn.isolation_level = None      # we issue BEGIN ourselves (see _begin)
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=30000")
                _enable_wal(cur)
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")   # take the write lock up front: no upgrade deadlocks
        else:
            engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        if self.schema:
            engine = engine.execution_options(schema_translate_map={None: self.schema})
        return engine

    @property
    def engine(self) -> Engine:
        engine = self._raw_engine()
        if not self._migrated:
            self.migrate()
        return engine

    def _raw_engine(self) -> Engine:
        """This process's engine, without migrating (``migrate`` itself uses it)."""
        pid = os.getpid()
        if self._engine is None or self._pid != pid:
            with self._lock:
                if self._engine is None or self._pid != pid:
                    self._engine = self._make_engine()   # a forked worker must not share its parent's sockets
                    self._pid = pid
        return self._engine

    def dispose(self) -> None:
        """Close the connections; audit rows already handed to the background writer are written first
        (a caller that disposes and then removes the database would otherwise lose them at exit)."""
        self.flush()
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None

    # --- migrations -----------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version. Safe to call from many processes."""
        engine = self._raw_engine()
        with self._lock:
            if self._migrated:
                return SCHEMA_VERSION
            with engine.begin() as conn:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(74221001)"))
                    if self.schema:
                        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                metadata.create_all(conn, tables=[schema_version])
                done = {row[0] for row in conn.execute(select(schema_version.c.version))}
                for version, apply in MIGRATIONS:
                    if version in done:
                        continue
                    apply(conn)
                    conn.execute(schema_version.insert().values(version=version, applied_at=utcnow()))
                    log.info("database schema migrated to version %d", version)
                current = max(done | {v for v, _ in MIGRATIONS})
            if current > SCHEMA_VERSION:
                raise SystemExit(f"the database schema is version {current}, newer than this service "
                                 f"({SCHEMA_VERSION}); upgrade the service")
            self._migrated = True
            return current

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(schema_version.c.version))).scalar_one()

    # --- patient hashing ------------------------------------------------------------------------
    def _hash_key(self) -> bytes:
        if self._key is None:
            if self._configured_key:
                self._key = self._configured_key.encode()
            else:
                self._key = self._stored_key()
        return self._key

    def _stored_key(self) -> bytes:
        with self.engine.begin() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == "patient_hash_key")).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(meta.insert().values(key="patient_hash_key", value=secrets.token_hex(32)))
                except IntegrityError:
                    pass                                  # another worker won the race; use its key
                row = conn.execute(select(meta.c.value).where(meta.c.key == "patient_hash_key")).first()
        return row[0].encode()

    def patient_hash(self, patient_id: str) -> str:
        return hmac.new(self._hash_key(), patient_id.encode(), hashlib.sha256).hexdigest()

    # --- writes ---------------------------------------------------------------------------------
    def record_issued(self, service_id: str, hook_instance: str, patient_id: str,
                      cards: list[tuple[str, str]], knowledge_version: str, wait: bool = True) -> None:
        """Record the cards of one hook call. A database failure is logged, not raised: the
        clinician gets the cards even when the audit cannot be written (``audit_failures`` counts it).

        ``wait=False`` (hook calls) hands the rows to the background writer (``AuditQueue``).
        """
        if not cards:
            return
        try:
            patient = self.patient_hash(patient_id)
        except SQLAlchemyError as exc:          # the stored hash key could not be read
            self._audit_failed(1, exc)
            return
        now = utcnow()
        rows = [dict(card_uuid=str(card)[:64], service_id=service_id[:128], rule_id=str(rule)[:200],
                     knowledge_version=str(knowledge_version)[:128], hook_instance=str(hook_instance)[:200],
                     patient_hash=patient, issued_at=now) for card, rule in cards]
        if not wait:
            self._audit.put(rows)
            return
        try:
            self._insert_issued(rows)
        except SQLAlchemyError as exc:
            self._audit_failed(1, exc)

    def _insert_issued(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(issued_card.insert(), rows)

    def _audit_failed(self, calls: int, exc: Exception | None) -> None:
        self.audit_failures += calls
        why = type(exc).__name__ if exc is not None else "too many rows waiting for the database"
        log.error("could not record the issued cards of %d hook call(s): %s", calls, why)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for the background audit writer (see ``AuditQueue``)."""
        return self._audit.flush(timeout)

    def record_feedback(self, service_id: str, items: list[FeedbackRow]) -> int:
        now = utcnow()
        rows = [dict(card_uuid=i.card_uuid, service_id=service_id[:128], outcome=i.outcome,
                     accepted_suggestions=json.dumps(i.accepted_suggestions) if i.accepted_suggestions else None,
                     override_system=(i.override_system or None) and i.override_system[:300],
                     override_code=(i.override_code or None) and i.override_code[:200],
                     override_display=(i.override_display or None) and i.override_display[:300],
                     user_comment=(i.user_comment or None) and i.user_comment[:MAX_COMMENT],
                     outcome_timestamp=_aware(i.outcome_timestamp), received_at=now) for i in items]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(feedback.insert(), rows)
        return len(rows)

    def remember_jti(self, iss: str, jti: str, exp: datetime | None) -> bool:
        """Record a token id; False if it was seen before (a replay). Kept at least one hour.

        Every authenticated hook call comes here, so it is one INSERT in its own transaction: the primary
        key (iss, jti) refuses a second use in any worker. Expired ids are deleted in the same transaction
        at most every ``jti_prune_interval_s`` per process (a delete and a savepoint on every call cost
        as much again as the insert).
        """
        now = utcnow()
        keep_until = max(filter(None, [_aware(exp) if exp else None, now + JTI_MIN_RETENTION]))
        prune = time.monotonic() >= self._next_jti_prune
        try:
            with self.engine.begin() as conn:
                if prune:
                    conn.execute(_PRUNE_JTI, {"now": now})
                conn.execute(_INSERT_JTI, {"iss": iss[:300], "jti": jti[:300], "expires_at": keep_until})
        except IntegrityError:
            return False                                  # a replay (the prune, if any, is retried next call)
        if prune:
            self._next_jti_prune = time.monotonic() + self.jti_prune_interval_s
        return True

    # --- reads ----------------------------------------------------------------------------------
    def count(self, table_name: str) -> int:
        self.flush()
        table = metadata.tables[table_name]
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    def issued(self) -> list[dict]:
        self.flush()
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(issued_card).order_by(issued_card.c.issued_at))]

    def feedback_rows(self) -> list[dict]:
        self.flush()
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(feedback).order_by(feedback.c.id))]

    def rule_report(self, top_reasons: int = 3) -> list[dict]:
        """Per rule: cards issued, cards accepted/overridden (distinct cards), top override reasons."""
        report: dict[str, dict] = {}

        def entry(rule: str) -> dict:
            return report.setdefault(rule, {"rule": rule, "issued": 0, "accepted": 0, "overridden": 0,
                                            "top_override_reasons": []})

        self.flush()
        rule_of_feedback = func.coalesce(issued_card.c.rule_id, "(unknown card)")
        joined = feedback.outerjoin(issued_card, issued_card.c.card_uuid == feedback.c.card_uuid)
        with self.engine.connect() as conn:
            for rule, n in conn.execute(select(issued_card.c.rule_id, func.count())
                                        .group_by(issued_card.c.rule_id)):
                entry(rule)["issued"] = n
            for rule, outcome, n in conn.execute(
                    select(rule_of_feedback, feedback.c.outcome, func.count(func.distinct(feedback.c.card_uuid)))
                    .select_from(joined).group_by(rule_of_feedback, feedback.c.outcome)):
                if outcome in ("accepted", "overridden"):
                    entry(rule)[outcome] = n
            reasons = conn.execute(
                select(rule_of_feedback, feedback.c.override_system, feedback.c.override_code,
                       func.max(feedback.c.override_display), func.count())
                .select_from(joined)
                .where(feedback.c.outcome == "overridden", feedback.c.override_code.is_not(None))
                .group_by(rule_of_feedback, feedback.c.override_system, feedback.c.override_code))
            by_rule: dict[str, list] = {}
            for rule, system, code, display, n in reasons:
                by_rule.setdefault(rule, []).append({"system": system, "code": code, "display": display, "count": n})
        for rule, items in by_rule.items():
            items.sort(key=lambda r: (-r["count"], r["code"]))
            entry(rule)["top_override_reasons"] = items[:top_reasons]
        return sorted(report.values(), key=lambda r: (-r["issued"], r["rule"]))
