"""What this process knows of its database: is it usable now, and what a failure is called in the log.

``StoreUnavailable`` is the request path's outage (answered 503 with Retry-After); ``DatabaseHealth`` decides
when a request may try the database again, and wakes the audit writer when it is back.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The database cannot be used just now; the request is answered 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


RETRY_AFTER_S = 2  # what a 503 asks the EHR to wait


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
        self.down_since: float | None = None  # time.monotonic() of the first failure
        self._probe_at = 0.0
        self._interval = self.PROBE_MIN_S
        self.outages = 0
        self.listeners: list = []  # called (no arguments) when the database is back

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
            self._probe_at = now + self._interval  # this caller probes; the others do not wait on it
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
        log.error(
            "database unavailable (%s): cards are still answered, their audit rows are kept locally until it is back",
            db_error_kind(exc),
        )

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
