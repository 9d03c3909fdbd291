"""FHIR JSON as real EHRs send it, read tolerantly: dates, codings, Bundles, query URLs.

Nothing here knows a clinical rule: a value that cannot be read is ``None`` or empty, never a guess.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from cds_service.fhir.tolerant import as_list

LOINC_SYSTEM = "http://loinc.org"
# statuses that mean a resource does not stand (a result, order or statement entered in error or cancelled)
VOID_STATUS = frozenset({"entered-in-error", "cancelled"})


def parse_date(value: object) -> date | None:
    """FHIR date/dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or with a time) -> date (first day if partial)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    return parse_date_text(value)


@lru_cache(maxsize=8192)  # a record repeats the same few dates (one per visit) across many resources
def parse_date_text(value: str) -> date | None:
    """``parse_date`` of a string already known to have at least four characters."""
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def codings(concept: object) -> list[dict[str, Any]]:
    """A CodeableConcept's codings (the coding objects only; a single object where R4 wants a list is read)."""
    if not isinstance(concept, dict):
        return []
    found = concept.get("coding") or []
    if isinstance(found, dict):  # tolerate a single object where R4 wants a list
        return [found]
    if not isinstance(found, list):  # a string or number where a list belongs: no codings
        return []
    for c in found:  # the usual case, a list of objects: no copy (callers only read it)
        if not isinstance(c, dict):
            return [c for c in found if isinstance(c, dict)]
    return found


def loinc_or_unstated(system: object) -> bool:
    """A coding's system is LOINC, or is not stated (read as LOINC: EHRs often leave it out)."""
    return not system or system == LOINC_SYSTEM or "loinc" in str(system).lower()


def resources_of(value: object) -> list[dict[str, Any]] | None:
    """A prefetch value -> list of resources, or None when it is an error/unusable.

    Accepts a searchset Bundle, a single resource, or (a common deviation) a
    bare list of resources.
    """
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict) and isinstance(r.get("resourceType"), str)]
    if not isinstance(value, dict):
        return None
    kind = value.get("resourceType")
    if kind == "OperationOutcome" or not isinstance(kind, str):
        return None
    if kind == "Bundle":
        # JSON gives exact dicts and strs: ``type(x) is`` instead of isinstance (one entry per result)
        return [
            resource
            for entry in as_list(value.get("entry"))
            if type(entry) is dict
            and type(resource := entry.get("resource")) is dict
            and type(rtype := resource.get("resourceType")) is str
            and rtype != "OperationOutcome"
        ]
    return [value]


def query_type(query: str) -> str:
    """The resource type a prefetch template or FHIR query reads: ``Observation?code=...`` -> ``Observation``."""
    return query.lstrip("/").split("?", 1)[0].split("/", 1)[0]
