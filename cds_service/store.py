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
import fcntl
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
from pathlib import Path

from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, Text, bindparam, create_engine, event,
                        func, select, text)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url
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


class StoreUnavailable(Exception):
    """The database cannot be used just now; the request is answered 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


RETRY_AFTER_S = 2                  # what a 503 asks the EHR to wait


def db_error_kind(exc: BaseException | None) -> str:
    """The kind of a database failure, for the log: the exception type and its driver's (no values)."""
    if exc is None:
        return "unknown"
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}({type(orig).__name__})" if orig is not None else type(exc).__name__


class DatabaseHealth:
    """What this process last saw of its database, shared by the request path and the audit writer.

    After a failure, request-path work (the replay check, feedback) does not wait on the database
    again for a probe interval: one call in that interval tries it (a probe), the others take their
    outage path at once (memory for the replay check, 503 for feedback). The interval is
    ``PROBE_MIN_S`` while probes fail fast (a refused connection costs a millisecond); a probe that
    took ``SLOW_PROBE_S`` or more (a database that hangs until a timeout) doubles it, up to
    ``PROBE_MAX_S``, so that few hook calls wait for a timeout. The audit writer probes too, in the
    background (``AuditQueue.RETRY_MAX_S``). Any success ends the outage and wakes the writer, which
    then writes back what was kept locally."""

    PROBE_MIN_S = 0.5
    PROBE_MAX_S = 5.0
    SLOW_PROBE_S = 0.2

    def __init__(self):
        self._lock = threading.Lock()
        self.down_since: float | None = None          # time.monotonic() of the first failure
        self._probe_at = 0.0
        self._interval = self.PROBE_MIN_S
        self.outages = 0
        self.listeners: list = []                     # called (no arguments) when the database is back

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def should_try(self) -> bool:
        if self.down_since is None:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._probe_at:
                return False
            self._probe_at = now + self._interval    # this caller probes; the others do not wait on it
            return True

    def failed(self, exc: BaseException | None, took: float | None = None) -> None:
        """A database call failed; ``took``: the seconds a request-path attempt waited (the writer's
        failures give none and leave the request probes' interval alone)."""
        with self._lock:
            now = time.monotonic()
            if self.down_since is not None:
                if took is not None:
                    slow = took >= self.SLOW_PROBE_S
                    self._interval = min(self._interval * 2, self.PROBE_MAX_S) if slow else self.PROBE_MIN_S
                    self._probe_at = now + self._interval
                return
            self.down_since = now
            self._interval = self.PROBE_MIN_S
            self._probe_at = now + self._interval
            self.outages += 1
        log.error("database unavailable (%s): cards are still answered, their audit rows are kept locally "
                  "until it is back", db_error_kind(exc))

    def ok(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            down_for = time.monotonic() - self.down_since
            self.down_since = None
        log.warning("database available again after %.1f s", down_for)
        for listener in list(self.listeners):
            listener()


SPOOL_FIELDS = ("card_uuid", "service_id", "rule_id", "knowledge_version", "hook_instance", "patient_hash",
                "issued_at")


def _encode_row(row: dict) -> bytes:
    if row.get("patient_hash") is None:
        raise ValueError("an audit row is spooled only with its patient hash, never the patient id")
    out = {k: row[k] for k in SPOOL_FIELDS}
    out["issued_at"] = _aware(row["issued_at"]).isoformat()
    return json.dumps(out, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def _decode_row(line: bytes) -> dict:
    data = json.loads(line)
    row = {k: data[k] for k in SPOOL_FIELDS}
    if not all(isinstance(row[k], str) for k in SPOOL_FIELDS):
        raise ValueError("not an audit row")
    row["issued_at"] = _aware(datetime.fromisoformat(row["issued_at"]))
    return row


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditSpool:
    """Audit rows the database did not take, kept in local append-only files until it does.

    A process appends to one file of its own at a time (``audit-<database key>-<pid>-<random>.jsonl``,
    one JSON row per line, mode 0600) and holds an exclusive ``flock`` on it while it does; every batch
    is one ``write`` followed by ``fsync``. ``replay`` takes every file of this database it can lock:
    its own (closed first), or one left by a process that died (the kernel released its lock), inserts
    the rows (the card uuid is the primary key and a row already there is skipped, so a file replayed
    twice, e.g. after a crash between the commit and the unlink, adds nothing) and deletes the file.
    The database key (a hash of the URL without password, and schema) keeps two databases' rows apart.
    Rows hold the keyed patient hash, never the patient id (``_encode_row`` refuses).
    """

    MAX_FILE_ROWS = 5_000              # a new file after this many rows: replay reads a file at once

    def __init__(self, directory: str | Path, db_key: str):
        self.directory = Path(directory)
        self.db_key = db_key
        self._fd: int | None = None
        self._rows_in_file = 0
        self._pid = os.getpid()
        self._lock = threading.RLock()     # the current file is appended, closed and replayed by one thread at a time

    @property
    def pattern(self) -> str:
        return f"audit-{self.db_key}-*.jsonl"

    def _forked(self) -> None:
        if self._pid != os.getpid():       # the parent's file and lock are not this process's
            self._fd, self._rows_in_file, self._pid = None, 0, os.getpid()
            self._lock = threading.RLock()

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"audit-{self.db_key}-{os.getpid()}-{secrets.token_hex(4)}"
        temporary, final = self.directory / f"{name}.new", self.directory / f"{name}.jsonl"
        fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)          # locked before any replayer can see it (renamed after)
            os.rename(temporary, final)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def append(self, rows: list[dict]) -> None:
        """Append ``rows`` durably (write + fsync); OSError when the disk does not take them."""
        if not rows:
            return
        self._forked()
        data = b"".join(_encode_row(r) for r in rows)
        with self._lock:
            if self._fd is None or self._rows_in_file >= self.MAX_FILE_ROWS:
                self.close()
                self._fd = self._open()
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
            except OSError:
                self.close()         # a torn line ends this file: the next batch starts a new one
                raise
            self._rows_in_file += len(rows)

    def close(self) -> None:
        """Stop appending to the current file (releases its lock, so it can be replayed)."""
        self._forked()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd, self._rows_in_file = None, 0

    def files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob(self.pattern))
        except OSError:
            return []

    def replay(self, write_rows, budget_rows: int) -> tuple[int, bool]:
        """Write the rows of every file this process can lock, oldest name first, until ``budget_rows``;
        (rows replayed, whether files were left for lack of budget). Database errors propagate and the
        file stays."""
        with self._lock:
            return self._replay(write_rows, budget_rows)

    def _replay(self, write_rows, budget_rows: int) -> tuple[int, bool]:
        self.close()
        replayed = 0
        for path in self.files():
            if replayed >= budget_rows:
                return replayed, True
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue                                       # another process replayed it just now
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue                                   # its process is alive and still appending
                if os.fstat(fd).st_nlink == 0:
                    continue                                   # replayed and removed while we waited
                rows, torn = self._read(fd)
                if torn:
                    log.error("audit spool %s: %d unreadable line(s) skipped (a write cut short by a crash)",
                              path.name, torn)
                for start in range(0, len(rows), 1000):
                    write_rows(rows[start:start + 1000])
                path.unlink()
                _fsync_dir(self.directory)
                replayed += len(rows)
            finally:
                os.close(fd)
        return replayed, False

    @staticmethod
    def _read(fd: int) -> tuple[list[dict], int]:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        rows, torn = [], 0
        for line in b"".join(chunks).split(b"\n"):
            if not line.strip():
                continue
            try:
                rows.append(_decode_row(line))
            except (ValueError, KeyError, TypeError):
                torn += 1
        return rows, torn

    def status(self) -> dict:
        """Rows waiting in this directory: for this database, and for others (another URL or schema)."""
        mine = others = files = 0
        try:
            entries = list(self.directory.glob("audit-*.jsonl"))
        except OSError:
            entries = []
        for path in entries:
            try:
                count = path.read_bytes().count(b"\n")
            except OSError:
                continue
            files += 1
            if path.name.startswith(f"audit-{self.db_key}-"):
                mine += count
            else:
                others += count
        return {"directory": str(self.directory), "rows_waiting": mine, "files": files,
                "rows_waiting_for_other_databases": others}


class AuditQueue:
    """Issued-card rows written by one background thread per process, many hook calls per transaction,
    and never lost to a database outage.

    A hook call hands its rows over in microseconds instead of waiting for a database transaction
    (about 0.3 ms on SQLite, a network round trip on PostgreSQL). The writer lingers ``LINGER_S`` after
    the first call of a batch, so that under load one transaction carries many calls and a hook call
    costs no thread wake-up of its own: waking the writer for every call cost about 1 ms of server CPU
    per request under load (`python -m bench` HTTP, 2 cores), mostly handing the interpreter lock back
    and forth. At 20 ms that was 0.7-1.2 ms of server CPU per call in four of five alternating A/B
    runs; at 100 ms, at most ten batches a second per process, 0.1 ms or less above no audit in three
    of the four runs that had it and 0.5 ms in the fourth (20 ms: 1.0).

    When a batch cannot be written (the database is down, locked, unreachable) it is appended to the
    spool (``AuditSpool``: fsync per batch) at once, and the database is tried again with back-off
    (``RETRY_MIN_S`` doubling to ``RETRY_MAX_S``; at once when a hook call finds it back). While it is
    known to be down, batches go straight to the spool. Once a write succeeds, the spool is replayed
    (``REPLAY_BUDGET_ROWS`` per turn, so new rows are not held up) and the replay ids kept in memory are
    written back (``background``). Only when neither the database nor the spool takes rows do they stay
    in memory (``held``, at most ``MAX_PENDING_CALLS`` calls; beyond that the oldest are counted lost).

    So a crash (SIGKILL, power loss) loses at most the batch in hand: calls answered in the last
    ``LINGER_S`` plus those answered while its write attempt lasts. That is milliseconds when the
    database is up or refuses connections (a restart, a crash); a database that makes the attempt wait
    bounds it by its timeout: a locked SQLite file ``REQUEST_BUSY_MS`` (1 s), a PostgreSQL server that
    does not answer 2 s to connect or ``PG_STATEMENT_TIMEOUT_MS`` (3 s) per statement. All pending rows
    are written or spooled at exit (``atexit``). Readers in the same process call ``flush`` first.
    """

    MAX_PENDING_CALLS = 10_000          # calls held in memory when neither the database nor the spool takes them
    LINGER_S = 0.1                      # rows reach the database within this (plus the write itself)
    MAX_BATCH_CALLS = 500               # ... or as soon as this many calls wait
    RETRY_MIN_S = 0.25                  # back-off after a failed write: 0.25, 0.5, 1, 1 ... s
    RETRY_MAX_S = 1.0
    SPOOL_SCAN_S = 5.0                  # idle: look for spool files left by processes that died
    REPLAY_BUDGET_ROWS = 20_000         # spooled rows replayed per turn

    def __init__(self, write_rows, on_lost, spool: AuditSpool | None = None, health: DatabaseHealth | None = None,
                 prepare=None, background=None, background_pending=None):
        self._write_rows = write_rows   # list[dict] -> None, one transaction; a row already there is skipped
        self._on_lost = on_lost         # (calls lost, exception or None) -> None
        self._spool = spool
        self._health = health or DatabaseHealth()
        self._prepare = prepare         # rows needing the patient hash -> None (sets it; may raise)
        self._background = background  # () -> bool more to do: other write-backs once the database is back
        self._background_pending = background_pending or (lambda: False)
        self._pid: int | None = None
        self._after_fork()
        self._exit_hook = False
        self._health.listeners.append(self.retry_now)

    def _after_fork(self) -> None:
        """A forked worker starts with its own lock, no writer thread and nothing of its parent's pending."""
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[list[dict]] = []
        self._held: list[list[dict]] = []
        self._busy = False
        self._urgent = False            # a reader (or the exit) waits: stop lingering
        self._thread: threading.Thread | None = None
        self._next_attempt = 0.0        # time.monotonic() before which the database is not tried
        self._backoff = 0.0
        self._spool_waiting = self._spool is not None and bool(self._spool.files())
        self._spool_failing = False
        self._next_scan = time.monotonic() + self.SPOOL_SCAN_S
        self.stats = {"written": 0, "spilled": 0, "replayed": 0, "lost": 0, "failed_attempts": 0}

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()

    def _ensure_thread(self) -> None:
        """Under ``self._cond``."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="jak-audit-writer", daemon=True)
            self._thread.start()
            if not self._exit_hook:
                atexit.register(self.at_exit)
                self._exit_hook = True

    def put(self, rows: list[dict]) -> None:
        self._check_fork()
        with self._cond:
            if len(self._pending) + len(self._held) >= self.MAX_PENDING_CALLS:
                self.stats["lost"] += len(rows)
                self._on_lost(1, None)
                return
            self._pending.append(rows)
            self._ensure_thread()
            if len(self._pending) == 1 or len(self._pending) >= self.MAX_BATCH_CALLS:
                self._cond.notify()     # the writer waits for a first call, or may stop lingering

    def wake(self) -> None:
        """Background work appeared (a replay id kept in memory): make sure the writer runs."""
        self._check_fork()
        with self._cond:
            self._ensure_thread()
            self._cond.notify_all()

    def retry_now(self) -> None:
        """The database answered again (a hook call found it back): stop backing off."""
        if self._pid != os.getpid():
            return
        with self._cond:
            self._next_attempt = 0.0
            self._backoff = 0.0
            if self._thread is not None:
                self._cond.notify_all()

    # --- the writer thread -------------------------------------------------------------------------
    def _due(self, now: float) -> bool:
        """Under ``self._cond``: work other than new rows that may be done now."""
        if now < self._next_attempt:
            return False
        return bool(self._held) or self._spool_waiting or self._background_pending()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._urgent:
                    now = time.monotonic()
                    if self._due(now):
                        break
                    if self._spool is not None and now >= self._next_scan:
                        self._next_scan = now + self.SPOOL_SCAN_S
                        if self._spool.files():          # left by a process that died?
                            self._spool_waiting = True
                            continue
                    waits = [self._next_scan - now] if self._spool is not None else [self.SPOOL_SCAN_S]
                    if self._held or self._spool_waiting or self._background_pending():
                        waits.append(self._next_attempt - now)
                    self._cond.wait(max(0.001, min(waits)))
                if self._pending:
                    deadline = time.monotonic() + self.LINGER_S
                    while not self._urgent and len(self._pending) < self.MAX_BATCH_CALLS:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                calls = self._held + self._pending
                self._pending, self._held, self._busy, self._urgent = [], [], True, False
            held: list[list[dict]] = []
            try:
                kept = {id(row) for row in self._turn([row for rows in calls for row in rows])}
                held = [[row for row in rows if id(row) in kept] for rows in calls] if kept else []
            except BaseException as exc:  # noqa: BLE001 - the writer must never stop; keep the rows
                log.exception("audit writer: unexpected error")
                held = calls
                self._failed(exc)
            finally:
                with self._cond:
                    self._hold([rows for rows in held if rows])
                    self._busy = False
                    self._cond.notify_all()

    def _turn(self, rows: list[dict]) -> list[dict]:
        """Write ``rows`` (or spool them) and catch up; returns the rows to keep in memory."""
        unhashed = [r for r in rows if "patient_id" in r]
        ready = [r for r in rows if "patient_id" not in r]
        if time.monotonic() >= self._next_attempt:
            try:
                touched = False
                if unhashed:
                    self._prepare(unhashed)
                    ready, unhashed, touched = ready + unhashed, [], True
                if ready:
                    self._write_rows(ready)
                    self.stats["written"] += len(ready)
                    ready, touched = [], True
                touched |= self._catch_up()
                if touched:
                    self._succeeded()
            except Exception as exc:  # noqa: BLE001 - any failure: spool, back off, try again
                self._failed(exc)
        return unhashed + self._spill(ready)

    def _catch_up(self) -> bool:
        """Once the database takes rows again: the write-backs and the spool. True if it was used."""
        touched, more = False, False
        if self._background is not None and self._background_pending():
            more |= bool(self._background())
            touched = True
        if self._spool is not None and self._spool_waiting:
            replayed, left = self._spool.replay(self._write_rows, self.REPLAY_BUDGET_ROWS)
            if replayed:
                self.stats["replayed"] += replayed
                touched = True
                log.warning("audit: %d row(s) written from the local spool to the database", replayed)
            self._spool_waiting = left
            more |= left
        return touched

    def _succeeded(self) -> None:
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._health.ok()

    def _failed(self, exc: BaseException) -> None:
        self.stats["failed_attempts"] += 1
        self._backoff = min(max(self._backoff * 2, self.RETRY_MIN_S), self.RETRY_MAX_S)
        self._next_attempt = time.monotonic() + self._backoff
        self._health.failed(exc)

    def _spill(self, rows: list[dict]) -> list[dict]:
        """Rows the database did not take, to the spool; returns those the spool did not take either."""
        if not rows or self._spool is None:
            return rows
        try:
            self._spool.append(rows)
        except OSError as exc:
            if not self._spool_failing:
                log.error("audit: the local spool %s does not take rows either (%s): rows are kept in memory "
                          "(at most %d hook calls)", self._spool.directory, type(exc).__name__,
                          self.MAX_PENDING_CALLS)
            self._spool_failing = True
            return rows
        if self._spool_failing:
            log.warning("audit: the local spool %s takes rows again", self._spool.directory)
        self._spool_failing = False
        self.stats["spilled"] += len(rows)
        self._spool_waiting = True
        return []

    def _hold(self, calls: list[list[dict]]) -> None:
        """Under ``self._cond``: keep the rows of these calls in memory for the next attempt, oldest first,
        within the bound (beyond it the oldest calls' rows are counted lost)."""
        self._held = calls + self._held
        while self._held and len(self._held) + len(self._pending) > self.MAX_PENDING_CALLS:
            lost = self._held.pop(0)
            self.stats["lost"] += len(lost)
            self._on_lost(1, None)

    # --- callers -----------------------------------------------------------------------------------
    def at_exit(self) -> None:
        """A stopping process writes (or spools) its pending rows, and tries once more to write back the
        replay ids it kept in memory (they cannot be spooled: they would be forgotten)."""
        self.flush()
        if self._pid != os.getpid() or self._background is None or not self._background_pending():
            return
        with self._cond:
            if self._busy:
                return
            self._busy = True
        try:
            self._background()
        except Exception as exc:  # noqa: BLE001 - exiting anyway
            log.error("replay check: token ids kept in memory could not be written back at exit (%s)",
                      db_error_kind(exc))
        finally:
            with self._cond:
                self._busy = False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row handed over so far is written or spooled (or held); False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._cond:
            if self._pending:
                self._urgent = True
                self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing waits at all: rows, held rows, the spool of this database (any process's file
        this one can lock) and the background write-backs; tries the database now. False on timeout."""
        self._check_fork()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._spool_waiting = self._spool is not None and bool(self._spool.files())
            self._next_attempt = min(self._next_attempt, time.monotonic())
            self._urgent = bool(self._pending)
            self._ensure_thread()
            self._cond.notify_all()

            def idle() -> bool:
                return not (self._pending or self._held or self._busy or self._spool_waiting
                            or self._background_pending())

            while not idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def waiting(self) -> int:
        """Rows of this process not yet in the database: in memory, plus this database's spool."""
        with self._cond:
            in_memory = sum(len(r) for r in self._pending + self._held)
        spooled = self._spool.status()["rows_waiting"] if self._spool is not None else 0
        return in_memory + spooled


MEMORY_SQLITE = ("sqlite://", "sqlite:///:memory:")
REQUEST_BUSY_MS = 1000             # SQLite: request path and audit writer wait at most this for a locked file
DEFAULT_BUSY_MS = 30000            # ... migrations, reports and other readers
# PostgreSQL: a database that hangs instead of refusing must not hold a hook call either. Every statement of
# the request path and the audit writer takes milliseconds; migrations and reports lift the limit
# (``_unbounded``).
PG_STATEMENT_TIMEOUT_MS = 3000
PG_CONNECT_ARGS = {
    "connect_timeout": 2,                          # s: a server that does not answer the connection
    "tcp_user_timeout": 3000,                      # ms: a connection whose packets go unacknowledged
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2,
    "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
}
JTI_MEMORY_MAX = 50_000            # token ids accepted without the database, per process (about 10 MB)
JTI_FALLBACKS = ("memory", "refuse")


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


class Store:
    """One per process; the SQLAlchemy engine is created lazily and again after a fork.

    What a database outage does here (see ``DatabaseHealth``, ``AuditQueue``, ``AuditSpool``): issued-card
    rows are spooled to local files and written later, exactly once; feedback raises ``StoreUnavailable``
    (503); the replay check keeps token ids in memory (``jti_fallback="memory"``) or raises
    ``StoreUnavailable`` (``"refuse"``).
    """

    def __init__(self, url: str, patient_hash_key: str | None = None, schema: str | None = None,
                 spool_dir: str | Path | None = None, jti_fallback: str = "memory"):
        if jti_fallback not in JTI_FALLBACKS:
            raise ValueError(f"jti_fallback must be one of {JTI_FALLBACKS}, not {jti_fallback!r}")
        self.url = url
        self.schema = schema                   # PostgreSQL schema (tests use a private one)
        self._configured_key = patient_hash_key
        self._key: bytes | None = None
        self._engine: Engine | None = None
        self._fast: tuple[Engine, Engine] | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._migrated = False
        self.audit_failures = 0
        self.health = DatabaseHealth()
        spool_dir = spool_dir if spool_dir is not None else default_spool_dir(url)
        self.spool = AuditSpool(spool_dir, database_key(url, schema)) if spool_dir else None
        self._audit = AuditQueue(self._insert_issued, self._audit_failed, spool=self.spool, health=self.health,
                                 prepare=self._hash_rows, background=self._save_memory_jtis,
                                 background_pending=self._memory_jtis_pending)
        self.jti_prune_interval_s = JTI_PRUNE_INTERVAL_S
        self._next_jti_prune = 0.0             # time.monotonic() after which the next call prunes
        self.jti_fallback = jti_fallback
        self.jti_memory_max = JTI_MEMORY_MAX
        self._jti_lock = threading.Lock()
        # (iss, jti) -> (kept in the database until, usable until): accepted while the database was down
        self._jti_memory: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        self.jti_stats = {"accepted_from_memory": 0, "written_back": 0, "replays_found_on_write_back": 0}

    @classmethod
    def from_settings(cls, settings) -> "Store":
        return cls(settings.database_url, settings.patient_hash_key,
                   spool_dir=getattr(settings, "audit_spool", None),
                   jti_fallback=getattr(settings, "jti_fallback", "memory"))

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    # --- connection -----------------------------------------------------------------------------
    def _make_engine(self) -> Engine:
        if self.is_sqlite:
            extra = {}
            if self.url in MEMORY_SQLITE:
                extra["poolclass"] = StaticPool          # one in-memory database shared by all threads
            engine = create_engine(self.url, connect_args={"timeout": DEFAULT_BUSY_MS / 1000,
                                                           "check_same_thread": False}, **extra)

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, record):
                dbapi_conn.isolation_level = None      # we issue BEGIN ourselves (see _begin)
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
                conn.exec_driver_sql("BEGIN IMMEDIATE")   # take the write lock up front: no upgrade deadlocks
        else:
            engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_timeout=5,
                                   connect_args=dict(PG_CONNECT_ARGS))
        if self.schema:
            engine = engine.execution_options(schema_translate_map={None: self.schema})
        return engine

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
            fast = self._fast = (engine, engine.execution_options(jak_busy_ms=REQUEST_BUSY_MS))
        return fast[1]

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
                raise SystemExit(f"the database schema is version {current}, newer than this service "
                                 f"({SCHEMA_VERSION}); upgrade the service")
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
            log.warning("audit spool %s is not writable (%s): during a database outage the audit rows would "
                        "be kept in memory only (JAK_CDS_AUDIT_SPOOL)", self.spool.directory, type(exc).__name__)
            return
        if not self.spool.files():
            return
        try:
            replayed, _ = self.spool.replay(self._insert_issued, 10 ** 9)
        except SQLAlchemyError as exc:
            log.error("audit spool: rows left by an earlier run could not be written yet (%s)", db_error_kind(exc))
            return
        if replayed:
            log.warning("audit: %d row(s) left in the local spool by an earlier run written to the database",
                        replayed)

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
                    pass                                  # another worker won the race; use its key
                row = conn.execute(select(meta.c.value).where(meta.c.key == "patient_hash_key")).first()
        return row[0].encode()

    def patient_hash(self, patient_id: str) -> str:
        return hmac.new(self._hash_key(), patient_id.encode(), hashlib.sha256).hexdigest()

    def _hash_rows(self, rows: list[dict]) -> None:
        """The audit writer's step for rows made before this process knew the hash key: all or none."""
        hashes = [self.patient_hash(r["patient_id"]) for r in rows]
        for row, value in zip(rows, hashes):
            row["patient_hash"] = value
            del row["patient_id"]

    # --- writes ---------------------------------------------------------------------------------
    def record_issued(self, service_id: str, hook_instance: str, patient_id: str,
                      cards: list[tuple[str, str]], knowledge_version: str, wait: bool = True) -> None:
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
        rows = [dict(card_uuid=str(card)[:64], service_id=service_id[:128], rule_id=str(rule)[:200],
                     knowledge_version=str(knowledge_version)[:128], hook_instance=str(hook_instance)[:200],
                     issued_at=now, **patient) for card, rule in cards]
        if not wait:
            self._audit.put(rows)
            return
        try:
            if not known:
                self._hash_rows(rows)
            self._insert_issued(rows)
        except SQLAlchemyError as exc:
            self.health.failed(exc)
            self._audit.put(rows)           # the writer spools them and writes them once the database is back

    def _insert_issued(self, rows: list[dict]) -> None:
        """One transaction; a card already recorded (the same uuid: a batch retried after a commit whose
        answer was lost, or a spool file replayed twice) is skipped, so each card has exactly one row."""
        dialect = sqlite_dialect if self.is_sqlite else pg_dialect
        statement = dialect.insert(issued_card).on_conflict_do_nothing(index_elements=["card_uuid"])
        with self.fast_engine.begin() as conn:
            conn.execute(statement, rows)

    def _audit_failed(self, calls: int, exc: Exception | None) -> None:
        self.audit_failures += calls
        log.error("audit rows of %d hook call(s) LOST: neither the database nor the local spool takes rows "
                  "and %d calls already wait in memory (%s)", calls, AuditQueue.MAX_PENDING_CALLS, db_error_kind(exc))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for the background audit writer (see ``AuditQueue``)."""
        return self._audit.flush(timeout)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every audit row and replay id this process holds, and this database's spool, is in
        the database (tests, and whoever wants to know the outage is over)."""
        return self._audit.drain(timeout)

    def audit_status(self) -> dict:
        """Counters of this process's audit writer and what waits in the spool (``jak-cds report``)."""
        status = dict(self._audit.stats)
        status["waiting_in_memory"] = self._audit.waiting() - (self.spool.status()["rows_waiting"]
                                                               if self.spool is not None else 0)
        status["spool"] = self.spool.status() if self.spool is not None else None
        return status

    def record_feedback(self, service_id: str, items: list[FeedbackRow]) -> int:
        """Store feedback in one transaction, or raise ``StoreUnavailable``: never acknowledged unstored."""
        now = utcnow()
        rows = [dict(card_uuid=i.card_uuid, service_id=service_id[:128], outcome=i.outcome,
                     accepted_suggestions=json.dumps(i.accepted_suggestions) if i.accepted_suggestions else None,
                     override_system=(i.override_system or None) and i.override_system[:300],
                     override_code=(i.override_code or None) and i.override_code[:200],
                     override_display=(i.override_display or None) and i.override_display[:300],
                     user_comment=(i.user_comment or None) and i.user_comment[:MAX_COMMENT],
                     outcome_timestamp=_aware(i.outcome_timestamp), received_at=now) for i in items]
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
        """Record a token id; False if it was seen before (a replay). Kept at least one hour.

        Every authenticated hook call comes here, so it is one INSERT in its own transaction: the primary
        key (iss, jti) refuses a second use in any worker. Expired ids are deleted in the same transaction
        at most every ``jti_prune_interval_s`` per process (a delete and a savepoint on every call cost
        as much again as the insert).

        When the database cannot be used (``DatabaseHealth``): with ``jti_fallback="memory"`` the id is
        checked against and kept in this process's memory (at most ``jti_memory_max`` ids, each until its
        token expires) and written to the database by the audit writer once it is back, where a second use
        elsewhere in the meantime is found and logged; with ``"refuse"``, or when that memory is full,
        ``StoreUnavailable`` (503).
        """
        now = utcnow()
        key = (iss[:300], jti[:300])
        if key in self._jti_memory:
            return False                                  # accepted here while the database was down
        keep_until = max(filter(None, [_aware(exp) if exp else None, now + JTI_MIN_RETENTION]))
        if self.health.should_try():
            started = time.monotonic()
            prune = started >= self._next_jti_prune
            try:
                with self.fast_engine.begin() as conn:
                    if prune:
                        conn.execute(_PRUNE_JTI, {"now": now})
                    conn.execute(_INSERT_JTI, {"iss": key[0], "jti": key[1], "expires_at": keep_until})
            except IntegrityError:
                self.health.ok()
                return False                              # a replay (the prune, if any, is retried next call)
            except SQLAlchemyError as exc:
                self.health.failed(exc, took=time.monotonic() - started)
            else:
                if prune:
                    self._next_jti_prune = time.monotonic() + self.jti_prune_interval_s
                self.health.ok()
                return True
        return self._remember_jti_in_memory(key, keep_until, _aware(exp) if exp else keep_until, now)

    def _remember_jti_in_memory(self, key: tuple[str, str], keep_until: datetime, usable_until: datetime,
                                now: datetime) -> bool:
        if self.jti_fallback == "refuse":
            raise StoreUnavailable("the replay check needs the database, which is unavailable", RETRY_AFTER_S)
        with self._jti_lock:
            if key in self._jti_memory:
                return False
            if len(self._jti_memory) >= self.jti_memory_max:
                for old in [k for k, (_, until) in self._jti_memory.items() if until < now]:
                    del self._jti_memory[old]             # expired tokens: refused by exp whatever we remember
                if len(self._jti_memory) >= self.jti_memory_max:
                    raise StoreUnavailable("too many token ids wait for the database", RETRY_AFTER_S)
            first = not self._jti_memory
            self._jti_memory[key] = (keep_until, usable_until)
            self.jti_stats["accepted_from_memory"] += 1
        if first:
            log.warning("replay check from memory: the database is unavailable, token ids are kept in this "
                        "process (pid %d) and written to the database when it is back", os.getpid())
        self._audit.wake()
        return True

    def _memory_jtis_pending(self) -> bool:
        return bool(self._jti_memory)

    def _save_memory_jtis(self) -> bool:
        """The audit writer, once the database is back: write the token ids accepted from memory. An id
        the database already holds was used twice (here during the outage, and elsewhere): logged as a
        replay. Returns whether ids remain (never: all or an exception)."""
        now = utcnow()
        with self._jti_lock:
            items = list(self._jti_memory.items())
        dialect = sqlite_dialect if self.is_sqlite else pg_dialect
        saved = []
        for start in range(0, len(items), 500):
            chunk = [(k, v) for k, v in items[start:start + 500] if v[1] >= now]
            saved.extend(k for k, v in items[start:start + 500] if v[1] < now)   # expired: nothing to keep
            if not chunk:
                continue
            statement = (dialect.insert(seen_jti)
                         .values([{"iss": k[0], "jti": k[1], "expires_at": v[0]} for k, v in chunk])
                         .on_conflict_do_nothing(index_elements=["iss", "jti"])
                         .returning(seen_jti.c.iss, seen_jti.c.jti))
            with self.fast_engine.begin() as conn:
                inserted = {tuple(r) for r in conn.execute(statement)}
            for k, _ in chunk:
                if k not in inserted:
                    self.jti_stats["replays_found_on_write_back"] += 1
                    log.warning("REPLAY during the database outage: token id %r of issuer %s was accepted from "
                                "memory here and was also used elsewhere", k[1], k[0])
            self.jti_stats["written_back"] += len(chunk)
            saved.extend(k for k, _ in chunk)
        with self._jti_lock:
            for k in saved:
                self._jti_memory.pop(k, None)
        if saved:
            log.info("replay check: %d token id(s) kept in memory written to the database", len(saved))
        return False

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
            self._unbounded(conn)
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
