"""The development FHIR server over fixture bundles (jak-cds fhir-server), via Flask's test client."""
from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.cli.devtools.fhir_fixture_server import create_app, load_records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
AGE_65 = "core-upadacitinib-ad-age-65"
AGE_64 = "core-upadacitinib-ad-age-64"


@pytest.fixture
def one():
    return create_app(load_records([str(FIXTURES / f"{AGE_65}.json")])).test_client()


@pytest.fixture
def two():
    return create_app(load_records([str(FIXTURES / f"{AGE_65}.json"),
                                    str(FIXTURES / f"{AGE_64}.json")])).test_client()


def _ids(bundle):
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_metadata_is_a_capability_statement_with_cors(one):
    response = one.get("/metadata", headers={"Origin": "http://127.0.0.1:8000"})
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8000"
    body = response.get_json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    assert "Patient" in {r["type"] for r in body["rest"][0]["resource"]}


def test_preflight_allows_the_sandbox_headers(one):
    response = one.options("/Observation/_search", headers={
        "Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "accept, content-type, authorization"})
    assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "accept, content-type, authorization"


def test_read_and_missing_read(one):
    patient = one.get("/Patient/p1").get_json()
    assert patient["resourceType"] == "Patient" and patient["birthDate"] == "1961-10-02"
    missing = one.get("/Patient/nobody")
    assert missing.status_code == 404 and missing.get_json()["resourceType"] == "OperationOutcome"


def test_searches_our_prefetch_templates_use(one):
    assert _ids(one.get("/Patient").get_json()) == ["p1"]
    assert _ids(one.get("/Patient?_id=p1").get_json()) == ["p1"]
    assert _ids(one.get("/Patient?_id=other").get_json()) == []
    hb = one.get("/Observation?patient=p1&code=718-7,59260-0&_sort=-date&_count=100").get_json()
    assert len(_ids(hb)) == 1 and hb["entry"][0]["resource"]["valueQuantity"]["value"] == 13.5
    assert _ids(one.get("/Observation?patient=someone-else&code=718-7").get_json()) == []
    assert len(_ids(one.get("/Observation?patient=p1&_count=2").get_json())) == 2


def test_post_search_form_encoded_as_the_sandbox_sends_it(one):
    response = one.post("/Observation/_search", data="patient=p1&code=718-7%2C59260-0&_sort=-date&_count=100",
                        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert len(_ids(response.get_json())) == 1


def test_draft_orders_are_not_served_as_the_record(one):
    # the draft order of the scenario is what the EHR would send in draftOrders, not a stored request
    assert _ids(one.get("/MedicationRequest?patient=p1").get_json()) == []


def test_writes_are_refused(one):
    assert one.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 405
    assert one.post("/Patient", json={"resourceType": "Patient"}).status_code == 405


def test_each_bundle_has_its_own_base_so_reused_ids_do_not_collide(two):
    older = two.get(f"/{AGE_65}/Patient/p1").get_json()
    younger = two.get(f"/{AGE_64}/Patient/p1").get_json()
    assert older["birthDate"] != younger["birthDate"]
    assert two.get(f"/{AGE_65}/metadata").get_json()["resourceType"] == "CapabilityStatement"
    # with several bundles there is no default record at the root
    assert two.get("/Patient/p1").status_code == 404
    index = two.get("/").get_json()
    assert {e["url"].rsplit("/", 1)[-1] for e in index["extension"]} == {AGE_65, AGE_64}


def test_our_fallback_fetch_reads_the_fixture_server(one, settings, knowledge):
    """No prefetch: the service reads fhirServer (the fixture server): the age-65 card, as with prefetch."""
    import requests
    from requests.adapters import BaseAdapter

    from cds_service.web.app import create_app as create_service
    from cds_service.cli.replay import build_request, load_scenario
    from cds_service.record.services import default_templates

    class ToFixtureServer(BaseAdapter):
        def send(self, request, **kwargs):
            path = request.url.split("http://127.0.0.1:8099", 1)[1]
            answer = one.get(path)
            response = requests.Response()
            response.status_code = answer.status_code
            response.headers.update(dict(answer.headers))
            response.raw = __import__("io").BytesIO(answer.data)
            response.url = request.url
            return response

        def close(self):
            pass

    session = requests.Session()
    session.mount("http://127.0.0.1:8099", ToFixtureServer())
    service = create_service(settings, knowledge=knowledge, fhir_session=session).test_client()
    scenario = load_scenario(FIXTURES / f"{AGE_65}.json")
    body = {"hook": "order-sign", "hookInstance": "h-1", "fhirServer": "http://127.0.0.1:8099",
            "context": {"userId": "Practitioner/x", "patientId": "p1",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": d} for d in scenario.drafts]}}}
    keys = lambda b: sorted(f"{c['indicator']}:{c['source']['topic']['code']}"  # noqa: E731
                            for c in service.post("/cds-services/jak-order-sign", json=b).get_json()["cards"])
    fetched = keys(body)
    assert "warning:upadacitinib-ad-age-65" in fetched
    # the same cards as when the EHR sends the prefetch itself
    with_prefetch = build_request(scenario, default_templates())
    assert fetched == keys(with_prefetch)


def test_the_cli_serves_on_loopback_only(capsys):
    from cds_service.cli import main

    assert main(["fhir-server", str(FIXTURES / f"{AGE_65}.json"), "--host", "0.0.0.0"]) == 2
    assert "loopback only" in capsys.readouterr().err
