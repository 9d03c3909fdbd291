"""The audit writer: issued-card rows written by one background thread per process, never lost to an outage."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from cds_service.store.health import DatabaseHealth, db_error_kind
from cds_service.store.spool import AuditSpool

log = logging.getLogger(__name__)


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

    MAX_PENDING_CALLS = 10_000  # calls held in memory when neither the database nor the spool takes them
    LINGER_S = 0.1  # rows reach the database within this (plus the write itself)
    MAX_BATCH_CALLS = 500  # ... or as soon as this many calls wait
    RETRY_MIN_S = 0.25  # back-off after a failed write: 0.25, 0.5, 1, 1 ... s
    RETRY_MAX_S = 1.0
    SPOOL_SCAN_S = 5.0  # idle: look for spool files left by processes that died
    REPLAY_BUDGET_ROWS = 20_000  # spooled rows replayed per turn

    def __init__(
        self,
        write_rows,
        on_lost,
        spool: AuditSpool | None = None,
        health: DatabaseHealth | None = None,
        prepare=None,
        background=None,
        background_pending=None,
    ):
        self._write_rows = write_rows  # list[dict] -> None, one transaction; a row already there is skipped
        self._on_lost = on_lost  # (calls lost, exception or None) -> None
        self._spool = spool
        self._health = health or DatabaseHealth()
        self._prepare = prepare  # rows needing the patient hash -> None (sets it; may raise)
        self._background = background  # () -> bool more to do: other write-backs once the database is back
        self._background_pending = background_pending or (lambda: False)
        self._pid: int | None = None
        self._after_fork()
        self._exit_hook = False
        self._health.listeners.append(self.retry_now)
        self.on_event = None  # (kind, count) -> None, a ``stats`` key moved: counting (cds_service.web.metrics)

    def _after_fork(self) -> None:
        """A forked worker starts with its own lock, no writer thread and nothing of its parent's pending."""
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[list[dict]] = []
        self._held: list[list[dict]] = []
        self._busy = False
        self._urgent = False  # a reader (or the exit) waits: stop lingering
        self._thread: threading.Thread | None = None
        self._next_attempt = 0.0  # time.monotonic() before which the database is not tried
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
                self._event("lost", len(rows))
                self._on_lost(1, None)
                return
            self._pending.append(rows)
            self._ensure_thread()
            if len(self._pending) == 1 or len(self._pending) >= self.MAX_BATCH_CALLS:
                self._cond.notify()  # the writer waits for a first call, or may stop lingering

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

    def _event(self, kind: str, count: int) -> None:
        self.stats[kind] += count
        if self.on_event is not None:
            self.on_event(kind, count)

    def writer_state(self) -> dict:
        """For ``/readyz`` and ``/metrics``: the writer ("idle": none started yet, it starts with the first card;
        "running"; "stopped": it died), calls waiting in memory, whether the spool refused its last batch."""
        self._check_fork()
        thread = self._thread
        writer = "idle" if thread is None else ("running" if thread.is_alive() else "stopped")
        return {
            "writer": writer,
            "calls_in_memory": len(self._pending) + len(self._held),
            "spool_failing": self._spool_failing,
        }

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
                        if self._spool.files():  # left by a process that died?
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
                    self._event("written", len(ready))
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
                self._event("replayed", replayed)
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
        self._event("failed_attempts", 1)
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
                log.error(
                    "audit: the local spool %s does not take rows either (%s): rows are kept in memory "
                    "(at most %d hook calls)",
                    self._spool.directory,
                    type(exc).__name__,
                    self.MAX_PENDING_CALLS,
                )
            self._spool_failing = True
            return rows
        if self._spool_failing:
            log.warning("audit: the local spool %s takes rows again", self._spool.directory)
        self._spool_failing = False
        self._event("spilled", len(rows))
        self._spool_waiting = True
        return []

    def _hold(self, calls: list[list[dict]]) -> None:
        """Under ``self._cond``: keep the rows of these calls in memory for the next attempt, oldest first,
        within the bound (beyond it the oldest calls' rows are counted lost)."""
        self._held = calls + self._held
        while self._held and len(self._held) + len(self._pending) > self.MAX_PENDING_CALLS:
            lost = self._held.pop(0)
            self._event("lost", len(lost))
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
            log.error(
                "replay check: token ids kept in memory could not be written back at exit (%s)", db_error_kind(exc)
            )
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
                return not (
                    self._pending or self._held or self._busy or self._spool_waiting or self._background_pending()
                )

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
