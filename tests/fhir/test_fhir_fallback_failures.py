"""Outbound FHIR fallback under failure: never a 500, never a hang, always a stated gap.

The EHR's FHIR server is stood in for by ``responses``; each test breaks the one
prefetch key the EHR did not send (haematology) in a different way.
"""
from __future__ import annotations

import json
import logging
import re
import time

import pytest
import requests
import responses

from cds_service.web.app import create_app
from cds_service.fhir.client import FhirClient, server_allowed
from cds_service.wire import FhirAuthorization
from fixtures.builders import draft_order, medication_request
from tests.helpers.hooks import FHIR_BASE, make_request
from tests.helpers.records import RA, record
from tests.helpers.trust import trust_settings

SIGN = "/cds-services/jak-order-sign"
HAEM = re.compile(re.escape(FHIR_BASE) + r"/Observation\?patient=p1&code=718-7.*")
BUDGET = 0.4


@pytest.fixture
def client(tmp_path, knowledge):
    settings = trust_settings(tmp_path, auth="off", fhir_timeout=BUDGET, fhir_connect_timeout=0.2)
    return create_app(settings, knowledge=knowledge).test_client()


def body_missing_haematology(server=FHIR_BASE, token="secret-token-xyz"):
    resources = record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])
    keys = [k for k in make_request(resources)["prefetch"] if k != "haematology"]
    return make_request(resources, prefetch=keys, fhir_server=server, token=token)


def post_timed(client, body):
    start = time.monotonic()
    response = client.post(SIGN, json=body)
    return response, time.monotonic() - start


def could_not_check(response, reason: str) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    gaps = [c for c in cards if c["source"].get("topic", {}).get("code") == "missing-data"]
    assert gaps, f"no 'could not check' card in {[c['summary'] for c in cards]}"
    assert "not** done" in gaps[0]["detail"] or "could not" in gaps[0]["summary"].lower()
    assert reason in gaps[0]["detail"], gaps[0]["detail"]
    return gaps[0]


def test_control_a_working_server_fills_the_gap_and_no_card_is_shown(client):
    from tests.helpers.hooks import serve_fhir
    resources = record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])
    with responses.RequestsMock() as rsps:
        serve_fhir(rsps, resources)
        response, _ = post_timed(client, body_missing_haematology())
        assert len(rsps.calls) == 1
        assert rsps.calls[0].request.headers["Authorization"] == "Bearer secret-token-xyz"
    assert response.status_code == 200
    assert not [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == "missing-data"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503])
def test_error_status_becomes_a_could_not_check_card(client, status):
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, status=status, json={"resourceType": "OperationOutcome", "issue": []})
        response, elapsed = post_timed(client, body_missing_haematology())
    could_not_check(response, f"answered HTTP {status}")
    assert elapsed < BUDGET + 1


def test_slow_server_is_cut_off_at_the_budget(client):
    def slow(_request):
        time.sleep(BUDGET + 1.5)
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps({"resourceType": "Bundle", "entry": []})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, HAEM, callback=slow)
        response, elapsed = post_timed(client, body_missing_haematology())
    could_not_check(response, f"did not answer within {BUDGET:g} s")
    assert elapsed < BUDGET + 1.0, f"took {elapsed:.2f} s with a budget of {BUDGET} s"


@pytest.mark.parametrize("hook_name", ["order-sign", "patient-view"])
def test_every_fetch_of_one_hook_call_shares_one_budget(tmp_path, knowledge, hook_name):
    """The rest of a paged key, the medications patient-view reads first, and the keys not sent are
    fetched in turn; together they take one budget (JAK_CDS_FHIR_TIMEOUT), not one budget each."""
    budget = 1.0
    settings = trust_settings(tmp_path, auth="off", fhir_timeout=budget, fhir_connect_timeout=0.2)
    slow_client = create_app(settings, knowledge=knowledge).test_client()
    resources = record(extra=[RA, medication_request("upadacitinib 15 mg", dose_mg=15, authored_days_ago=200),
                              draft_order("upadacitinib 15 mg", 15)])
    keys = [k for k in make_request(resources)["prefetch"] if k not in ("haematology", "medications")]
    body = make_request(resources, hook_name, prefetch=keys, fhir_server=FHIR_BASE)
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": f"{FHIR_BASE}/Condition?patient=p1&_page=2"}]

    def slow(_request):
        time.sleep(budget * 3)
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps({"resourceType": "Bundle", "entry": []})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), callback=slow)
        start = time.monotonic()
        response = slow_client.post(f"/cds-services/jak-{hook_name}", json=body)
        elapsed = time.monotonic() - start
    assert response.status_code == 200, response.get_data(as_text=True)
    assert elapsed < budget * 1.5, f"took {elapsed:.2f} s with a budget of {budget} s"


def test_read_timeout_is_a_stated_gap(client):
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, body=requests.ReadTimeout("slow"))
        response, _ = post_timed(client, body_missing_haematology())
    could_not_check(response, "did not answer in time")


def test_unreachable_server_is_a_stated_gap(client):
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, body=requests.ConnectionError("refused"))
        response, _ = post_timed(client, body_missing_haematology())
    could_not_check(response, "could not be reached")


@pytest.mark.parametrize("body, content_type", [
    ("<html>login</html>", "text/html"),
    ("{\"resourceType\": \"Bundle\", ", "application/fhir+json"),
    ("[" * 100000, "application/json"),                                  # nesting bomb
    ("\xff\xfe garbage", "application/octet-stream"),
])
def test_non_json_answer_is_a_stated_gap(client, body, content_type):
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, body=body, content_type=content_type)
        response, _ = post_timed(client, body_missing_haematology())
    assert response.status_code == 200
    gap = could_not_check(response, "could not be obtained")
    assert "not JSON" in gap["detail"] or "request failed" in gap["detail"]


@pytest.mark.parametrize("answer, reason", [
    ({"resourceType": "Patient", "id": "p1"}, "instead of a search Bundle"),
    ({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "Condition", "id": "c"}}]},
     "Condition resources instead of Observation"),
    ({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]},
     "an error or an unexpected resource"),
    ({"no": "resourceType"}, "an error or an unexpected resource"),
    ("just a string", "an error or an unexpected resource"),
])
def test_wrong_resource_answer_is_a_stated_gap(client, answer, reason):
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, json=answer)
        response, _ = post_timed(client, body_missing_haematology())
    could_not_check(response, reason)


def test_redirects_are_not_followed(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(HAEM, status=302, headers={"Location": "https://evil.example.org/steal"})
        rsps.get("https://evil.example.org/steal", json={"resourceType": "Bundle"})
        response, _ = post_timed(client, body_missing_haematology())
        assert [c.request.url.split("?")[0] for c in rsps.calls] == [f"{FHIR_BASE}/Observation"]
    could_not_check(response, "answered HTTP 302")


def test_oversized_answer_is_cut_off(client, monkeypatch):
    from cds_service.fhir import client as fhir_client
    monkeypatch.setattr(fhir_client, "MAX_RESPONSE_BYTES", 1000)
    big = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "id": str(i)}}
                                               for i in range(200)]}
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, json=big)
        response, _ = post_timed(client, body_missing_haematology())
    could_not_check(response, "too large or too slow")


def test_next_page_on_another_server_is_not_followed(client):
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
            "link": [{"relation": "next", "url": "https://evil.example.org/fhir/Observation?page=2"}]}
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, json=page)
        response, _ = post_timed(client, body_missing_haematology())
        assert len(rsps.calls) == 1
    assert response.status_code == 200


@pytest.mark.parametrize("server", [
    "https://evil.example.org/fhir",
    "http://127.0.0.1.evil.example/fhir",
    "http://127.0.0.1:80@evil.example.org/fhir",
    "http://localhost@evil.example.org",
    "http://127.0.0.1/fhir/../../admin",
])
def test_disallowed_server_is_never_called_and_the_order_gets_a_no_check_warning(client, server):
    body = make_request(record(extra=[RA, draft_order("upadacitinib 15 mg", 15)]), prefetch=False,
                        fhir_server=server)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(re.compile(r".*"), json={"resourceType": "Bundle"})
        response = client.post(SIGN, json=body)
        assert len(rsps.calls) == 0
    assert response.status_code == 200           # decision 18: never a silent answer for a JAK inhibitor order
    cards = response.get_json()["cards"]
    assert [(c["indicator"], c["source"]["topic"]["code"]) for c in cards] == [("warning", "record-unreadable")]
    assert "not on this service's allowed list" in cards[0]["detail"]


def test_disallowed_server_with_partial_prefetch_answers_with_the_gap(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(re.compile(r".*"), json={"resourceType": "Bundle"})
        response, _ = post_timed(client, body_missing_haematology(server="https://evil.example.org/fhir"))
        assert len(rsps.calls) == 0
    could_not_check(response, "not on this service's allowed list")


def test_token_is_not_logged_on_failure(client, caplog):
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock() as rsps:
        rsps.get(HAEM, status=500)
        client.post(SIGN, json=body_missing_haematology(token="tok-never-log-me"))
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        client.post(SIGN, json=body_missing_haematology(server="https://evil.example.org/fhir",
                                                        token="tok-never-log-me"))
    assert "tok-never-log-me" not in "\n".join(r.getMessage() for r in caplog.records)


def test_all_keys_slow_still_answers_within_the_budget():
    client = FhirClient(("http://127.0.0.1",), total_budget=0.3, connect_timeout=0.1)

    def slow(_request):
        time.sleep(1.5)
        return 200, {}, "{}"

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, re.compile(r"http://127\.0\.0\.1:9/.*"), callback=slow)
        start = time.monotonic()
        results = client.fetch_all("http://127.0.0.1:9", FhirAuthorization(access_token="t"),
                                   {f"k{i}": f"Observation?code={i}" for i in range(12)})
        elapsed = time.monotonic() - start
    assert elapsed < 0.9
    assert set(results) == {f"k{i}" for i in range(12)}
    assert all(resources is None and "did not answer" in why for resources, why in results.values())


def test_read_of_the_wrong_resource_type_is_a_gap():
    client = FhirClient(("http://127.0.0.1",), total_budget=1.0)
    with responses.RequestsMock() as rsps:
        rsps.get("http://127.0.0.1:9/Patient/p1", json={"resourceType": "Observation", "id": "o"})
        [(resources, why)] = client.fetch_all("http://127.0.0.1:9", None, {"patient": "Patient/p1"}).values()
    assert resources is None and "Observation resources instead of Patient" in why


def test_read_of_a_missing_resource_is_no_data_not_an_error():
    client = FhirClient(("http://127.0.0.1",), total_budget=1.0)
    with responses.RequestsMock() as rsps:
        rsps.get("http://127.0.0.1:9/Patient/p1", status=404)
        assert client.fetch_all("http://127.0.0.1:9", None, {"patient": "Patient/p1"}) == {"patient": ([], None)}


@pytest.mark.parametrize("server, ok", [
    ("http://127.0.0.1:8080/fhir", True),
    ("http://localhost/fhir/r4", True),
    ("https://ehr.example.org/fhir", True),
    ("https://ehr.example.org/fhir/tenant-1", True),
    ("https://EHR.example.org/fhir", True),
    ("https://ehr.example.org:443/fhir", True),
    ("https://ehr.example.org/fhirx", False),
    ("https://ehr.example.org:8443/fhir", False),
    ("http://ehr.example.org/fhir", False),
    ("https://ehr.example.org", False),
    ("https://ehr.example.org/fhir/../admin", False),
    ("https://ehr.example.org/fhir/%2e%2e/admin", False),      # encoded dot segment: ambiguous, refused
    ("https://ehr.example.org/fhir/..%2fadmin", False),
    ("http://127.0.0.1.evil.example", False),
    ("http://127.0.0.1:80@evil.example", False),
    ("http://user:pw@127.0.0.1/fhir", False),
    ("https://ehr.example.org/fhir?x=1", False),
    ("ftp://127.0.0.1/fhir", False),
    ("http://127.0.0.1:notaport/fhir", False),
    ("http://127.0.0.1\\@evil.example/fhir", False),
])
def test_server_allowed(server, ok):
    assert server_allowed(server, ("http://127.0.0.1", "http://localhost", "https://ehr.example.org/fhir")) is ok


@pytest.mark.parametrize("answer", ['{"resourceType": "Bundle", "total": NaN}', '{"resourceType": "Bundle", "total": '
                                    + "9" * 5000 + "}", '{"resourceType": "Bundle", "id": "\\ud800"}'])
def test_fhir_answers_with_invalid_json_numbers_or_unicode_are_a_gap(answer):
    client = FhirClient(("http://127.0.0.1",), total_budget=1.0)
    with responses.RequestsMock() as rsps:
        rsps.get("http://127.0.0.1:9/Observation", body=answer, content_type="application/fhir+json")
        [(resources, why)] = client.fetch_all("http://127.0.0.1:9", None, {"k": "Observation?code=1"}).values()
    assert resources is None and "not JSON" in why


def test_a_call_without_prefetch_sends_all_its_queries_at_once(tmp_path, knowledge):
    """An EHR that sends no prefetch waits for the slowest of our queries, not for several waves of them:
    the server below answers none until every query of the call has arrived (else it fails them all)."""
    import threading

    from cds_service.fhir.query import search

    resources = record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])
    body = make_request(resources, prefetch=False, fhir_server=FHIR_BASE)
    queries = len(make_request(resources)["prefetch"])         # one per prefetch key of the service
    together = threading.Barrier(queries, timeout=2.0)

    def all_at_once(request):
        together.wait()                                          # BrokenBarrierError unless all are in flight
        query = request.url[len(FHIR_BASE):].lstrip("/")
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(search(resources, query))

    settings = trust_settings(tmp_path, auth="off", fhir_timeout=5.0)
    client = create_app(settings, knowledge=knowledge).test_client()
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), callback=all_at_once)
        response = client.post(SIGN, json=body)
        assert len(rsps.calls) == queries
    assert response.status_code == 200
    assert not [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == "missing-data"]


def test_the_ehrs_token_is_sent_even_when_a_netrc_file_names_the_fhir_server(tmp_path, monkeypatch):
    """requests replaces the Authorization header with a ~/.netrc login for the host when it finds one;
    the EHR's FHIR server must get the token the EHR gave us, whatever the machine's netrc says."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = FhirClient(("http://127.0.0.1",), total_budget=2.0)
    with responses.RequestsMock() as rsps:
        rsps.get(re.compile(r"http://127\.0\.0\.1:9/.*"), json={"resourceType": "Bundle", "type": "searchset"})
        client.fetch_all("http://127.0.0.1:9", FhirAuthorization(access_token="ehr-token"),
                         {"conditions": "Condition?patient=p1"})
        assert rsps.calls[0].request.headers["Authorization"] == "Bearer ehr-token"


def test_proxy_settings_of_the_environment_still_apply_per_server(monkeypatch):
    """Outbound proxies configured in the environment are honoured, NO_PROXY hosts excepted (read once per
    server instead of on every query)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.setenv("NO_PROXY", "fhir.inside.example")
    session = FhirClient(("https://",), total_budget=1.0).session
    outside = session.merge_environment_settings("https://ehr.example.org/fhir/Patient/1", {}, True, None, None)
    inside = session.merge_environment_settings("https://fhir.inside.example/fhir/Patient/1", {}, True, None, None)
    again = session.merge_environment_settings("https://ehr.example.org/fhir/Condition?patient=1", {}, True, None, None)
    assert outside["proxies"].get("https") == "http://proxy.hospital.example:3128"
    assert "https" not in inside["proxies"]
    assert again == outside


def test_a_cookie_set_by_the_fhir_server_is_not_kept_for_later_calls():
    """A cookie the EHR's FHIR server sets during one hook call (a session, a load-balancer ticket) is a
    credential of that call's user: kept in the shared session it would go out with every later call to
    that server, another clinician's or another tenant's. Each call carries only its own token."""
    client = FhirClient(("http://127.0.0.1",), total_budget=2.0)
    with responses.RequestsMock() as rsps:
        rsps.get(re.compile(r"http://127\.0\.0\.1:9/.*"), json={"resourceType": "Bundle", "type": "searchset"},
                 headers={"Set-Cookie": "JSESSIONID=user-a-session; Path=/"})
        client.fetch_all("http://127.0.0.1:9", FhirAuthorization(access_token="token-of-user-a"),
                         {"conditions": "Condition?patient=p1"})
        client.fetch_all("http://127.0.0.1:9", FhirAuthorization(access_token="token-of-user-b"),
                         {"conditions": "Condition?patient=p2"})
        later = rsps.calls[1].request.headers
        assert later["Authorization"] == "Bearer token-of-user-b"
        assert "Cookie" not in later
    assert len(client.session.cookies) == 0
