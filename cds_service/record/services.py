"""The discovery document (GET /cds-services), built from ``services.toml`` and the knowledge.

Plain prefetch templates are written in ``services.toml``. Coded searches (``[coded_prefetch.<key>]``) are not:
their ``code=`` lists are filled from the knowledge's value sets at start-up (decision 16), so every code a
rule recognises is asked for, by the prefetch and by the fallback fetch alike (they use the same templates).
A coded template longer than the URL budget is split into more keys (``screening``, ``screening-2`` ...).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cds_service.fhir.values import query_type
from cds_service.wire import HOOKS

SERVICES_FILE = Path(__file__).with_name("services.toml")
# URL budget of one prefetch query, relative to fhirServer, with a patient id of PATIENT_ID_ALLOWANCE characters:
# many EHRs and proxies cap a URL near 2 000 characters, and the fhirServer base comes in front of the query.
URL_BUDGET = 1500
PATIENT_ID_ALLOWANCE = 64
_PATIENT_TOKEN = "{{context.patientId}}"
_CODES = "{codes}"


class DiscoveryError(SystemExit):
    """services.toml is malformed or does not cover the knowledge (stops start-up)."""


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    usage: str | None = None

    def as_json(self) -> dict:
        body = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }
        if self.usage:
            body["usageRequirements"] = self.usage
        return body


def rendered_length(template: str) -> int:
    """Length of a template once its patient token holds an id of the allowed length."""
    return len(template.replace(_PATIENT_TOKEN, "x" * PATIENT_ID_ALLOWANCE))


def _chunks(query: str, codes: list[str], budget: int) -> list[list[str]]:
    """``codes`` cut into as few runs as keep each filled ``query`` within ``budget`` (order kept)."""
    base = rendered_length(query.replace(_CODES, ""))
    runs: list[list[str]] = [[]]
    length = base
    for code in codes:
        extra = len(code) + (1 if runs[-1] else 0)
        if runs[-1] and length + extra > budget:
            runs.append([])
            length, extra = base, len(code)
        if base + len(code) > budget:
            raise DiscoveryError(f"prefetch code {code!r} does not fit the URL budget of {budget} characters")
        runs[-1].append(code)
        length += extra
    return runs


def coded_templates(spec: dict[str, dict], knowledge, budget: int = URL_BUDGET) -> dict[str, str]:
    """``[coded_prefetch.*]`` filled with the knowledge's codes: key -> template (split keys get -2, -3 ...).

    A key takes the codes of the ``analytes`` and qualitative ``tests`` it names; ``rest = true`` takes every
    other code the knowledge reads in that resource type. Codes asked for by no key stop start-up."""
    chosen: dict[str, list[str]] = {}
    taken: dict[str, set[str]] = {}
    rest_keys: dict[str, str] = {}
    tests = getattr(knowledge.rules, "qualitative_test", {})
    for key, entry in spec.items():
        query = entry.get("query", "")
        kind = query_type(query)
        if _CODES not in query or "code=" + _CODES not in query:
            raise DiscoveryError(f"coded_prefetch.{key}: the query must contain 'code={_CODES}'")
        codes: list[str] = []
        for analyte in entry.get("analytes", []):
            if analyte not in knowledge.analytes:
                raise DiscoveryError(f"coded_prefetch.{key}: unknown analyte {analyte!r}")
            codes += knowledge.analytes[analyte].loinc
        for test in entry.get("tests", []):
            if test not in tests:
                raise DiscoveryError(f"coded_prefetch.{key}: unknown qualitative_test {test!r}")
            codes += tests[test].loinc
        if entry.get("rest"):
            if kind in rest_keys:
                raise DiscoveryError(f"coded_prefetch.{key}: {kind} already has a rest key ({rest_keys[kind]})")
            rest_keys[kind] = key
        chosen[key] = list(dict.fromkeys(codes))
        taken.setdefault(kind, set()).update(codes)
    for kind, read in knowledge.codes_read.items():
        left = sorted(read - taken.get(kind, set()))
        if not left or kind in ("Condition",):
            continue  # Conditions are fetched whole (no code filter)
        if kind not in rest_keys:
            raise DiscoveryError(
                f"the knowledge reads {kind} codes no prefetch template asks for "
                f"({', '.join(left[:5])}...): give a [coded_prefetch.*] key with rest = true"
            )
        chosen[rest_keys[kind]] += left
    templates: dict[str, str] = {}
    for key, entry in spec.items():
        if not chosen[key]:
            continue  # nothing to ask for (e.g. no procedure codes in the knowledge)
        for n, run in enumerate(_chunks(entry["query"], chosen[key], budget), start=1):
            templates[key if n == 1 else f"{key}-{n}"] = entry["query"].replace(_CODES, ",".join(run))
    return templates


def load_services(knowledge, path: Path = SERVICES_FILE) -> dict[str, Service]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    prefetch = dict(data["prefetch"])
    for key, template in coded_templates(data.get("coded_prefetch", {}), knowledge).items():
        if key in prefetch:
            raise DiscoveryError(f"prefetch key {key!r} is both a plain and a coded template")
        prefetch[key] = template
    for key, query in prefetch.items():
        if rendered_length(query) > URL_BUDGET:
            raise DiscoveryError(
                f"prefetch template {key!r} is {rendered_length(query)} characters with a "
                f"{PATIENT_ID_ALLOWANCE}-character patient id; keep it within {URL_BUDGET}"
            )
    services = {}
    for entry in data["services"]:
        if entry["hook"] not in HOOKS:
            raise DiscoveryError(f"service {entry['id']}: unknown hook {entry['hook']!r}")
        services[entry["id"]] = Service(
            entry["id"], entry["hook"], entry["title"], entry["description"], prefetch, entry.get("usageRequirements")
        )
    return services


@lru_cache(maxsize=1)
def default_templates() -> dict[str, str]:
    """The prefetch templates with the default knowledge (replay, benchmark and tests), worked out once."""
    from cds_service.config import Settings
    from cds_service.knowledge import load_knowledge

    return next(iter(load_services(load_knowledge(Settings().knowledge_dir)).values())).prefetch


def discovery_document(services: dict[str, Service]) -> dict:
    return {"services": [s.as_json() for s in services.values()]}
