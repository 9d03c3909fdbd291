"""Run FHIR read/search URLs against a list of resources held in memory.

Used by ``jak-cds replay`` to fill ``prefetch`` from a fixture bundle by
executing the service's own prefetch templates, and by the tests to stand
in for an EHR's FHIR server. Supports what the templates use: reads,
``patient``/``subject``, ``code`` (with or without system), ``status``,
``date`` (ge/le/gt/lt), ``_id``, ``_sort=-date`` and ``_count``. Also serves
``jak-cds fhir-server`` (cds_service/devtools/fhir_fixture_server.py).
"""

from __future__ import annotations

from datetime import date
from urllib.parse import parse_qsl, urlsplit

from cds_service.fhir.values import parse_date

_DATE_FIELDS = (
    "effectiveDateTime",
    "issued",
    "authoredOn",
    "onsetDateTime",
    "recordedDate",
    "occurrenceDateTime",
    "dateAsserted",
)


def _resource_date(resource: dict) -> date | None:
    for key in _DATE_FIELDS:
        found = parse_date(resource.get(key))
        if found:
            return found
    period = resource.get("effectivePeriod")
    return parse_date(period.get("start")) if isinstance(period, dict) else None


def _patient_ref(resource: dict) -> str | None:
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return ref["reference"].split("/")[-1]
    return None


def _codes(resource: dict) -> set[str]:
    out = set()
    for key in ("code", "medicationCodeableConcept", "vaccineCode"):
        concept = resource.get(key)
        codings = (concept or {}).get("coding") if isinstance(concept, dict) else None
        for coding in codings or []:
            if isinstance(coding, dict) and coding.get("code"):
                out.add(str(coding["code"]))
                if coding.get("system"):
                    out.add(f"{coding['system']}|{coding['code']}")
    return out


def _matches_date(resource: dict, value: str) -> bool:
    prefix, raw = (value[:2], value[2:]) if value[:2] in ("ge", "le", "gt", "lt", "eq") else ("eq", value)
    wanted, actual = parse_date(raw), _resource_date(resource)
    if wanted is None or actual is None:
        return False
    return {
        "ge": actual >= wanted,
        "le": actual <= wanted,
        "gt": actual > wanted,
        "lt": actual < wanted,
        "eq": actual == wanted,
    }[prefix]


def search(resources: list[dict], query: str) -> dict:
    """Execute ``Type/id`` or ``Type?params`` and return a resource or a searchset Bundle."""
    parts = urlsplit(query)
    path = parts.path.strip("/")
    if "/" in path and not parts.query:
        kind, ident = path.split("/", 1)
        for resource in resources:
            if resource.get("resourceType") == kind and resource.get("id") == ident:
                return resource
        return {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found", "diagnostics": f"{kind}/{ident} not found"}],
        }
    kind = path
    hits = [r for r in resources if r.get("resourceType") == kind]
    count, sort_desc = None, False
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("patient", "subject"):
            target = value.split("/")[-1]
            hits = [r for r in hits if _patient_ref(r) == target]
        elif name == "_id":
            wanted = set(value.split(","))
            hits = [r for r in hits if r.get("id") in wanted]
        elif name == "code":
            wanted = set(value.split(","))
            hits = [r for r in hits if _codes(r) & wanted]
        elif name == "status":
            wanted = set(value.split(","))
            hits = [r for r in hits if r.get("status") in wanted]
        elif name == "date":
            hits = [r for r in hits if _matches_date(r, value)]
        elif name == "_count":
            count = int(value)
        elif name == "_sort":
            sort_desc = value in ("-date", "-_lastUpdated")
    if sort_desc:
        hits.sort(key=lambda r: _resource_date(r) or date.min, reverse=True)
    if count is not None:
        hits = hits[:count]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(hits),
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r.get('id')}", "resource": r, "search": {"mode": "match"}} for r in hits
        ],
    }
