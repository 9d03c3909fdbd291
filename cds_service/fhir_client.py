"""Outbound FHIR reads for prefetch keys the EHR did not send.

Safety properties, each tested:
- only servers under ``JAK_CDS_ALLOWED_FHIR_SERVERS`` are called (no SSRF);
- every call has a connect and a read timeout, and all calls of one hook
  share a total budget (``JAK_CDS_FHIR_TIMEOUT``): what is not back in time
  is reported as unavailable and the hook answers anyway;
- the bearer token is sent only to the EHR's fhirServer, never logged, never stored;
- error statuses, non-JSON and wrong resources become a stated gap, not a 500.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

import requests

from cds_service import strict_json
from cds_service.outbound import OutboundSession
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


# Queries in flight at once per server process. A hook call without prefetch sends one per prefetch key
# (twelve for order-sign) and waits for the slowest: with fewer threads than that (there were eight) the
# clinician waits for two waves of round trips to the EHR's FHIR server. A little more than one call's
# worth, so that a second call in the same worker is not held up behind it.
PARALLEL_QUERIES = 16


class FhirClient:
    def __init__(self, allowed_servers: tuple[str, ...], total_budget: float, connect_timeout: float = 0.5,
                 session: requests.Session | None = None):
        self.allowed = allowed_servers
        self.budget = total_budget
        self.connect_timeout = connect_timeout
        self.session = session or OutboundSession(PARALLEL_QUERIES)
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_QUERIES, thread_name_prefix="fhir-fetch")

    def deadline(self) -> float:
        """The end (``time.monotonic()``) of a hook call's budget for outbound reads, starting now."""
        return time.monotonic() + self.budget

    def fetch_all(self, server: str, authorization, queries: dict[str, str],
                  deadline: float | None = None) -> dict[str, tuple[list | None, str | None]]:
        """Run each query against ``server`` in parallel until ``deadline`` (default: the whole budget from now).

        A hook call that fetches in turns passes the same ``deadline`` to each (``prefetch.Completion``)."""
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
        futures = {self._pool.submit(self._fetch, server, query, headers, deadline): key
                   for key, query in queries.items()}
        results: dict[str, tuple[list | None, str | None]] = {}
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            finished, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    results[futures[future]] = future.result()
                except Exception as exc:   # defensive: a bug here must not become a 500
                    log.warning("fallback fetch failed: %s", type(exc).__name__)
                    results[futures[future]] = (None, "the FHIR request failed")
        for future in pending:
            future.cancel()
            results[futures[future]] = (None, f"the FHIR server did not answer within {self.budget:g} s")
        return results

    def _fetch(self, server: str, query: str, headers: dict, deadline: float) -> tuple[list | None, str | None]:
        """(resources, None), or (None, why), or (the pages read, why the rest is missing)."""
        url = f"{server.rstrip('/')}/{query.lstrip('/')}"
        collected: list[dict] = []
        for _page in range(MAX_PAGES):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if collected:
                    return collected, "only the first pages arrived in time; the rest of the search was not read"
                return None, "the FHIR server did not answer in time"
            try:
                response = self.session.get(url, headers=headers, stream=True,
                                            timeout=(min(self.connect_timeout, remaining), remaining),
                                            allow_redirects=False)
                body = self._read_capped(response, deadline)
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
    def _read_capped(response, deadline: float) -> bytes | None:
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES or time.monotonic() > deadline:
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
