"""The store: issued cards (the audit), feedback, the JWT replay check, report queries.

Privacy: the patient id is stored only as an HMAC-SHA256 under ``JAK_CDS_PATIENT_HASH_KEY`` (or a random key
generated once and kept in the database, so hashes stay stable across restarts). No token and no raw patient
id is ever written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cds_service.store import connection, reports
from cds_service.store.audit import AuditQueue
from cds_service.store.health import (
    RETRY_AFTER_S,
    DatabaseHealth,
    StoreUnavailable,
    db_error_kind,
)
from cds_service.store.jti import ReplayIds
from cds_service.store.schema import (
    MAX_COMMENT,
    MIGRATIONS,
    SCHEMA_VERSION,
    FeedbackRow,
    aware,
    feedback,
    issued_card,
    meta,
    metadata,
    schema_version,
    utcnow,
)
from cds_service.store.spool import AuditSpool

log = logging.getLogger(__name__)


class Store:
    """One per process; the SQLAlchemy engine is created lazily and again after a fork.

    What a database outage does here (see ``DatabaseHealth``, ``AuditQueue``, ``AuditSpool``): issued-card
    rows are spooled to local files and written later, exactly once; feedback raises ``StoreUnavailable``
    (503); the replay check keeps token ids in memory (``jti_fallback="memory"``) or raises
    ``StoreUnavailable`` (``"refuse"``).
    """

    def __init__(
        self,
        url: str,
        patient_hash_key: str | None = None,
        schema: str | None = None,
        spool_dir: str | Path | None = None,
        jti_fallback: str = "memory",
    ):
        self.url = url
        self.schema = schema  # PostgreSQL schema (tests use a private one)
        self._configured_key = patient_hash_key
        self._key: bytes | None = None
        self._engine: Engine | None = None
        self._fast: tuple[Engine, Engine] | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._migrated = False
        self.audit_failures = 0
        self.health = DatabaseHealth()
        self.replay_ids = ReplayIds(lambda: self.fast_engine, self.is_sqlite, self.health, jti_fallback)
        spool_dir = spool_dir if spool_dir is not None else connection.default_spool_dir(url)
        self.spool = AuditSpool(spool_dir, connection.database_key(url, schema)) if spool_dir else None
        self.audit = AuditQueue(
            self.write_issued,
            self._audit_failed,
            spool=self.spool,
            health=self.health,
            prepare=self._hash_rows,
            background=self.replay_ids.write_back,
            background_pending=self.replay_ids.pending,
        )
        self.replay_ids.wake = self.audit.wake

    @classmethod
    def from_settings(cls, settings) -> Store:
        return cls(
            settings.database_url,
            settings.patient_hash_key,
            spool_dir=getattr(settings, "audit_spool", None),
            jti_fallback=getattr(settings, "jti_fallback", "memory"),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    # --- connection -----------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        engine = self._raw_engine()
        if not self._migrated:
            self.migrate()
        return engine

    @property
    def fast_engine(self) -> Engine:
        """The engine for the request path and the audit writer: on SQLite, a short busy timeout."""
        engine = self.engine
        fast = self._fast
        if fast is None or fast[0] is not engine:
            fast = self._fast = (engine, engine.execution_options(jak_busy_ms=connection.REQUEST_BUSY_MS))
        return fast[1]

    def _raw_engine(self) -> Engine:
        """This process's engine, without migrating (``migrate`` itself uses it)."""
        pid = os.getpid()
        if self._engine is None or self._pid != pid:
            with self._lock:
                if self._engine is None or self._pid != pid:
                    self._engine = connection.make_engine(
                        self.url, self.schema
                    )  # a forked worker must not share its parent's sockets
                    self._pid = pid
        return self._engine

    def dispose(self) -> None:
        """Close the connections; audit rows already handed to the background writer are written (or
        spooled) first (a caller that disposes and then removes the database would otherwise lose them)."""
        self.flush()
        if self.spool is not None:
            self.spool.close()
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None
        self._fast = None

    # --- migrations -----------------------------------------------------------------------------
    @property
    def migrated(self) -> bool:
        """Has this process (or the server's master before it forked) migrated the schema?"""
        return self._migrated

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version. Safe to call from many processes.

        The patient hash key is read here too (generated on first use), so that a server, which migrates
        before it forks its workers, never needs the database to hash a patient id: its audit rows can
        go to the spool in a database outage."""
        engine = self._raw_engine()
        with self._lock:
            if self._migrated:
                return SCHEMA_VERSION
            with engine.begin() as conn:
                self._unbounded(conn)
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
                raise SystemExit(
                    f"the database schema is version {current}, newer than this service "
                    f"({SCHEMA_VERSION}); upgrade the service"
                )
            self._migrated = True
        self._hash_key()
        self._start_up_spool()
        return current

    def _start_up_spool(self) -> None:
        """At start-up (``serve`` migrates once, before forking): say if the spool directory cannot take
        rows, and write what an earlier run left there (an outage that outlasted it)."""
        if self.spool is None:
            return
        try:
            self.spool.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = self.spool.directory / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            log.warning(
                "audit spool %s is not writable (%s): during a database outage the audit rows would "
                "be kept in memory only (JAK_CDS_AUDIT_SPOOL)",
                self.spool.directory,
                type(exc).__name__,
            )
            return
        if not self.spool.files():
            return
        try:
            replayed, _ = self.spool.replay(self.write_issued, 10**9)
        except SQLAlchemyError as exc:
            log.error("audit spool: rows left by an earlier run could not be written yet (%s)", db_error_kind(exc))
            return
        if replayed:
            log.warning("audit: %d row(s) left in the local spool by an earlier run written to the database", replayed)

    def _unbounded(self, conn: Connection) -> None:
        """Lift PostgreSQL's per-statement limit for this transaction (migrations wait for each other's
        lock; a report reads every row)."""
        if not self.is_sqlite:
            conn.execute(text("SET LOCAL statement_timeout = 0"))

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
                    pass  # another worker won the race; use its key
                row = conn.execute(select(meta.c.value).where(meta.c.key == "patient_hash_key")).first()
        if row is None:  # neither written nor readable: say so, not TypeError
            raise StoreUnavailable("the audit database holds no patient hash key and none could be stored")
        return row[0].encode()

    def patient_hash(self, patient_id: str) -> str:
        return hmac.new(self._hash_key(), patient_id.encode(), hashlib.sha256).hexdigest()

    def _hash_rows(self, rows: list[dict]) -> None:
        """The audit writer's step for rows made before this process knew the hash key: all or none."""
        hashes = [self.patient_hash(r["patient_id"]) for r in rows]
        for row, value in zip(rows, hashes, strict=True):
            row["patient_hash"] = value
            del row["patient_id"]

    # --- writes ---------------------------------------------------------------------------------
    def record_issued(
        self,
        service_id: str,
        hook_instance: str,
        patient_id: str,
        cards: list[tuple[str, str]],
        knowledge_version: str,
        wait: bool = True,
        language: str = "en",
    ) -> None:
        """Record the cards of one hook call. Never raises for a database failure and never loses the
        rows to one: the clinician gets the cards, and rows the database does not take now are written
        later (``AuditQueue``, ``AuditSpool``).

        ``wait=False`` (hook calls) hands the rows to the background writer and touches no database: the
        patient id is hashed now when the key is known (it is after ``migrate``), else by the writer.
        """
        if not cards:
            return
        now = utcnow()
        known = self._key is not None or bool(self._configured_key)
        patient = {"patient_hash": self.patient_hash(patient_id)} if known else {"patient_id": patient_id}
        rows = [
            dict(
                card_uuid=str(card)[:64],
                service_id=service_id[:128],
                rule_id=str(rule)[:200],
                knowledge_version=str(knowledge_version)[:128],
                hook_instance=str(hook_instance)[:200],
                language=str(language)[:16],
                issued_at=now,
                **patient,
            )
            for card, rule in cards
        ]
        if not wait:
            self.audit.put(rows)
            return
        try:
            if not known:
                self._hash_rows(rows)
            self.write_issued(rows)
        except SQLAlchemyError as exc:
            self.health.failed(exc)
            self.audit.put(rows)  # the writer spools them and writes them once the database is back

    def write_issued(self, rows: list[dict]) -> None:
        """One transaction; a card already recorded (the same uuid: a batch retried after a commit whose
        answer was lost, or a spool file replayed twice) is skipped, so each card has exactly one row."""
        dialect = sqlite_dialect if self.is_sqlite else pg_dialect
        statement = dialect.insert(issued_card).on_conflict_do_nothing(index_elements=["card_uuid"])
        with self.fast_engine.begin() as conn:
            conn.execute(statement, rows)

    def _audit_failed(self, calls: int, exc: Exception | None) -> None:
        self.audit_failures += calls
        log.error(
            "audit rows of %d hook call(s) LOST: neither the database nor the local spool takes rows "
            "and %d calls already wait in memory (%s)",
            calls,
            AuditQueue.MAX_PENDING_CALLS,
            db_error_kind(exc),
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for the background audit writer (see ``AuditQueue``)."""
        return self.audit.flush(timeout)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every audit row and replay id this process holds, and this database's spool, is in
        the database (tests, and whoever wants to know the outage is over)."""
        return self.audit.drain(timeout)

    def audit_status(self) -> dict:
        """Counters of this process's audit writer and what waits in the spool (``jak-cds report``)."""
        status: dict[str, object] = dict(self.audit.stats)
        status["waiting_in_memory"] = self.audit.waiting() - (
            self.spool.status()["rows_waiting"] if self.spool is not None else 0
        )
        status["spool"] = self.spool.status() if self.spool is not None else None
        return status

    def record_feedback(self, service_id: str, items: list[FeedbackRow]) -> int:
        """Store feedback in one transaction, or raise ``StoreUnavailable``: never acknowledged unstored."""
        now = utcnow()
        rows = [
            dict(
                card_uuid=i.card_uuid,
                service_id=service_id[:128],
                outcome=i.outcome,
                accepted_suggestions=json.dumps(i.accepted_suggestions) if i.accepted_suggestions else None,
                override_system=(i.override_system or None) and i.override_system[:300],
                override_code=(i.override_code or None) and i.override_code[:200],
                override_display=(i.override_display or None) and i.override_display[:300],
                user_comment=(i.user_comment or None) and i.user_comment[:MAX_COMMENT],
                outcome_timestamp=aware(i.outcome_timestamp),
                received_at=now,
            )
            for i in items
        ]
        if not rows:
            return 0
        if not self.health.should_try():
            raise StoreUnavailable("the database is unavailable", RETRY_AFTER_S)
        started = time.monotonic()
        try:
            with self.fast_engine.begin() as conn:
                conn.execute(feedback.insert(), rows)
        except SQLAlchemyError as exc:
            self.health.failed(exc, took=time.monotonic() - started)
            raise StoreUnavailable(f"the database is unavailable ({db_error_kind(exc)})", RETRY_AFTER_S) from exc
        self.health.ok()
        return len(rows)

    def remember_jti(self, iss: str, jti: str, exp: datetime | None) -> bool:
        """Record a token id; False if it was seen before (a replay): ``ReplayIds.remember``."""
        return self.replay_ids.remember(iss, jti, exp)

    # --- reads (the queries: store/reports.py) ---------------------------------------------------
    def count(self, table_name: str) -> int:
        self.flush()
        with self.engine.connect() as conn:
            return reports.count(conn, table_name)

    def issued(self) -> list[dict]:
        self.flush()
        with self.engine.connect() as conn:
            return reports.issued(conn)

    def feedback_rows(self) -> list[dict]:
        self.flush()
        with self.engine.connect() as conn:
            return reports.feedback_rows(conn)

    def rule_report(self, top_reasons: int = 3) -> list[dict]:
        self.flush()
        with self.engine.connect() as conn:
            self._unbounded(conn)
            return reports.rule_report(conn, top_reasons)
