"""Prefetch completion: make every prefetch key either data or a stated gap.

The EHR may send all, some or none of the prefetch. A key that is absent, or
holds an OperationOutcome or an error, is fetched from ``fhirServer`` with
the ``fhirAuthorization`` bearer token (see ``fhir.client``); a key that is
``null`` means "no data" and is not fetched again. Whatever cannot be
obtained is recorded in ``unavailable`` with the reason, so each rule can say
what it could not check. What completion gathers (``Prefetch``) is read once into
a ``PatientRecord`` (``record.index``) by the hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from cds_service.fhir.client import Outcome
from cds_service.fhir.values import query_type, resources_of
from cds_service.i18n import say
from cds_service.record.templates import UnresolvedToken, render, what_a_query_reads
from cds_service.wire import FhirAuthorization, HookRequest


@dataclass
class Prefetch:
    """What completion has obtained: resources per prefetch key, and what could not be obtained."""

    by_key: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # prefetch key -> why
    fetched: list[str] = field(default_factory=list)  # keys filled by a fallback fetch
    gaps: dict[str, str] = field(default_factory=dict)  # "Observation|718-7" or "Condition" -> why

    @property
    def nothing_usable(self) -> bool:
        return not self.by_key


class Fetcher(Protocol):
    """What completion needs of the fallback fetch (``fhir.client.FhirClient``)."""

    def deadline(self) -> float: ...

    def fetch_all(
        self,
        server: str,
        authorization: FhirAuthorization | None,
        queries: dict[str, str],
        deadline: float | None = None,
    ) -> dict[str, Outcome]: ...


def from_request(request: HookRequest, templates: dict[str, str]) -> tuple[Prefetch, list[str]]:
    """Take what the EHR sent; return it and the keys still to fetch."""
    done = Prefetch()
    sent = request.prefetch or {}
    missing = []
    for key in templates:
        if key in sent:
            value = sent[key]
            if value is None:
                done.by_key[key] = []
                continue
            resources = resources_of(value)
            if resources is not None:
                done.by_key[key] = resources
                continue
        missing.append(key)
    return done, missing


def _next_page(value) -> str | None:
    """The ``next`` link of a prefetched searchset Bundle (CDS Hooks 2.0 allows paged prefetch), if any."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return None
    links = value.get("link")
    for link in links if isinstance(links, list) else [links]:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


class Completion:
    """One hook call's prefetch, completed in turns that share one time budget.

    ``fill(types)`` completes the keys whose queries read those resource types (every key without
    ``types``): the rest of a key the EHR sent as a first page, and the keys it did not send, fetched from
    ``fhirServer``. A hook that needs only part of the record to know whether it has anything to say
    (patient-view: the medications) fills that part first. Every fetch of the call ends by one deadline
    (``JAK_CDS_FHIR_TIMEOUT``), set when the first one starts. ``fill`` returns the same ``Prefetch`` each
    time, grown by the keys it completed.
    """

    def __init__(self, request: HookRequest, templates: dict[str, str], client: Fetcher) -> None:
        self.request, self.templates, self.client = request, templates, client
        self.prefetched, missing = from_request(request, templates)
        self._missing = set(missing)
        self._open = list(templates)  # keys not completed yet, in template order
        self._deadline: float | None = None

    def fill(self, types: tuple[str, ...] | None = None) -> Prefetch:
        keys = [k for k in self._open if types is None or query_type(self.templates[k]) in types]
        self._open = [k for k in self._open if k not in keys]
        done = self.prefetched
        self._read_remaining_pages(keys)
        self._fetch_missing([k for k in keys if k in self._missing])
        for key in keys:
            why = done.unavailable.get(key)
            if why:
                for item in what_a_query_reads(self.templates[key]):
                    done.gaps.setdefault(item, why)
        return done

    def _fetch(self, server: str, queries: dict[str, str]) -> dict[str, tuple[list | None, str | None]]:
        if not queries:
            return {}
        if self._deadline is None:
            self._deadline = self.client.deadline()
        return self.client.fetch_all(server, self.request.fhirAuthorization, queries, self._deadline)

    def _read_remaining_pages(self, keys: list[str]) -> None:
        """A key sent as the first page of a search is completed from ``fhirServer``; if it cannot be, the
        key is said to be incomplete (its first page is still used), never read as the whole list."""
        request, done = self.request, self.prefetched
        sent = request.prefetch or {}
        server = (request.fhirServer or "").rstrip("/")
        queries = {}
        for key in keys:
            url = _next_page(sent.get(key)) if key in done.by_key else None
            if url is None:
                continue
            if not server:
                done.unavailable[key] = say(
                    "only the first page of the search was sent and the EHR gave no fhirServer to read the rest from"
                )
            elif not url.startswith(server + "/"):
                done.unavailable[key] = say(
                    "only the first page of the search was sent; its next page is not on fhirServer"
                )
            else:
                queries[key] = url[len(server) + 1 :]
        for key, (resources, problem) in self._fetch(server, queries).items():
            if resources is not None:
                done.by_key[key] = done.by_key[key] + resources
                done.fetched.append(key)
            if resources is None or problem:
                done.unavailable[key] = say(
                    "only the first page of the search was sent; the rest could not be read ({problem})",
                    problem=problem,
                )

    def _fetch_missing(self, keys: list[str]) -> None:
        request, done = self.request, self.prefetched
        if not keys:
            return
        if request.fhirServer is None:
            for key in keys:
                done.unavailable[key] = say("not in the prefetch and the EHR gave no fhirServer to fetch it from")
            return
        queries = {}
        for key in keys:
            try:
                queries[key] = render(self.templates[key], request.context)
            except UnresolvedToken as exc:
                done.unavailable[key] = say("the hook context has no value for prefetch token {token}", token=str(exc))
        for key, (resources, problem) in self._fetch(request.fhirServer, queries).items():
            if resources is not None:
                done.by_key[key] = resources
                done.fetched.append(key)
            if resources is None or problem:  # partial data is used, and its gap is still said
                done.unavailable[key] = problem or say("could not be fetched")
