"""CDS Hooks 2.0 protocol: discovery, request validation, errors, CORS, card shape."""
import uuid

import pytest

from cds_service.record.services import URL_BUDGET, rendered_length
from fixtures.builders import condition, draft_order, full_baseline, obs, patient
from tests.helpers.hooks import make_request

RA = condition("69896004", "Rheumatoid arthritis")


def test_discovery_lists_three_services_with_prefetch(client):
    body = client.get("/cds-services").get_json()
    hooks = {s["hook"]: s for s in body["services"]}
    assert set(hooks) == {"patient-view", "order-select", "order-sign"}
    for service in body["services"]:
        assert service["id"] and service["title"] and service["description"]
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        for query in service["prefetch"].values():
            assert rendered_length(query) <= URL_BUDGET        # the budget services.toml states (decision 16)
            assert "{{" not in query.replace("{{context.patientId}}", "")


@pytest.mark.parametrize("body,fragment", [
    (b"{not json", "not valid JSON"),
    (b"[]", "JSON object"),
    (b"{}", "hook"),
    (b'{"hook": "order-sign", "hookInstance": "x", "context": {}}', "patientId"),
    (b'{"hook": "order-sign", "hookInstance": "x", "context": {"patientId": "p1"}}', "draftOrders"),
    (b'{"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p1"}}', "order-sign"),
    (b'{"hook": "order-sign", "hookInstance": "x", "fhirServer": "ftp://x", "context": {"patientId": "p1", "draftOrders": {}}}',
     "fhirServer"),
])
def test_bad_requests_get_400_with_operation_outcome(client, body, fragment):
    response = client.post("/cds-services/jak-order-sign", data=body, content_type="application/json")
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert fragment in outcome["issue"][0]["diagnostics"]


def test_draft_orders_that_are_not_a_bundle_get_400(client):
    body = make_request([patient()], drafts=[])
    body["context"]["draftOrders"] = "MedicationRequest/123"
    response = client.post("/cds-services/jak-order-sign", json=body)
    assert response.status_code == 400 and "draftOrders" in response.get_json()["issue"][0]["diagnostics"]


def test_unknown_service_is_404_with_operation_outcome(client):
    response = client.post("/cds-services/nope", json={})
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_wrong_content_type_is_415(client):
    response = client.post("/cds-services/jak-order-sign", data="hook=x", content_type="text/plain")
    assert response.status_code == 415


def test_no_prefetch_and_no_fhir_server_is_412(client):
    body = make_request([patient(), draft_order("upadacitinib 15 mg", 15)], prefetch=False)
    response = client.post("/cds-services/jak-order-sign", json=body)
    assert response.status_code == 412
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_cors_preflight_with_authorization_header_succeeds(client):
    response = client.options("/cds-services/jak-order-sign", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_responses_carry_cors_headers(client):
    assert client.get("/cds-services", headers={"Origin": "http://x"}).headers["Access-Control-Allow-Origin"] == "http://x"


def _walk(value, path="$"):
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def card_shape_problems(response_body: dict) -> list[str]:
    problems = []
    for path, value in _walk(response_body):
        if path == "$.cards":
            continue
        if value is None or value == "" or value == [] or value == {}:
            problems.append(f"{path} is empty")
    for card in response_body["cards"]:
        uuid.UUID(card["uuid"])
        if not (0 < len(card["summary"]) < 140):
            problems.append("summary length")
        if card["indicator"] not in ("info", "warning", "critical"):
            problems.append("indicator")
        if not card["source"]["label"] or not card["source"]["url"].startswith("https://"):
            problems.append("source")
        if card.get("suggestions"):
            if card.get("selectionBehavior") not in ("at-most-one", "any"):
                problems.append("selectionBehavior missing")
            for suggestion in card["suggestions"]:
                uuid.UUID(suggestion["uuid"])
        if card["indicator"] in ("warning", "critical") and not card.get("overrideReasons"):
            problems.append("overrideReasons missing on a warning/critical card")
    return problems


@pytest.mark.parametrize("resources", [
    [patient(age=70), *full_baseline(age=70), RA, draft_order("baricitinib 4 mg", 4)],          # dose card
    [patient(), *full_baseline(), obs("751-8", 0.5, "10*9/L", 1), RA, draft_order("upadacitinib 15 mg", 15)],
    [patient(), RA, draft_order("upadacitinib 15 mg", 15)],                                        # missing data
])
def test_every_card_follows_the_spec(client, resources):
    response = client.post("/cds-services/jak-order-sign", json=make_request(resources))
    body = response.get_json()
    assert body["cards"], "scenario should produce cards"
    assert card_shape_problems(body) == []


def test_order_select_and_order_sign_give_the_same_answer(client):
    resources = [patient(age=70), *full_baseline(age=70), RA, draft_order("baricitinib 4 mg", 4)]
    select = client.post("/cds-services/jak-order-select", json=make_request(resources, "order-select")).get_json()
    sign = client.post("/cds-services/jak-order-sign", json=make_request(resources, "order-sign")).get_json()
    strip = lambda cards: [(c["indicator"], c["summary"], c["source"]["topic"]["code"]) for c in cards]  # noqa: E731
    assert strip(select["cards"]) == strip(sign["cards"]) != []


def test_single_resource_instead_of_list_is_tolerated(client):
    order = draft_order("baricitinib 4 mg", 4)
    order["dosageInstruction"] = order["dosageInstruction"][0]       # object where R4 wants a list
    order["medicationCodeableConcept"]["coding"] = {"system": "http://www.whocc.no/atc", "code": "L04AF02"}
    resources = [patient(age=70), *full_baseline(age=70), RA, order]
    cards = client.post("/cds-services/jak-order-sign", json=make_request(resources)).get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["baricitinib-age-65", "prac-risk-groups"]   # 70 y


def test_invalid_draft_order_is_evaluated_and_the_problem_is_said(client):
    order = draft_order("baricitinib 4 mg", 4)
    order["authoredOn"] = "last tuesday"
    resources = [patient(age=70), *full_baseline(age=70), RA]
    cards = client.post("/cds-services/jak-order-sign", json=make_request(resources, drafts=[order])).get_json()["cards"]
    rules = {c["source"]["topic"]["code"] for c in cards}
    assert rules == {"baricitinib-age-65", "prac-risk-groups", "missing-data"}
    assert any("not valid FHIR R4" in c["detail"] for c in cards)


def test_discovery_url_with_a_trailing_slash_works(client):
    response = client.get("/cds-services/")
    assert response.status_code == 200 and len(response.get_json()["services"]) == 3


def test_browser_clients_may_read_the_authentication_challenge(client):
    exposed = client.get("/cds-services", headers={"Origin": "http://x"}).headers["Access-Control-Expose-Headers"]
    assert "WWW-Authenticate" in exposed
