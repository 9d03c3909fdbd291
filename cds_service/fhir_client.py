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

import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

import requests

from cds_service.prefetch import resources_of

log = logging.getLogger(__name__)
MAX_PAGES = 5
MAX_RESPONSE_BYTES = 20 * 1024 * 1024


def server_allowed(server: str, allowed: tuple[str, ...]) -> bool:
    """True if ``server`` is an allowed prefix or below it, on a path or port boundary.

    ``http://127.0.0.1`` allows ``http://127.0.0.1:8080/fhir`` but never
    ``http://127.0.0.1.evil.example``.
    """
    server = server.rstrip("/")
    for prefix in (p.rstrip("/") for p in allowed):
        if server == prefix or server.startswith(prefix + "/"):
            return True
        if server.startswith(prefix + ":") and urlsplit(prefix).port is None and urlsplit(prefix).path == "":
            return True
    return False


def redact_server(server: str) -> str:
    """Scheme and host only, for logs (paths may carry tenant or patient ids)."""
    parts = urlsplit(server)
    return f"{parts.scheme}://{parts.hostname}"


class FhirClient:
    def __init__(self, allowed_servers: tuple[str, ...], total_budget: float, connect_timeout: float = 0.5,
                 session: requests.Session | None = None):
        self.allowed = allowed_servers
        self.budget = total_budget
        self.connect_timeout = connect_timeout
        self.session = session or requests.Session()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fhir-fetch")

    def fetch_all(self, server: str, authorization, queries: dict[str, str]) -> dict[str, tuple[list | None, str | None]]:
        """Run each query against ``server`` in parallel within the total budget."""
        if not queries:
            return {}
        if not server_allowed(server, self.allowed):
            log.warning("fhirServer %s is not in JAK_CDS_ALLOWED_FHIR_SERVERS; not called", redact_server(server))
            why = "the EHR's fhirServer is not on this service's allowed list, so it was not called"
            return {key: (None, why) for key in queries}
        deadline = time.monotonic() + self.budget
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
        url = f"{server.rstrip('/')}/{query.lstrip('/')}"
        collected: list[dict] = []
        for _page in range(MAX_PAGES):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return (collected or None), (None if collected else "the FHIR server did not answer in time")
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
                payload = json.loads(body)
            except ValueError:
                return None, "the FHIR server's answer was not JSON"
            resources = resources_of(payload)
            if resources is None:
                return None, "the FHIR server answered with an error or an unexpected resource"
            collected.extend(resources)
            next_url = _next_link(payload)
            if not next_url or not next_url.startswith(server.rstrip("/") + "/"):
                return collected, None
            url = next_url
        return collected, None

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


def _next_link(payload) -> str | None:
    if not isinstance(payload, dict) or payload.get("resourceType") != "Bundle":
        return None
    for link in payload.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None
