"""Outbound FHIR reads for prefetch keys the EHR did not send.

Safety properties, each tested:
- only servers under ``JAK_CDS_ALLOWED_FHIR_SERVERS`` are called (no SSRF);
- all reads of one hook call share one absolute deadline (``JAK_CDS_FHIR_TIMEOUT``), whatever the
  server does: at the deadline the connections still open are shut down, so a server that hangs or
  drips one byte a second holds nothing past it; what is not back is a stated gap and the hook answers;
- no read outlives its call: when ``fetch_all`` returns, each of its reads has ended (or, rarely, been
  given up on: see below); the threads that run them are not a fixed pool that one hostile server can
  use up (a new one starts when none is idle), and a server (scheme, host, port) has at most
  ``JAK_CDS_FHIR_MAX_PER_SERVER`` reads in flight per process, the others wait for a place until the
  deadline;
- ``shutdown()`` (SIGTERM): reads in flight, and those of calls still arriving, end within a short grace
  (``STOP_GRACE``), cut if need be; after it reads are refused;
- the bearer token is sent only to the EHR's fhirServer, never logged, never stored; no cookie, no
  netrc login (``outbound.OutboundSession``);
- error statuses, non-JSON, oversized answers and wrong resources become a stated gap, not a 500.

Why requests with cuttable sockets and threads, not httpx: httpx's sync client times out per
operation too (each read may take the read timeout), so a hard deadline needs the same watchdog that
shuts the socket; its async client gets one naturally (cancelling closes the connection), but the hook
call is synchronous Flask code in gunicorn gthread workers: an event loop is one more thread per
process, started after the fork and stopped at exit, that every call must cross into, and one more
dependency. Here the deadline is one ``shutdown(2)`` per socket still open (``outbound.Sockets``),
and ``OutboundSession`` (no netrc login, no cookies, proxies from the environment) and the tests that
stand in for the EHR with ``responses`` stay as they are.
Threads, not a fixed pool: a pool thread held by a dripping server is one every other call has lost
(the fault that poisoned a worker: 16 threads, two calls to a drip server, then every call to any
server 412 with none of its queries sent). Here a read that is cut at the deadline frees its thread
at once, a call that finds no idle thread starts one, and idle threads are kept for the next call
(starting twelve costs ~1.5 ms on a small VM) and end after ``IDLE_SECONDS``.

What is not cut: a DNS look-up (``getaddrinfo`` cannot be interrupted; the operator's resolver, for
a host on the allowed list) and a SOCKS proxy's connections. A thread stuck there is given up on after
a short grace (the call answers anyway), stays counted against its server's limit until it ends, and
is logged; connects have their own timeout (``JAK_CDS_FHIR_CONNECT_TIMEOUT``, at most what is left).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from urllib.parse import urlsplit

import requests

from cds_service import strict_json
from cds_service.outbound import OutboundSession, Sockets, sending_for
from cds_service.prefetch import query_type, resources_of

log = logging.getLogger(__name__)
MAX_PAGES = 5
MAX_RESPONSE_BYTES = 20 * 1024 * 1024


DEFAULT_PORTS = {"http": 80, "https": 443}


def _parts(url: str):
    """(scheme, host, port or None, path) of an http(s) URL, or None if it is unusable or ambiguous."""
    if not isinstance(url, str) or any(c in url for c in "\\ \t\r\n\x00") \
            or any(enc in url.lower() for enc in ("%2f", "%2e", "%5c", "%40")):
        return None
    try:
        parts = urlsplit(url.rstrip("/"))
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None                    # userinfo: http://allowed-host:80@evil.example/ is evil.example
    if parts.query or parts.fragment:
        return None
    segments = parts.path.split("/")
    if any(seg in (".", "..") for seg in segments):
        return None                    # /fhir/../admin would escape the allowed path
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def server_allowed(server: str, allowed: tuple[str, ...]) -> bool:
    """True if ``server`` is an allowed prefix or below it, on a path or port boundary.

    ``http://127.0.0.1`` allows ``http://127.0.0.1:8080/fhir`` (a bare host
    without port: any port; with a path: the default port) but never ``http://127.0.0.1.evil.example``, nor
    ``http://127.0.0.1:80@evil.example`` (userinfo), nor ``/fhir/../other``.
    Scheme and host are compared parsed, not as text.
    """
    target = _parts(server)
    if target is None:
        return False
    scheme, host, port, path = target
    for prefix in allowed:
        allowed_parts = _parts(prefix)
        if allowed_parts is None:
            continue
        p_scheme, p_host, p_port, p_path = allowed_parts
        if scheme != p_scheme or host != p_host:
            continue
        if p_port is None and p_path:
            p_port = DEFAULT_PORTS[scheme]      # a prefix with a path but no port means the default port
        if p_port is not None and (port or DEFAULT_PORTS[scheme]) != p_port:
            continue
        if path == p_path or path.startswith(p_path + "/"):
            return True
    return False


def redact_server(server: str) -> str:
    """Scheme and host only, for logs (paths may carry tenant or patient ids)."""
    parts = urlsplit(server)
    return f"{parts.scheme}://{parts.hostname}"


# Reads in flight at once per FHIR server (scheme, host, port) in one process. A hook call without
# prefetch sends one per prefetch key (twelve for order-sign) in one wave; two calls' worth, so that a
# second call to the same EHR is not held up behind the first, and a hostile server holds no more.
PER_SERVER_LIMIT = 24
# After the deadline the call's connections are shut down and its threads end within milliseconds; a
# thread that has not (stuck in a DNS look-up) is given up on after this long, so the call still answers.
JOIN_GRACE = 0.2
# On SIGTERM, reads in flight may finish for this long (a healthy server answers well within it).
STOP_GRACE = 1.0
# Servers whose limits are remembered; idle ones are forgotten beyond this.
MAX_SERVERS = 256
# Read threads are reused (starting twelve costs ~1.5 ms on a small VM); an idle one ends after this long,
# and no more than MAX_IDLE wait idle. There is no upper bound on busy ones: none is ever held past its
# call's deadline (+ JOIN_GRACE), and each server's share is bounded by JAK_CDS_FHIR_MAX_PER_SERVER.
IDLE_SECONDS = 30.0
MAX_IDLE = 32


class _Worker:
    __slots__ = ("task", "wake", "thread")

    def __init__(self) -> None:
        self.task = None
        self.wake = threading.Event()


class _Workers:
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
        except RuntimeError:                   # the system's thread limit
            with self._lock:
                self.busy -= 1
            raise

    def threads(self) -> int:
        """Threads this process has for reads now, busy or idle."""
        with self._lock:
            return self.busy + len(self._idle)

    def _loop(self, worker: _Worker) -> None:
        while worker.task is not None:
            task, worker.task = worker.task, None
            try:
                task()
            except BaseException:              # noqa: BLE001 - a task never raises (_Call._read); defensive
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
            if worker in self._idle:           # nobody handed it a task: end
                self._idle.remove(worker)
                return False
        worker.wake.wait()                     # handed one just as it timed out
        return True

    def _after_fork(self) -> None:
        """In a forked child (gunicorn workers): the parent's threads are not there."""
        self._lock = threading.Lock()
        self._idle = []
        self.busy = 0


_workers = _Workers()
_reading = 0                               # reads under way in this process (a thread each)
_reading_lock = threading.Lock()


def reads_running() -> int:
    """Reads under way in this process now: 0 once every call has answered (unless one was given up on)."""
    return _reading


def read_threads() -> int:
    """Threads this process keeps for reads, busy or idle (at most MAX_IDLE idle)."""
    return _workers.threads()


def _after_fork_in_child() -> None:
    global _reading, _reading_lock, _clients_lock
    _workers._after_fork()
    _reading, _reading_lock, _clients_lock = 0, threading.Lock(), threading.Lock()
    for client in list(_clients):
        client._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

_clients: "weakref.WeakSet[FhirClient]" = weakref.WeakSet()   # every client of the process, for stop_all()
_clients_lock = threading.Lock()


def stop_all(grace: float = STOP_GRACE) -> None:
    """``shutdown(grace)`` every FhirClient of this process (SIGTERM handlers)."""
    with _clients_lock:
        clients = list(_clients)
    for client in clients:
        client.shutdown(grace)


def _origin(server: str) -> tuple:
    parts = urlsplit(server)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(parts.scheme.lower())


class _Limit:
    """At most ``size`` reads in flight to one server; the others wait for a place until their deadline."""

    __slots__ = ("size", "used", "cond")

    def __init__(self, size: int) -> None:
        self.size, self.used, self.cond = size, 0, threading.Condition(threading.Lock())

    def acquire(self, call: "_Call") -> bool:
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


class _Read:
    """One query of a call: its thread, its connections, its result."""

    __slots__ = ("key", "query", "ended", "sockets", "result", "waiting")

    def __init__(self, key: str, query: str) -> None:
        self.key, self.query = key, query
        self.ended = threading.Event()      # its thread has let go of it (done, failed or cut)
        self.sockets = Sockets()
        self.result: tuple[list | None, str | None] | None = None
        self.waiting = True                 # for a place under the server's limit


class _Call:
    """The reads of one ``fetch_all``: started together, answered by one deadline, cut at it."""

    def __init__(self, client: "FhirClient", server: str, headers: dict, deadline: float, limit: _Limit) -> None:
        self.client, self.server, self.headers, self.limit = client, server, headers, limit
        self.deadline = deadline
        self.cond = threading.Condition(threading.Lock())
        self.pending = 0
        self.closed = False                 # set at the deadline: results arriving later are not used
        self.stopping = False

    def run(self, queries: dict[str, str]) -> dict[str, tuple[list | None, str | None]]:
        reads = [_Read(key, query) for key, query in queries.items()]
        self.pending = len(reads)
        for read in reads:
            try:
                _workers.run(lambda read=read: self._read(read))
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
            self.limit.wake()               # those still waiting for a place give up now
        until = time.monotonic() + JOIN_GRACE
        for read in reads:                  # those done end within microseconds, those cut within milliseconds
            read.ended.wait(max(0.0, until - time.monotonic()))
        stuck = sum(not read.ended.is_set() for read in reads)
        if stuck:
            log.warning("%d read(s) from %s still running after the deadline (DNS?); given up on",
                        stuck, redact_server(self.server))
        budget = self.client.budget
        results = {}
        for read in reads:
            if read.result is not None:
                results[read.key] = read.result
            elif self.stopping:
                results[read.key] = (None, "not read: the service was stopping")
            elif read.waiting:
                results[read.key] = (None, f"the FHIR server did not answer within {budget:g} s (this service "
                                           f"already had {self.limit.size} reads in flight to it, its limit)")
            else:
                results[read.key] = (None, f"the FHIR server did not answer within {budget:g} s")
        return results

    def _read(self, read: _Read) -> None:
        global _reading
        with _reading_lock:
            _reading += 1
        result: tuple[list | None, str | None] | None = None
        try:
            if not self.limit.acquire(self):
                return
            read.waiting = False
            try:
                with sending_for(read.sockets):
                    result = self.client._fetch(self.server, read.query, self.headers, self)
            finally:
                self.limit.release()
        except Exception as exc:   # defensive: a bug here must not become a 500
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


class FhirClient:
    def __init__(self, allowed_servers: tuple[str, ...], total_budget: float, connect_timeout: float = 0.5,
                 session: requests.Session | None = None, per_server: int = PER_SERVER_LIMIT):
        self.allowed = allowed_servers
        self.budget = total_budget
        self.connect_timeout = connect_timeout
        self.per_server = per_server
        self.session = session or OutboundSession(per_server)
        self._lock = threading.Lock()
        self._limits: dict[tuple, _Limit] = {}
        self._calls: set[_Call] = set()
        self._stop_at: float | None = None      # after shutdown(): when every read must have ended
        with _clients_lock:
            _clients.add(self)

    def _after_fork(self) -> None:
        """A forked child has none of the parent's reads: a fresh lock, no place taken under any limit."""
        self._lock = threading.Lock()
        self._limits = {}
        self._calls = set()

    def deadline(self) -> float:
        """The end (``time.monotonic()``) of a hook call's budget for outbound reads, starting now."""
        return time.monotonic() + self.budget

    def in_flight(self) -> int:
        """Reads holding a place under some server's limit now (0 when no call is reading)."""
        with self._lock:
            return sum(limit.used for limit in self._limits.values())

    def shutdown(self, grace: float = STOP_GRACE) -> None:
        """Stop: every read, in flight or started from now on (a kept-alive connection may still bring a call),
        ends within ``grace``; the calls answer with the gap. After it, reads are refused."""
        with self._lock:
            stop_at = time.monotonic() + grace
            self._stop_at = stop_at if self._stop_at is None else min(self._stop_at, stop_at)
            calls = list(self._calls)
        for call in calls:
            call.stop(grace)

    def fetch_all(self, server: str, authorization, queries: dict[str, str],
                  deadline: float | None = None) -> dict[str, tuple[list | None, str | None]]:
        """Run each query against ``server`` in parallel until ``deadline`` (default: the whole budget from now).

        A hook call that fetches in turns passes the same ``deadline`` to each (``prefetch.Completion``).
        When this returns, no read of the call is still going on (connections cut at the deadline)."""
        if not queries:
            return {}
        if not server_allowed(server, self.allowed):
            log.warning("fhirServer %s is not in JAK_CDS_ALLOWED_FHIR_SERVERS; not called", redact_server(server))
            why = "the EHR's fhirServer is not on this service's allowed list, so it was not called"
            return {key: (None, why) for key in queries}
        if deadline is None:
            deadline = self.deadline()
        elif deadline <= time.monotonic():
            why = f"not read: the {self.budget:g} s allowed for reading from the FHIR server were used up"
            return {key: (None, why) for key in queries}
        headers = {"Accept": "application/fhir+json, application/json"}
        if authorization is not None:
            headers["Authorization"] = f"{authorization.token_type or 'Bearer'} {authorization.access_token}"
        with self._lock:
            stopping = self._stop_at is not None
            if stopping:
                if self._stop_at <= time.monotonic():
                    return {key: (None, "not read: the service was stopping") for key in queries}
                deadline = min(deadline, self._stop_at)
            call = _Call(self, server, headers, deadline, self._limit_for(server))
            call.stopping = stopping
            self._calls.add(call)
        try:
            return call.run(queries)
        finally:
            with self._lock:
                self._calls.discard(call)

    def _limit_for(self, server: str) -> _Limit:
        origin = _origin(server)
        limit = self._limits.get(origin)
        if limit is None:
            if len(self._limits) >= MAX_SERVERS:
                self._limits = {o: lim for o, lim in self._limits.items() if lim.used}
            limit = self._limits[origin] = _Limit(self.per_server)
        return limit

    def _fetch(self, server: str, query: str, headers: dict, call: _Call) -> tuple[list | None, str | None]:
        """(resources, None), or (None, why), or (the pages read, why the rest is missing)."""
        url = f"{server.rstrip('/')}/{query.lstrip('/')}"
        collected: list[dict] = []
        for _page in range(MAX_PAGES):
            remaining = call.deadline - time.monotonic()
            if remaining <= 0 or call.closed:
                if collected:
                    return collected, "only the first pages arrived in time; the rest of the search was not read"
                return None, "the FHIR server did not answer in time"
            try:
                # the deadline is kept by cutting the connection (_Call.run): the read timeout is only a backstop,
                # a little later, so that what is late is said the same way however it is late. A connect
                # cannot be cut (no socket yet): its own timeout ends by the deadline.
                response = self.session.get(url, headers=headers, stream=True,
                                            timeout=(min(self.connect_timeout, remaining), remaining + JOIN_GRACE),
                                            allow_redirects=False)
                body = self._read_capped(response, call)
            except requests.Timeout:
                return None, "the FHIR server did not answer in time"
            except requests.RequestException as exc:
                return None, f"the FHIR server could not be reached ({type(exc).__name__})"
            if response.status_code == 404 and "?" not in query:
                return [], None          # a read of a resource that does not exist: no data
            if response.status_code != 200:
                return None, f"the FHIR server answered HTTP {response.status_code}"
            if body is None:
                return None, "the FHIR server's answer was too large or too slow"
            try:
                payload = strict_json.loads(body)
                if strict_json.has_lone_surrogate(body, payload):
                    raise ValueError("unpaired surrogate")
            except (ValueError, RecursionError):
                return None, "the FHIR server's answer was not JSON"
            resources = resources_of(payload)
            if resources is None:
                return None, "the FHIR server answered with an error or an unexpected resource"
            resources, wrong = _of_expected_type(query, payload, resources)
            if wrong:
                return None, f"the FHIR server answered with {wrong}, not what was asked for"
            collected.extend(resources)
            next_url = _next_link(payload)
            if not next_url or not next_url.startswith(server.rstrip("/") + "/"):
                return collected, None
            url = next_url
        return collected, f"the search has more than {MAX_PAGES} pages; only the first {MAX_PAGES} were read"

    @staticmethod
    def _read_capped(response, call: _Call) -> bytes | None:
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES or time.monotonic() > call.deadline or call.closed:
                response.close()
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def _of_expected_type(query: str, payload, resources: list[dict]) -> tuple[list[dict], str | None]:
    """Keep the resources of the type the query asked for; say what came instead if none did.

    A read (``Patient/1``) must answer that resource type (or a Bundle of it); a search must answer
    a Bundle, whose entries of other types are dropped (e.g. included resources).
    """
    expected = query_type(query)
    kind = payload.get("resourceType") if isinstance(payload, dict) else None
    if "?" in query and kind not in ("Bundle", expected):
        return [], f"a {kind or 'non-resource'} instead of a search Bundle"
    kept = [r for r in resources if r.get("resourceType") == expected]
    if resources and not kept:
        found = sorted({str(r.get("resourceType")) for r in resources})
        return [], f"{', '.join(found)} resources instead of {expected}"
    return kept, None


def _next_link(payload) -> str | None:
    if not isinstance(payload, dict) or payload.get("resourceType") != "Bundle":
        return None
    for link in payload.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None
