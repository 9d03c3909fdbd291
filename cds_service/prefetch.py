"""Prefetch completion: make every prefetch key either data or a stated gap.

The EHR may send all, some or none of the prefetch. A key that is absent, or
holds an OperationOutcome or an error, is fetched from ``fhirServer`` with
the ``fhirAuthorization`` bearer token (see ``fhir_client``); a key that is
``null`` means "no data" and is not fetched again. Whatever cannot be
obtained is recorded in ``unavailable`` with the reason, so each rule can say
what it could not check.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from cds_service.fhir.values import LOINC_SYSTEM, query_type, resources_of
from cds_service.wire import HookRequest

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class UnresolvedToken(ValueError):
    """A prefetch template uses a token the request cannot fill."""


def render(template: str, context: dict) -> str:
    """Fill CDS Hooks 2.0 prefetch tokens from the hook context."""

    def replace(match: re.Match) -> str:
        token = match.group(1)
        if token.startswith("context."):
            value = context.get(token[len("context."):])
        elif token in _USER_TOKENS:
            user = str(context.get("userId") or "")
            kind, _, ident = user.partition("/")
            value = ident if kind == _USER_TOKENS[token] else None
        else:
            value = None
        if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
            raise UnresolvedToken(token)
        return quote(str(value), safe="")

    return _TOKEN.sub(replace, template)


def _coding_list(concept) -> list | tuple:
    coding = concept.get("coding") if isinstance(concept, dict) else None
    if isinstance(coding, dict):
        return [coding]
    return coding if isinstance(coding, list) else ()


def _observation_codes(observation: dict, keep) -> tuple[bool, list[str]]:
    """(is it read by some rule, its trimmed codes) in one pass over ``Observation.code.coding``.

    Not read only if every coding is a LOINC coding with a string code outside ``keep``; an
    Observation with another or no system, a non-string code or no coding at all is kept.
    """
    concept = observation.get("code")
    coding = _coding_list(concept)
    read = keep is None or not coding
    codes: list[str] = []
    for item in coding:
        if not isinstance(item, dict):
            read = True
            continue
        code = item.get("code")
        if not isinstance(code, str):
            read = True
            continue
        code = code.strip()
        codes.append(code)
        if not read:
            system = item.get("system")
            if not isinstance(system, str) or "loinc" not in system.lower() or code in keep:
                read = True
    return read, codes


_PATIENT_REF = re.compile(r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$")


def _names_another_patient(resource: dict, kind, patient_id: str, own_reference: str | None) -> bool:
    """True only when the resource clearly belongs to someone else (a server that ignored ``patient=``).

    Unresolvable references (urn:uuid, identifier-only, absent) are accepted: only a clear
    mismatch is rejected. ``own_reference``: "Patient/<patient_id>" (None if the id has a "/").
    """
    if kind == "Patient":
        rid = resource.get("id")
        return isinstance(rid, str) and rid != patient_id
    ref = resource.get("subject") or resource.get("patient")
    reference = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(reference, str):
        return False
    if reference == own_reference:        # the usual case, without the regex
        return False
    match = _PATIENT_REF.search(reference)
    return match is not None and match.group(1) != patient_id


class _Keys(dict):
    """``Prefetched.by_key``: a dict that counts its changes, so the index can tell in one comparison
    that nothing changed (it is read ~17 times per hook call).
    A key's list is replaced when it grows (``by_key[key] = old + more``), never changed in place."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.version = 0

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key):
        super().__delitem__(key)
        self.version += 1

    def _changed(self, result):
        self.version += 1
        return result

    def pop(self, *args):
        return self._changed(super().pop(*args))

    def popitem(self):
        return self._changed(super().popitem())

    def clear(self):
        return self._changed(super().clear())

    def update(self, *args, **kwargs):
        return self._changed(super().update(*args, **kwargs))

    def setdefault(self, key, default=None):
        return self._changed(super().setdefault(key, default))

    def __ior__(self, other):
        super().__ior__(other)
        return self._changed(self)


@dataclass
class Prefetched:
    """Completed prefetch: resources per key plus the keys that could not be obtained.

    ``resources(type)`` and ``with_codes(...)`` read from an index built in one pass on first use
    (rebuilt if ``by_key`` changes). After ``keep_observations(codes)`` that pass leaves out the
    Observations no rule reads, so they cost one look-up per coding and nothing after.
    """

    by_key: dict[str, list[dict]] = field(default_factory=_Keys)
    unavailable: dict[str, str] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)       # keys filled by a fallback fetch
    gaps: dict[str, str] = field(default_factory=dict)     # "Observation|718-7" or "Condition" -> why unavailable
    _keep: frozenset | set | None = field(default=None, init=False, repr=False, compare=False)
    _by_type: dict | None = field(default=None, init=False, repr=False, compare=False)
    _indexed: tuple = field(default=(), init=False, repr=False, compare=False)
    _code_index: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _lone: list = field(default_factory=list, init=False, repr=False, compare=False)
    dropped: int = field(default=0, init=False, compare=False)   # Observations left out as unread
    patient_id: str | None = None                                 # resources naming another patient are left out
    foreign: int = field(default=0, init=False, compare=False)   # how many were

    def __post_init__(self) -> None:
        if type(self.by_key) is not _Keys:       # given a plain dict: count its changes from now on
            self.by_key = _Keys(self.by_key)

    def _index(self) -> dict[str, list[dict]]:
        signature = (id(self._keep), id(self.by_key), self.by_key.version)
        if self._by_type is not None and signature == self._indexed:
            return self._by_type
        by_type: dict[str, list[dict]] = {}
        observations: list[dict] = []
        lone: list[tuple[str, object] | None] = []    # per Observation: (trimmed code, system) of its only coding
        obs_codes: dict[str, list[int]] = {}
        seen_ids: dict[str, set[str]] = {}              # per resource type, the ids indexed so far
        dropped = foreign = 0
        keep = self._keep
        patient_id = self.patient_id
        own_reference = "Patient/" + patient_id if patient_id is not None and "/" not in patient_id else None
        for resources in self.by_key.values():
            for resource in resources:
                kind = resource.get("resourceType")
                if kind == "Observation":
                    # what EHRs usually send, one coding with a string code, settled here without a call;
                    # any other shape raises at once and goes to _observation_codes
                    try:
                        (first,) = resource["code"]["coding"]
                        code, system = first["code"], first.get("system")
                    except (KeyError, TypeError, ValueError, AttributeError):
                        code = system = None
                    if type(code) is str:
                        if keep is None:
                            code = code.strip()
                        elif code not in keep and (code := code.strip()) not in keep:   # keep: LOINC-shaped, no spaces
                            if system == LOINC_SYSTEM:
                                dropped += 1
                                continue
                            code = None
                    if type(code) is str:
                        only, codes = (code, system), None
                    else:
                        only = None
                        read, codes = _observation_codes(resource, keep)
                        if not read:
                            dropped += 1
                            continue
                if patient_id is not None:
                    subject = resource.get("subject")
                    if not (type(subject) is dict and subject.get("reference") == own_reference) \
                            and _names_another_patient(resource, kind, patient_id, own_reference):
                        foreign += 1
                        continue
                rid = resource.get("id")
                if type(rid) is str:
                    ids = seen_ids.get(kind)
                    if ids is None:
                        ids = seen_ids[kind] = set()
                    elif rid in ids:
                        continue
                    ids.add(rid)
                if kind != "Observation":
                    by_type.setdefault(kind, []).append(resource)
                    continue
                position = len(observations)
                observations.append(resource)
                lone.append(only)
                if codes is None:                     # one code: no loop, no repeat to guard against
                    positions = obs_codes.get(code)
                    if positions is None:
                        obs_codes[code] = [position]
                    else:
                        positions.append(position)
                    continue
                for code in codes:
                    positions = obs_codes.get(code)
                    if positions is None:
                        obs_codes[code] = [position]
                    elif positions[-1] != position:
                        positions.append(position)
        if observations:
            by_type["Observation"] = observations
        self._by_type, self._indexed, self.dropped, self.foreign = by_type, signature, dropped, foreign
        self._code_index = {("Observation", "code"): obs_codes}
        self._lone = lone
        return by_type

    def resources(self, resource_type: str) -> list[dict]:
        """Resources of this type over all keys, first occurrence of each id only, in key order."""
        return self._index().get(resource_type, [])

    def with_codes(self, resource_type: str, codes, element: str = "code") -> list[dict]:
        """Resources of this type with a coding in ``element`` whose code (trimmed) is in ``codes``, in order.

        The code index is built once per call and shared by every reader, so each reader touches
        only the resources it asks for (checking the system is the reader's business).
        """
        resources = self.resources(resource_type)
        return [resources[p] for p in self._positions(resource_type, codes, element)]

    def observations_with_codes(self, codes) -> list[tuple[dict, tuple[str, object] | None]]:
        """``with_codes("Observation", codes)``, each result with (trimmed code, system) of its only coding
        when ``code.coding`` is a list of one coding with a string code (what EHRs usually send), else None:
        the indexing pass read that coding already, the reader need not read it again."""
        observations = self.resources("Observation")
        lone = self._lone
        return [(observations[p], lone[p]) for p in self._positions("Observation", codes, "code")]

    def _positions(self, resource_type: str, codes, element: str) -> list[int]:
        resources = self.resources(resource_type)
        index = self._code_index.get((resource_type, element))
        if index is None:
            index = {}
            for position, resource in enumerate(resources):
                for item in _coding_list(resource.get(element)):
                    code = item.get("code") if isinstance(item, dict) else None
                    if isinstance(code, str):
                        positions = index.setdefault(code.strip(), [])
                        if not positions or positions[-1] != position:
                            positions.append(position)
            self._code_index[(resource_type, element)] = index
        hits: set[int] = set()
        for code in codes:
            found = index.get(code)
            if found:
                hits.update(found)
        return sorted(hits)

    def keep_observations(self, codes: frozenset[str] | set[str]) -> int:
        """From now on leave out Observations coded only with LOINC codes outside ``codes``; returns how many.

        Nothing reads them: every LOINC code a rule uses is named in the knowledge
        (``Knowledge.observation_codes``). Filtering happens in the one indexing pass.
        """
        self._keep = codes
        self._by_type = None
        self._index()
        return self.dropped

    @property
    def nothing_usable(self) -> bool:
        return not self.by_key

    def only(self, types: tuple[str, ...]) -> "Prefetched":
        """The resources of these types from every key, read by the same rules (this patient's, first of
        each id), without indexing the rest: e.g. the medications, to see whether anything else is needed."""
        kept = [r for resources in self.by_key.values() for r in resources if r.get("resourceType") in types]
        return Prefetched(by_key={"only": kept}, patient_id=self.patient_id)


def from_request(request: HookRequest, templates: dict[str, str]) -> tuple[Prefetched, list[str]]:
    """Take what the EHR sent; return it and the keys still to fetch."""
    done = Prefetched(patient_id=request.patient_id)
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


def what_a_query_reads(template: str) -> list[str]:
    """``Observation?...&code=a,b`` -> ["Observation|a", "Observation|b"]; ``Condition?...`` -> ["Condition"]."""
    kind = query_type(template)
    for param in template.partition("?")[2].split("&"):
        name, _, value = param.partition("=")
        if name == "code":
            return [f"{kind}|{code.split('|')[-1]}" for code in value.split(",")]
    return [kind]


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
    (``JAK_CDS_FHIR_TIMEOUT``), set when the first one starts.
    """

    def __init__(self, request: HookRequest, templates: dict[str, str], client) -> None:
        self.request, self.templates, self.client = request, templates, client
        self.prefetched, missing = from_request(request, templates)
        self._missing = set(missing)
        self._open = list(templates)           # keys not completed yet, in template order
        self._deadline: float | None = None

    def fill(self, types: tuple[str, ...] | None = None) -> Prefetched:
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
                done.unavailable[key] = ("only the first page of the search was sent and the EHR gave no "
                                         "fhirServer to read the rest from")
            elif not url.startswith(server + "/"):
                done.unavailable[key] = ("only the first page of the search was sent; its next page is not on "
                                         "fhirServer")
            else:
                queries[key] = url[len(server) + 1:]
        for key, (resources, problem) in self._fetch(server, queries).items():
            if resources is not None:
                done.by_key[key] = done.by_key[key] + resources
                done.fetched.append(key)
            if resources is None or problem:
                done.unavailable[key] = ("only the first page of the search was sent; the rest could not be read "
                                         f"({problem})")

    def _fetch_missing(self, keys: list[str]) -> None:
        request, done = self.request, self.prefetched
        if not keys:
            return
        if request.fhirServer is None:
            for key in keys:
                done.unavailable[key] = "not in the prefetch and the EHR gave no fhirServer to fetch it from"
            return
        queries = {}
        for key in keys:
            try:
                queries[key] = render(self.templates[key], request.context)
            except UnresolvedToken as exc:
                done.unavailable[key] = f"the hook context has no value for prefetch token {exc}"
        for key, (resources, problem) in self._fetch(request.fhirServer, queries).items():
            if resources is not None:
                done.by_key[key] = resources
                done.fetched.append(key)
            if resources is None or problem:        # partial data is used, and its gap is still said
                done.unavailable[key] = problem or "could not be fetched"
