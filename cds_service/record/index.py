"""The patient record of one hook call: the completed prefetch, read once into an index.

Completion (``record.completion``) gathers what the EHR sent and what was fetched, key by key; the readers of
patient facts and draft orders never see keys. They see a ``PatientRecord``: the resources of each type, this
patient's only (a resource that clearly names another patient is left out and counted, ``foreign``), each id once
(the first), and the Observations by code. It is built in one pass over the prefetch, which also leaves out the
Observations no rule reads (``keep``: every LOINC code the knowledge names), so years of unrelated results cost
one look-up each and nothing after.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from cds_service.fhir.values import LOINC_SYSTEM

Resource = dict[str, Any]
OnlyCoding = tuple[str, Any]  # (trimmed code, system) of an Observation's one coding


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
    if reference == own_reference:  # the usual case, without the regex
        return False
    match = _PATIENT_REF.search(reference)
    return match is not None and match.group(1) != patient_id


class PatientRecord:
    """One hook call's patient record, indexed once (see the module's description).

    ``by_key``: resources per prefetch key (their order is kept: key by key, then as sent); ``patient_id``: the
    patient the call is about (None: no filter); ``keep``: the Observation codes some rule reads (None: keep
    every Observation); ``unavailable`` (prefetch key -> why) and ``gaps`` ("Observation|<code>" or a resource
    type -> why) say what could not be obtained.
    """

    __slots__ = ("_by_type", "_code_index", "_only", "dropped", "foreign", "gaps", "patient_id", "unavailable")

    def __init__(
        self,
        by_key: Mapping[str, list[Resource]],
        patient_id: str | None = None,
        *,
        keep: Collection[str] | None = None,
        unavailable: Mapping[str, str] | None = None,
        gaps: Mapping[str, str] | None = None,
    ) -> None:
        self.patient_id = patient_id
        self.unavailable: dict[str, str] = dict(unavailable or {})
        self.gaps: dict[str, str] = dict(gaps or {})
        self.dropped = 0  # Observations left out as read by no rule
        self.foreign = 0  # resources left out as another patient's
        self._by_type: dict[str, list[Resource]] = {}
        self._code_index: dict[tuple[str, str], dict[str, list[int]]] = {}
        self._only: list[OnlyCoding | None] = []
        self._index(by_key, keep)

    @classmethod
    def of_types(
        cls, by_key: Mapping[str, list[Resource]], types: Collection[str], patient_id: str | None = None
    ) -> PatientRecord:
        """The resources of these types only, from every key, read by the same rules (this patient's, first of
        each id), without indexing the rest: e.g. the medications, to see whether anything else is needed."""
        kept = [r for resources in by_key.values() for r in resources if r.get("resourceType") in types]
        return cls({"only": kept}, patient_id)

    def _index(self, by_key: Mapping[str, list[Resource]], keep: Collection[str] | None) -> None:
        by_type: dict[str, list[dict]] = {}
        observations: list[dict] = []
        lone: list[tuple[str, object] | None] = []  # per Observation: (trimmed code, system) of its only coding
        obs_codes: dict[str, list[int]] = {}
        seen_ids: dict[str, set[str]] = {}  # per resource type, the ids indexed so far
        dropped = foreign = 0
        patient_id = self.patient_id
        own_reference = "Patient/" + patient_id if patient_id is not None and "/" not in patient_id else None
        for resources in by_key.values():
            for resource in resources:
                kind = resource.get("resourceType")
                if type(kind) is not str:  # (resources_of lets only typed resources through)
                    continue
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
                        elif code not in keep and (code := code.strip()) not in keep:  # keep: LOINC-shaped, no spaces
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
                    if not (
                        type(subject) is dict and subject.get("reference") == own_reference
                    ) and _names_another_patient(resource, kind, patient_id, own_reference):
                        foreign += 1
                        continue
                rid = resource.get("id")
                if isinstance(rid, str):
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
                if codes is None:  # one code: no loop, no repeat to guard against
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
        self._by_type, self.dropped, self.foreign = by_type, dropped, foreign
        self._code_index = {("Observation", "code"): obs_codes}
        self._only = lone

    def resources(self, resource_type: str) -> list[Resource]:
        """Resources of this type over all keys, first occurrence of each id only, in key order."""
        return self._by_type.get(resource_type, [])

    def by_id(self, resource_type: str, resource_id: str) -> Resource | None:
        """The resource of this type with this id (a reference's target), if the record holds it."""
        for resource in self.resources(resource_type):
            if resource.get("id") == resource_id:
                return resource
        return None

    def with_codes(self, resource_type: str, codes: Iterable[str], element: str = "code") -> list[Resource]:
        """Resources of this type with a coding in ``element`` whose code (trimmed) is in ``codes``, in order.

        The code index is built once per call and shared by every reader, so each reader touches
        only the resources it asks for (checking the system is the reader's business).
        """
        resources = self.resources(resource_type)
        return [resources[p] for p in self._positions(resource_type, codes, element)]

    def observations_with_codes(self, codes: Iterable[str]) -> list[tuple[Resource, OnlyCoding | None]]:
        """``with_codes("Observation", codes)``, each result with (trimmed code, system) of its only coding
        when ``code.coding`` is a list of one coding with a string code (what EHRs usually send), else None:
        the indexing pass read that coding already, the reader need not read it again."""
        observations = self.resources("Observation")
        only = self._only
        return [(observations[p], only[p]) for p in self._positions("Observation", codes, "code")]

    def _positions(self, resource_type: str, codes: Iterable[str], element: str) -> list[int]:
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
