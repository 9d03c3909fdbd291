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
from collections.abc import Callable

import requests

from cds_service.fhir import strict_json
from cds_service.fhir.outbound import OutboundSession
from cds_service.fhir.reads import JOIN_GRACE, Call, Outcome, ServerLimit
from cds_service.fhir.servers import origin, redact_server, server_allowed
from cds_service.fhir.values import query_type, resources_of

log = logging.getLogger(__name__)
MAX_PAGES = 5
MAX_RESPONSE_BYTES = 20 * 1024 * 1024

# Reads in flight at once per FHIR server (scheme, host, port) in one process. A hook call without
# prefetch sends one per prefetch key (twelve for order-sign) in one wave; two calls' worth, so that a
# second call to the same EHR is not held up behind the first, and a hostile server holds no more.
PER_SERVER_LIMIT = 24
# On SIGTERM, reads in flight may finish for this long (a healthy server answers well within it).
STOP_GRACE = 1.0
# Servers whose limits are remembered; idle ones are forgotten beyond this.
MAX_SERVERS = 256

_clients: weakref.WeakSet[FhirClient] = weakref.WeakSet()  # every client of the process, for stop_all()
_clients_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()
    for client in list(_clients):
        client.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def stop_all(grace: float = STOP_GRACE) -> None:
    """``shutdown(grace)`` every FhirClient of this process (SIGTERM handlers)."""
    with _clients_lock:
        clients = list(_clients)
    for client in clients:
        client.shutdown(grace)


class FhirClient:
    def __init__(
        self,
        allowed_servers: tuple[str, ...],
        total_budget: float,
        connect_timeout: float = 0.5,
        session: requests.Session | None = None,
        per_server: int = PER_SERVER_LIMIT,
    ):
        self.allowed = allowed_servers
        self.budget = total_budget
        self.connect_timeout = connect_timeout
        self.per_server = per_server
        self.session = session or OutboundSession(per_server)
        self._lock = threading.Lock()
        self._limits: dict[tuple, ServerLimit] = {}
        self._calls: set[Call] = set()
        self._stop_at: float | None = None  # after shutdown(): when every read must have ended
        self.on_results: Callable[[dict], None] | None = (
            None  # (results of fetch_all) -> None: counting (cds_service.web.metrics)
        )
        with _clients_lock:
            _clients.add(self)

    def after_fork(self) -> None:
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

    def fetch_all(
        self, server: str, authorization, queries: dict[str, str], deadline: float | None = None
    ) -> dict[str, tuple[list | None, str | None]]:
        results = self._fetch_all(server, authorization, queries, deadline)
        if self.on_results is not None:
            self.on_results(results)
        return results

    def _fetch_all(
        self, server: str, authorization, queries: dict[str, str], deadline: float | None = None
    ) -> dict[str, tuple[list | None, str | None]]:
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
            stop_at = self._stop_at
            stopping = stop_at is not None
            if stop_at is not None:
                if stop_at <= time.monotonic():
                    return {key: (None, "not read: the service was stopping") for key in queries}
                deadline = min(deadline, stop_at)
            call = Call(self._fetch, self.budget, server, headers, deadline, self._limit_for(server))
            call.stopping = stopping
            self._calls.add(call)
        try:
            return call.run(queries)
        finally:
            with self._lock:
                self._calls.discard(call)

    def _limit_for(self, server: str) -> ServerLimit:
        key = origin(server)
        limit = self._limits.get(key)
        if limit is None:
            if len(self._limits) >= MAX_SERVERS:
                self._limits = {o: lim for o, lim in self._limits.items() if lim.used}
            limit = self._limits[key] = ServerLimit(self.per_server)
        return limit

    def _fetch(self, server: str, query: str, headers: dict, call: Call) -> Outcome:
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
                # the deadline is kept by cutting the connection (Call.run): the read timeout is only a backstop,
                # a little later, so that what is late is said the same way however it is late. A connect
                # cannot be cut (no socket yet): its own timeout ends by the deadline.
                response = self.session.get(
                    url,
                    headers=headers,
                    stream=True,
                    timeout=(min(self.connect_timeout, remaining), remaining + JOIN_GRACE),
                    allow_redirects=False,
                )
                body = self._read_capped(response, call)
            except requests.Timeout:
                return None, "the FHIR server did not answer in time"
            except requests.RequestException as exc:
                return None, f"the FHIR server could not be reached ({type(exc).__name__})"
            if response.status_code == 404 and "?" not in query:
                return [], None  # a read of a resource that does not exist: no data
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
    def _read_capped(response, call: Call) -> bytes | None:
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
