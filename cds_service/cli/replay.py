"""``jak-cds replay``: act as an EHR over fixture bundles.

For each bundle: take the draft orders (MedicationRequest with status
"draft"), fill ``prefetch`` by executing the service's own prefetch
templates against the rest of the bundle, call the service (in-process, or
over HTTP with --url) and print the cards. ``--check`` compares the cards
with the bundle's expected cards (see fixtures/builders.py).
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cds_service.cards import RULE_SYSTEM
from cds_service.fhir import query as fhir_query
from cds_service.record.services import default_templates

if TYPE_CHECKING:
    from flask import Flask

TAG = "https://jak-cds.example.org/fhir/replay"
SERVICE_FOR_HOOK = {
    "order-sign": "jak-order-sign",
    "order-select": "jak-order-select",
    "patient-view": "jak-patient-view",
}


@dataclass
class Scenario:
    path: Path
    name: str
    hook: str
    at: str | None
    expect: list[str]
    description: str
    resources: list[dict]
    drafts: list[dict]
    patient_id: str


def load_scenario(path: Path) -> Scenario:
    bundle = json.loads(path.read_text())
    if bundle.get("resourceType") != "Bundle":
        raise SystemExit(f"{path}: not a FHIR Bundle")
    tags = (bundle.get("meta") or {}).get("tag") or []
    by = lambda suffix: [t for t in tags if t.get("system") == f"{TAG}/{suffix}"]  # noqa: E731
    resources = [e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict) and "resource" in e]
    drafts = [r for r in resources if r.get("resourceType") == "MedicationRequest" and r.get("status") == "draft"]
    record = [r for r in resources if r not in drafts]
    patient = next((r for r in record if r.get("resourceType") == "Patient"), None)
    hook = (by("hook") or [{"code": "order-sign" if drafts else "patient-view"}])[0]["code"]
    description = (by("description") or [{}])[0].get("display", "")
    return Scenario(
        path,
        bundle.get("id") or path.stem,
        hook,
        (by("date") or [{}])[0].get("code"),
        [t["code"] for t in by("expect")],
        description,
        record,
        drafts,
        patient.get("id") if patient else "unknown",
    )


def build_request(scenario: Scenario, prefetch_templates: dict[str, str]) -> dict:
    context: dict[str, Any] = {"userId": "Practitioner/replay", "patientId": scenario.patient_id}
    if scenario.hook in ("order-select", "order-sign"):
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in scenario.drafts],
        }
        if scenario.hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d.get('id')}" for d in scenario.drafts]
    prefetch: dict[str, Any] = {}
    from cds_service.record.templates import render

    for key, template in prefetch_templates.items():
        prefetch[key] = fhir_query.search(scenario.resources, render(template, context))
    return {"hook": scenario.hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}


def card_keys(response: dict) -> list[str]:
    keys = []
    for card in response.get("cards", []):
        topic = (card.get("source") or {}).get("topic") or {}
        rule = topic.get("code") if topic.get("system") == RULE_SYSTEM else "?"
        keys.append(f"{card.get('indicator')}:{rule}")
    return keys


def iter_paths(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        out.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return out


class InProcess:
    def __init__(self, at: str | None):
        from cds_service.config import Settings
        from cds_service.web.app import create_app

        # replays are rehearsals: keep their audit rows out of the real database
        self.base = Settings.from_env(auth="off", database_url="sqlite://")
        self.apps: dict[str | None, Flask] = {}
        self.at = at
        self._create = create_app

    def call(self, service_id: str, body: dict, at: str | None) -> tuple[int, dict]:
        key = self.at or at
        if key not in self.apps:
            engine = None
            if self.apps:
                engine = next(iter(self.apps.values())).extensions["jak_engine"]
                from dataclasses import replace

                engine = replace(engine, settings=engine.settings.with_(evaluation_date=key))
            self.apps[key] = self._create(self.base.with_(evaluation_date=key), engine=engine)
        response = self.apps[key].test_client().post(f"/cds-services/{service_id}", json=body)
        return response.status_code, response.get_json(silent=True) or {}


class OverHttp:
    def __init__(self, url: str):
        import requests

        self.url = url.rstrip("/")
        self.session = requests.Session()

    def call(self, service_id: str, body: dict, at: str | None) -> tuple[int, dict]:
        response = self.session.post(f"{self.url}/cds-services/{service_id}", json=body, timeout=(2, 30))
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": response.text[:500]}


def render_cards(response: dict) -> str:
    lines = []
    for card in response.get("cards", []):
        lines.append(f"  [{card['indicator'].upper()}] {card['summary']}")
        for suggestion in card.get("suggestions", []):
            lines.append(f"      -> suggestion: {suggestion['label']}")
        lines.append(f"      source: {card['source']['label']}")
    return "\n".join(lines) if lines else "  (no cards)"


def main(args) -> int:
    templates = default_templates()
    caller = OverHttp(args.url) if args.url else InProcess(args.at)
    failures = 0
    paths = iter_paths(args.paths)
    if not paths:
        print("jak-cds replay: no fixture files found", file=sys.stderr)
        return 2
    for path in paths:
        scenario = load_scenario(path)
        body = build_request(scenario, templates)
        status, response = caller.call(SERVICE_FOR_HOOK[scenario.hook], body, args.at or scenario.at)
        got = sorted(card_keys(response)) if status == 200 else [f"http:{status}"]
        ok = got == sorted(scenario.expect)
        failures += not ok
        if args.json:
            print(json.dumps({"fixture": scenario.name, "status": status, "response": response}, indent=2))
            continue
        mark = "" if not args.check else ("  OK" if ok else "  MISMATCH")
        print(f"{scenario.name} ({scenario.hook}){mark}")
        if scenario.description:
            print(f"  {scenario.description}")
        print(render_cards(response) if status == 200 else f"  HTTP {status}: {json.dumps(response)[:300]}")
        if args.check and not ok:
            print(f"  expected: {sorted(scenario.expect)}\n  got:      {got}")
    if args.check:
        print(f"{len(paths) - failures} passed, {failures} failed")
        return 1 if failures else 0
    return 0
