"""Calling a hook the way an EHR does, and reading the cards it answers.

``make_request`` builds a CDS Hooks request for a record (and its draft orders), ``call_hook`` POSTs it,
``serve_fhir`` makes ``responses`` act as the EHR's FHIR server over the same resources.
"""
from __future__ import annotations

import json
import re
import uuid

import responses

from cds_service.fhir.query import search
from cds_service.record.services import default_templates
from cds_service.record.templates import render

FHIR_BASE = "http://127.0.0.1:9999/fhir"
SERVICE_FOR_HOOK = {"order-sign": "jak-order-sign", "order-select": "jak-order-select",
                    "patient-view": "jak-patient-view"}


def make_request(resources: list[dict], hook: str = "order-sign", *, drafts: list[dict] | None = None,
                 templates: dict[str, str] | None = None, prefetch: bool | list[str] = True,
                 fhir_server: str | None = None, token: str | None = "secret-token", patient_id: str = "p1") -> dict:
    """A CDS Hooks request for ``resources`` (the record) and ``drafts`` (draft orders).

    prefetch=True: every template key filled; a list: only those keys; False: none.
    Draft MedicationRequests (status "draft") found in ``resources`` are used when ``drafts`` is None.
    """
    if drafts is None:
        drafts = [r for r in resources if r.get("resourceType") == "MedicationRequest" and r.get("status") == "draft"]
    record = [r for r in resources if r not in drafts]
    context = {"userId": "Practitioner/dr-1", "patientId": patient_id}
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": d} for d in drafts]}
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts]
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    templates = templates or default_templates()
    keys = list(templates) if prefetch is True else (prefetch or [])
    if keys:
        body["prefetch"] = {k: search(record, render(templates[k], context)) for k in keys}
    if fhir_server:
        body["fhirServer"] = fhir_server
        if token:
            body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                         "scope": "patient/*.read", "subject": "cds-service"}
    return body


def serve_fhir(rsps: responses.RequestsMock, resources: list[dict], base: str = FHIR_BASE, calls: list | None = None):
    """Make ``responses`` act as the EHR's FHIR server over ``resources``."""

    def handler(request):
        if calls is not None:
            calls.append(request)
        query = request.url[len(base):].lstrip("/")
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(search(resources, query))

    rsps.add_callback(responses.GET, re.compile(re.escape(base) + r"/.*"), callback=handler)


def call_hook(client, resources: list[dict], hook: str = "order-sign", **kwargs):
    """POST a hook call; returns the Flask response."""
    return client.post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=make_request(resources, hook, **kwargs))


def cards_of(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def rule_of(card: dict) -> str:
    return card["source"]["topic"]["code"]


def alerts(cards: list[dict]) -> list[dict]:
    """Warning and critical cards (what a clean patient must never get)."""
    return [c for c in cards if c["indicator"] in ("warning", "critical")]
