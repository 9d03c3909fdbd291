"""A prefetch key sent as the first page of a search (CDS Hooks 2.0 allows paged prefetch; the CDS Hooks
sandbox forwards whatever page its FHIR server returns) is completed from fhirServer, or said to be
incomplete: never read as the whole list."""
import json
import re

import responses

from fixtures.builders import ICD10, condition, draft_order, full_baseline, patient
from tests.helpers.hooks import FHIR_BASE, alerts, make_request, rule_of

RA = condition("69896004", "Rheumatoid arthritis")
TB = condition("A15.0", "Tuberculosis of lung", system=ICD10)
FILLER = [condition("57190000", f"Myopia {i}") for i in range(3)]   # not read by any rule


def searchset(resources, next_url=None):
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "self", "url": f"{FHIR_BASE}/Condition?patient=p1"},
                          {"relation": "next", "url": next_url}]
    return bundle


def sign(client, *, page_one, next_url, fhir_server=FHIR_BASE):
    """order-sign for upadacitinib; the record's conditions arrive as ``page_one`` (+ ``next_url``)."""
    record = [patient(), *full_baseline(), RA]
    body = make_request([*record, draft_order("upadacitinib 15 mg", 15)], fhir_server=fhir_server)
    body["prefetch"]["conditions"] = searchset(page_one, next_url)
    response = client.post("/cds-services/jak-order-sign", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def test_the_rest_of_a_paged_prefetch_is_read_and_active_tb_on_page_two_is_found(client):
    page_two = f"{FHIR_BASE}/Condition?patient=p1&_page=2"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, page_two, json=searchset([TB]), content_type="application/fhir+json")
        cards = sign(client, page_one=[RA, *FILLER], next_url=page_two)
    assert [(c["indicator"], rule_of(c)) for c in alerts(cards)] == [("critical", "active-tuberculosis")]


def test_near_miss_a_complete_first_page_is_not_fetched_again(client):
    with responses.RequestsMock() as rsps:      # any outbound call would fail the test
        cards = sign(client, page_one=[RA, *FILLER], next_url=None)
        assert len(rsps.calls) == 0
    assert alerts(cards) == []


def test_without_fhir_server_the_incomplete_list_is_said(client):
    cards = sign(client, page_one=[RA, *FILLER], next_url=f"{FHIR_BASE}/Condition?patient=p1&_page=2",
                 fhir_server=None)
    [gap] = [c for c in cards if rule_of(c) == "missing-data"]
    assert gap["indicator"] == "warning"
    assert "only the first page" in gap["detail"]


def test_a_next_page_on_another_host_is_not_followed(client):
    with responses.RequestsMock() as rsps:
        cards = sign(client, page_one=[RA, *FILLER], next_url="http://evil.example/Condition?page=2")
        assert len(rsps.calls) == 0
    [gap] = [c for c in cards if rule_of(c) == "missing-data"]
    assert "not on fhirServer" in gap["detail"]


def test_a_failing_next_page_is_said_and_the_first_page_still_used(client):
    page_two = f"{FHIR_BASE}/Condition?patient=p1&_page=2"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, re.compile(re.escape(page_two)), status=500, body=json.dumps({}))
        cards = sign(client, page_one=[TB, *FILLER], next_url=page_two)
    assert ("critical", "active-tuberculosis") in [(c["indicator"], rule_of(c)) for c in cards]
    [gap] = [c for c in cards if rule_of(c) == "missing-data"]
    assert "the rest could not be read" in gap["detail"] and "HTTP 500" in gap["detail"]
