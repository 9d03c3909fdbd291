"""The reads of the fallback fetch: threads that run them, a limit per server, one deadline per call.

``Call`` runs the queries of one ``FhirClient.fetch_all`` in parallel, each on a thread of ``workers`` (an idle
one, else a new one: no fixed number that one hostile server can use up), each holding a place under its
server's ``ServerLimit`` while it reads. At the call's deadline the connections still open are shut down
(``outbound.Sockets``), so every read has ended, or been given up on, when ``Call.run`` returns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from cds_service.fhir.outbound import Sockets, sending_for
from cds_service.fhir.servers import redact_server

log = logging.getLogger(__name__)

Outcome = tuple[list | None, str | None]  # (resources, None), (None, why), or (the pages read, why the rest is missing)

# After the deadline the call's connections are shut down and its threads end within milliseconds; a
# thread that has not (stuck in a DNS look-up) is given up on after this long, so the call still answers.
JOIN_GRACE = 0.2
# Read threads are reused (starting twelve costs ~1.5 ms on a small VM); an idle one ends after this long,
# and no more than MAX_IDLE wait idle. There is no upper bound on busy ones: none is ever held past its
# call's deadline (+ JOIN_GRACE), and each server's share is bounded by JAK_CDS_FHIR_MAX_PER_SERVER.
IDLE_SECONDS = 30.0
MAX_IDLE = 32


class _Worker:
    __slots__ = ("task", "thread", "wake")
    task: Callable[[], None] | None
    thread: threading.Thread  # set by ReadThreads.run before it starts

    def __init__(self) -> None:
        self.task = None
        self.wake = threading.Event()


class ReadThreads:
    """Threads that run reads: an idle one if there is one, else a new one (no fixed number to use up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self.busy = 0

    def run(self, task) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
            self.busy += 1
        if worker is not None:
            worker.task = task
            worker.wake.set()
            return
        worker = _Worker()
        worker.task = task
        worker.thread = threading.Thread(target=self._loop, args=(worker,), name="fhir-fetch", daemon=True)
        try:
            worker.thread.start()
        except RuntimeError:  # the system's thread limit
            with self._lock:
                self.busy -= 1
            raise

    def _loop(self, worker: _Worker) -> None:
        while worker.task is not None:
            task, worker.task = worker.task, None
            try:
                task()
            except BaseException:  # noqa: BLE001 - a task never raises (Call._read); defensive
                log.exception("fallback read thread")
            if not self._park(worker):
                return

    def _park(self, worker: _Worker) -> bool:
        """Wait idle for the next task; False: end the thread."""
        with self._lock:
            self.busy -= 1
            if len(self._idle) >= MAX_IDLE:
                return False
            worker.wake.clear()
            self._idle.append(worker)
        if worker.wake.wait(IDLE_SECONDS):
            return True
        with self._lock:
            if worker in self._idle:  # nobody handed it a task: end
                self._idle.remove(worker)
                return False
        worker.wake.wait()  # handed one just as it timed out
        return True

    def after_fork(self) -> None:
        """In a forked child (gunicorn workers): the parent's threads are not there."""
        self._lock = threading.Lock()
        self._idle = []
        self.busy = 0


workers = ReadThreads()  # the read threads of this process
_reading = 0  # reads under way in this process (a thread each)
_reading_lock = threading.Lock()


def reads_running() -> int:
    """Reads under way in this process now: 0 once every call has answered (unless one was given up on)."""
    return _reading


def _after_fork_in_child() -> None:
    global _reading, _reading_lock
    workers.after_fork()
    _reading, _reading_lock = 0, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ServerLimit:
    """At most ``size`` reads in flight to one server; the others wait for a place until their deadline."""

    __slots__ = ("cond", "size", "used")

    def __init__(self, size: int) -> None:
        self.size, self.used, self.cond = size, 0, threading.Condition(threading.Lock())

    def acquire(self, call: Call) -> bool:
        with self.cond:
            while not call.closed:
                if self.used < self.size:
                    self.used += 1
                    return True
                remaining = call.deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return False

    def release(self) -> None:
        with self.cond:
            self.used -= 1
            self.cond.notify()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


class Read:
    """One query of a call: its thread, its connections, its result."""

    __slots__ = ("ended", "key", "query", "result", "sockets", "waiting")

    def __init__(self, key: str, query: str) -> None:
        self.key, self.query = key, query
        self.ended = threading.Event()  # its thread has let go of it (done, failed or cut)
        self.sockets = Sockets()
        self.result: Outcome | None = None
        self.waiting = True  # for a place under the server's limit


class Call:
    """The reads of one ``fetch_all``: started together, answered by one deadline, cut at it."""

    def __init__(
        self,
        fetch: Callable[[str, str, dict, Call], Outcome],
        budget: float,
        server: str,
        headers: dict,
        deadline: float,
        limit: ServerLimit,
    ) -> None:
        """``fetch(server, query, headers, call)`` reads one query (``FhirClient``); ``budget``: the seconds the
        call was given, for what is said of a read that is late."""
        self.fetch, self.budget = fetch, budget
        self.server, self.headers, self.limit = server, headers, limit
        self.deadline = deadline
        self.cond = threading.Condition(threading.Lock())
        self.pending = 0
        self.closed = False  # set at the deadline: results arriving later are not used
        self.stopping = False

    def run(self, queries: dict[str, str]) -> dict[str, Outcome]:
        reads = [Read(key, query) for key, query in queries.items()]
        self.pending = len(reads)
        for read in reads:
            try:
                workers.run(lambda read=read: self._read(read))
            except RuntimeError:
                log.warning("no thread could be started for a read from %s", redact_server(self.server))
                with self.cond:
                    read.result = (None, "not read: the service could not start a thread for it")
                    self.pending -= 1
                read.ended.set()
        with self.cond:
            while self.pending:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            self.closed = True
            late = [read for read in reads if read.result is None]
        for read in late:
            read.sockets.cut()
        if late:
            self.limit.wake()  # those still waiting for a place give up now
        until = time.monotonic() + JOIN_GRACE
        for read in reads:  # those done end within microseconds, those cut within milliseconds
            read.ended.wait(max(0.0, until - time.monotonic()))
        stuck = sum(not read.ended.is_set() for read in reads)
        if stuck:
            log.warning(
                "%d read(s) from %s still running after the deadline (DNS?); given up on",
                stuck,
                redact_server(self.server),
            )
        budget = self.budget
        results = {}
        for read in reads:
            if read.result is not None:
                results[read.key] = read.result
            elif self.stopping:
                results[read.key] = (None, "not read: the service was stopping")
            elif read.waiting:
                results[read.key] = (
                    None,
                    f"the FHIR server did not answer within {budget:g} s (this service "
                    f"already had {self.limit.size} reads in flight to it, its limit)",
                )
            else:
                results[read.key] = (None, f"the FHIR server did not answer within {budget:g} s")
        return results

    def _read(self, read: Read) -> None:
        global _reading
        with _reading_lock:
            _reading += 1
        result: Outcome | None = None
        try:
            if not self.limit.acquire(self):
                return
            read.waiting = False
            try:
                with sending_for(read.sockets):
                    result = self.fetch(self.server, read.query, self.headers, self)
            finally:
                self.limit.release()
        except Exception as exc:  # defensive: a bug here must not become a 500
            log.warning("fallback fetch failed: %s", type(exc).__name__)
            result = (None, "the FHIR request failed")
        finally:
            read.sockets.release()
            with self.cond:
                if not self.closed and result is not None:
                    read.result = result
                    self.pending -= 1
                    if not self.pending:
                        self.cond.notify()
            with _reading_lock:
                _reading -= 1
            read.ended.set()

    def stop(self, grace: float) -> None:
        with self.cond:
            if self.closed:
                return
            self.stopping = True
            self.deadline = min(self.deadline, time.monotonic() + grace)
            self.cond.notify()
