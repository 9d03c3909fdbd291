"""Coded records: "a result/report/procedure/vaccination with this code exists, and its date".

The baseline checklist (decision 9) and the monitoring schedule (decision 10)
need presence and age only for things that are not numeric labs: viral
serology, TB screening, pregnancy test, chest X-ray, zoster vaccination, skin
examination. Only codes named in the rule tables are kept (one set look-up per
coding), so unrelated data costs nothing. Values are not interpreted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.fhir.values import codings, parse_date
from cds_service.knowledge import Knowledge
from cds_service.record.index import PatientRecord

# resource type -> (fields holding the code, fields holding the date, in order of preference)
_READ = {
    "Observation": (("code",), ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued")),
    "DiagnosticReport": (("code",), ("effectiveDateTime", "effectivePeriod", "issued")),
    "Procedure": (("code",), ("performedDateTime", "performedPeriod")),
    "Immunization": (("vaccineCode",), ("occurrenceDateTime", "recorded")),
    "ImagingStudy": (("procedureCode",), ("started",)),
}
_NOT_DONE = {"entered-in-error", "cancelled", "not-done", "preparation", "registered"}


def system_kind(system: str | None) -> str | None:
    s = str(system or "").lower()
    for kind in ("loinc", "snomed", "cvx"):
        if kind in s:
            return kind
    return None


@dataclass(frozen=True)
class CodedRecord:
    key: str  # "loinc|36643-5"
    when: date | None
    resource_type: str
    display: str


def _date(resource: dict[str, Any], fields: tuple[str, ...]) -> date | None:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        found = parse_date(value)
        if found:
            return found
    return None


def read_records(knowledge: Knowledge, record: PatientRecord) -> dict[str, list[CodedRecord]]:
    """key -> records, newest first (undated last), for every code in ``knowledge.record_keys``."""
    wanted = knowledge.record_keys
    out: dict[str, list[CodedRecord]] = {}
    if not wanted:
        return out
    for kind, (code_fields, date_fields) in _READ.items():
        # Observations: only those carrying a wanted code (shared code index), not every lab result
        resources = record.with_codes(kind, knowledge.record_codes) if kind == "Observation" else record.resources(kind)
        for resource in resources:
            if resource.get("status") in _NOT_DONE:
                continue
            concepts: list[Any] = []
            for name in code_fields:
                value = resource.get(name)
                concepts.extend(value if isinstance(value, list) else [value])
            hits = []
            for concept in concepts:
                for coding in codings(concept):
                    sys_kind = system_kind(coding.get("system"))
                    key = f"{sys_kind}|{str(coding.get('code') or '').strip()}"
                    if key in wanted and key not in hits:
                        hits.append(key)
            if not hits:
                continue
            when = _date(resource, date_fields)
            text = next((c.get("text") for c in concepts if isinstance(c, dict) and c.get("text")), None)
            for key in hits:
                out.setdefault(key, []).append(CodedRecord(key, when, kind, str(text or kind)))
    for records in out.values():
        records.sort(key=lambda r: r.when or date.min, reverse=True)
    return out
