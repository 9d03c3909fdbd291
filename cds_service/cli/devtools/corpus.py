"""``jak-cds corpus``: replay whole patient records that no one here wrote through every hook.

Each file is a FHIR Bundle of one patient's record as a generator or an EHR export writes it (Synthea, the
EHDS profile of its Python port ...). For each living patient, on the day after its last result, the service
is called as an EHR would call it:

- patient-view as the record stands, and with an active order of each systemic JAK inhibitor started 100 days
  before (monitoring);
- order-sign of each systemic JAK inhibitor at its usual dose (no reason given: the indication comes from the
  record, if at all);

each call twice: with every prefetch key filled by the service's own templates, and without prefetch, the
record read from a FHIR server over the same resources. What must hold, whatever the record:

1. no 5xx, and the same cards with and without prefetch;
2. every lab result on record within its window is read: no card calls an analyte missing, stale or unreadable
   when a result of it with a usable unit is on record within the analyte's window;
3. no critical card without a reason on record: its detail quotes something the record holds.

``--json`` prints the report. Exit status 1 if anything does not hold.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

from cds_service.fhir import query as fhir_query
from cds_service.fhir.values import parse_date
from cds_service.record.services import default_templates
from cds_service.record.templates import render

SERVER = "http://corpus.fhir.invalid/fhir"
# the usual adult dose of each systemic JAK inhibitor (EU SmPC): (text, mg, times a day) - what the corpus orders
USUAL = {
    "tofacitinib": ("tofacitinib 5 mg tablet", 5, 2),
    "baricitinib": ("baricitinib 4 mg tablet", 4, 1),
    "upadacitinib": ("upadacitinib 15 mg prolonged-release tablet", 15, 1),
    "filgotinib": ("filgotinib 200 mg tablet", 200, 1),
    "abrocitinib": ("abrocitinib 200 mg tablet", 200, 1),
}
_DATES = ("effectiveDateTime", "issued")


@dataclass
class Patient:
    name: str
    patient_id: str
    resources: list[dict]
    today: date


@dataclass
class Report:
    patients: int = 0
    skipped: list[str] = field(default_factory=list)
    calls: int = 0
    cards: Counter = field(default_factory=Counter)  # "indicator:rule" -> count
    labs_read: Counter = field(default_factory=Counter)  # analyte -> patients with a result in its window
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "patients": self.patients,
            "skipped": self.skipped,
            "calls": self.calls,
            "cards": dict(self.cards.most_common()),
            "labs_in_window": dict(self.labs_read.most_common()),
            "problems": self.problems,
        }


# -- the record, as a FHIR server would hold it ------------------------------------------------------------------


def _resolve_references(resources: list[dict], full_urls: dict[str, str]) -> None:
    """urn:uuid references of a transaction/document Bundle -> "Type/id", as a server does when it stores them."""

    def walk(value):
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref in full_urls:
                value["reference"] = full_urls[ref]
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(resources)


def load_patient(path: Path) -> Patient | None:
    """The patient's record, or None for a record of a patient who has died (no one orders for them)."""
    bundle = json.loads(path.read_text())
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    resources = [e["resource"] for e in entries]
    full_urls = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource'].get('id')}"
        for e in entries
        if isinstance(e.get("fullUrl"), str) and e["fullUrl"].startswith("urn:")
    }
    _resolve_references(resources, full_urls)
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), None)
    if patient is None or patient.get("deceasedDateTime") or patient.get("deceasedBoolean"):
        return None
    dates = [
        d
        for r in resources
        if r.get("resourceType") == "Observation"
        for d in (parse_date(r.get(key)) for key in _DATES)
        if d
    ]
    last = max(dates, default=date(2020, 1, 1))
    return Patient(path.stem, str(patient["id"]), resources, last + timedelta(days=1))


class _RecordServer(requests.adapters.BaseAdapter):
    """A FHIR server over one record, answering the searches the fallback fetch sends (fhir_query.search)."""

    def __init__(self, resources: list[dict]):
        super().__init__()
        self.resources = resources
        self.queries: list[str] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        query = (request.url or "")[len(SERVER) + 1 :]
        self.queries.append(query)
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/fhir+json"
        response.raw = io.BytesIO(json.dumps(fhir_query.search(self.resources, query)).encode())
        response.url, response.request = request.url or "", request
        return response

    def close(self):
        pass


# -- calling the service -------------------------------------------------------------------------------------------


def _order(drug: str, patient_id: str, status: str, authored: date) -> dict:
    text, mg, per_day = USUAL[drug]
    return {
        "resourceType": "MedicationRequest",
        "id": f"corpus-{drug}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored.isoformat(),
        "dosageInstruction": [
            {
                "text": text,
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}
                ],
            }
        ],
    }


def calls(patient: Patient):
    """(label, hook, record resources, draft orders) of every call made for one patient."""
    yield "patient-view", "patient-view", patient.resources, []
    for drug in USUAL:
        draft = _order(drug, patient.patient_id, "draft", patient.today)
        yield f"order-sign {drug}", "order-sign", patient.resources, [draft]
        taking = _order(drug, patient.patient_id, "active", patient.today - timedelta(days=100))
        yield f"patient-view on {drug}", "patient-view", [*patient.resources, taking], []


def _body(hook: str, patient: Patient, drafts: list[dict], prefetch: dict | None) -> dict:
    context: dict = {"userId": "Practitioner/corpus", "patientId": patient.patient_id}
    if hook == "order-sign":
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
    body = {"hook": hook, "hookInstance": f"corpus-{patient.name}-{hook}", "context": context}
    if prefetch is None:
        body["fhirServer"] = SERVER
        body["fhirAuthorization"] = {
            "access_token": "corpus",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "corpus",
        }
    else:
        body["prefetch"] = prefetch
    return body


class Caller:
    """The service in-process, once with prefetch and once reading from a FHIR server over the same record."""

    def __init__(self):
        from cds_service.config import Settings
        from cds_service.web.app import create_app

        self.templates = default_templates()
        self.settings = Settings.from_env(auth="off", database_url="sqlite://", allowed_fhir_servers=(SERVER,))
        self.session = requests.Session()
        self.app = create_app(self.settings, fhir_session=self.session)
        self.knowledge = self.app.extensions["jak_engine"].knowledge

    def call(
        self, hook: str, patient: Patient, resources: list[dict], drafts: list[dict], with_prefetch: bool
    ) -> tuple[int, dict]:
        engine = self.app.extensions["jak_engine"]
        engine.settings = engine.settings.with_(evaluation_date=patient.today.isoformat())
        prefetch = None
        if with_prefetch:
            context = {"patientId": patient.patient_id, "userId": "Practitioner/corpus"}
            prefetch = {
                key: fhir_query.search(resources, render(template, context)) for key, template in self.templates.items()
            }
        else:
            self.session.mount(SERVER, _RecordServer(resources))
        response = self.app.test_client().post(
            f"/cds-services/{_SERVICE[hook]}", json=_body(hook, patient, drafts, prefetch)
        )
        return response.status_code, response.get_json(silent=True) or {}


_SERVICE = {"order-sign": "jak-order-sign", "patient-view": "jak-patient-view"}


# -- what must hold ------------------------------------------------------------------------------------------------


def _card_key(card: dict) -> tuple:
    return card.get("indicator"), ((card.get("source") or {}).get("topic") or {}).get("code"), card.get("summary")


def labs_in_window(knowledge, patient: Patient) -> dict[str, str]:
    """Analyte -> the display it is named by on cards, for each analyte with a result in its window whose
    value and unit the knowledge can read."""
    from cds_service.knowledge.units import resolve_unit

    found: dict[str, str] = {}
    for resource in patient.resources:
        if resource.get("resourceType") != "Observation" or resource.get("status") in ("entered-in-error", "cancelled"):
            continue
        codings = ((resource.get("code") or {}).get("coding")) or []
        for coding in codings:
            name = knowledge.loinc_to_analyte.get(str(coding.get("code")))
            if name is None:
                continue
            analyte = knowledge.analytes[name]
            when = parse_date(resource.get("effectiveDateTime")) or parse_date(resource.get("issued"))
            quantity = resource.get("valueQuantity") or {}
            if when is None or (patient.today - when).days > analyte.max_age_days or when > patient.today:
                continue
            if isinstance(quantity.get("value"), (int, float)) and resolve_unit(
                analyte, quantity.get("code"), quantity.get("unit")
            ):
                found[name] = analyte.display
    return found


_CALLED_MISSING = (
    "no result in the last",
    "is older than",
    "could not be interpreted",
    "no eGFR or serum creatinine",
    "no serum creatinine in the last",
)


def _names(line: str, display: str) -> bool:
    """Is ``line`` a card's line about this analyte ("- **ALT**: ..." on a gap card, "- ALT (LOINC ...): ..." on
    the checklist, "ALT: ..." in a dose rule's reason)?"""
    return re.search(rf"(^|- |\*\*){re.escape(display)}(\*\*)?( \(|:)", line.strip(), re.I) is not None


def _reasons_on_record(patient: Patient) -> set[str]:
    """Texts and codes a critical card could quote from this record (lower case)."""
    out: set[str] = set()
    for resource in patient.resources:
        for key in ("code", "vaccineCode", "medicationCodeableConcept"):
            concept = resource.get(key)
            if not isinstance(concept, dict):
                continue
            if isinstance(concept.get("text"), str):
                out.add(concept["text"].lower())
            for coding in concept.get("coding") or []:
                if isinstance(coding, dict):
                    out.update(str(coding.get(k)).lower() for k in ("code", "display") if coding.get(k))
        value = (resource.get("valueQuantity") or {}).get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.add(f"{value:g}")  # a threshold card quotes the value as reported
    return {text for text in out if len(text) > 3}


def check_patient(caller: Caller, patient: Patient, report: Report) -> None:
    knowledge = caller.knowledge
    in_window = labs_in_window(knowledge, patient)
    report.labs_read.update(in_window.keys())
    reasons = _reasons_on_record(patient)
    for label, hook, resources, drafts in calls(patient):
        answers = {}
        for with_prefetch in (True, False):
            status, body = caller.call(hook, patient, resources, drafts, with_prefetch)
            report.calls += 1
            mode = "prefetch" if with_prefetch else "fhirServer"
            if status != 200:
                report.problems.append(f"{patient.name} {label} ({mode}): HTTP {status} {json.dumps(body)[:200]}")
                continue
            answers[mode] = body.get("cards", [])
        if len(answers) < 2:
            continue
        cards = answers["prefetch"]
        if sorted(map(_card_key, cards)) != sorted(map(_card_key, answers["fhirServer"])):
            report.problems.append(
                f"{patient.name} {label}: different cards with and without prefetch: "
                f"{sorted(map(_card_key, cards))} / {sorted(map(_card_key, answers['fhirServer']))}"
            )
        for card in cards:
            report.cards[f"{card['indicator']}:{_card_key(card)[1]}"] += 1
            detail = card.get("detail", "")
            for line in detail.splitlines():
                for name, display in in_window.items():
                    if _names(line, display) and any(p in line for p in _CALLED_MISSING):
                        report.problems.append(
                            f"{patient.name} {label}: {display} is on record within "
                            f"{knowledge.analytes[name].max_age_days} days but a card says: "
                            f"{line.strip()[:160]}"
                        )
            if card["indicator"] == "critical" and not any(reason in detail.lower() for reason in reasons):
                report.problems.append(
                    f"{patient.name} {label}: critical card without a reason on record: {card['summary']}"
                )


def run(paths: list[str], caller: Caller | None = None) -> Report:
    caller = caller or Caller()
    report = Report()
    files = [p for raw in paths for p in (sorted(Path(raw).glob("*.json")) if Path(raw).is_dir() else [Path(raw)])]
    for path in files:
        patient = load_patient(path)
        if patient is None:
            report.skipped.append(path.stem)
            continue
        report.patients += 1
        check_patient(caller, patient, report)
    return report


def main(args) -> int:
    report = run(args.paths)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(f"{report.patients} patients ({len(report.skipped)} skipped: deceased), {report.calls} hook calls")
        print(
            "results on record within their window, by analyte (patients): "
            + ", ".join(f"{k} {v}" for k, v in report.labs_read.most_common())
        )
        print("cards: " + (", ".join(f"{k} {v}" for k, v in report.cards.most_common()) or "none"))
        for problem in report.problems:
            print(f"PROBLEM {problem}")
        print(f"{len(report.problems)} problems")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main(type("Args", (), {"paths": sys.argv[1:], "json": False})()))
