"""Hostile and broken input: always a 4xx with an OperationOutcome or cards that say what could not be read.

Never a 500, never a hang.
"""
from __future__ import annotations

import copy
import json
import threading

import pytest
from werkzeug.serving import make_server

from cds_service.web.app import create_app
from fixtures.builders import draft_order, obs, patient
from tests.helpers.chunked import send_chunked
from tests.helpers.hooks import make_request
from tests.helpers.records import RA, record
from tests.helpers.trust import trust_settings

SIGN = "/cds-services/jak-order-sign"
VIEW = "/cds-services/jak-patient-view"
FEEDBACK = f"{SIGN}/feedback"
LIMIT = 20_000


@pytest.fixture
def app(tmp_path, knowledge):
    return create_app(trust_settings(tmp_path, auth="off", max_body=LIMIT), knowledge=knowledge)


@pytest.fixture
def client(app):
    return app.test_client()


def good_body() -> dict:
    return make_request(record(extra=[RA, draft_order("upadacitinib 15 mg", 15)]))


def outcome(response, status: int | None = None) -> dict:
    assert response.status_code < 500, response.get_data(as_text=True)
    if status is not None:
        assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error" and body["issue"][0]["diagnostics"]
    assert response.mimetype == "application/fhir+json"
    return body


def cards(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    found = response.get_json()["cards"]
    for card in found:
        assert card["summary"] and card["indicator"] in ("info", "warning", "critical") and card["source"]["label"]
    return found


def not_interpreted(found: list[dict]) -> str:
    """The text of the 'could not check' cards (what the service says it could not read)."""
    gaps = [c for c in found if c["source"].get("topic", {}).get("code") == "missing-data"]
    assert gaps, f"expected a 'could not check' card, got {[c['summary'] for c in found]}"
    return " ".join(c["summary"] + " " + c.get("detail", "") for c in gaps)


def post_raw(client, data, content_type="application/json", path=SIGN):
    return client.post(path, data=data, content_type=content_type)


# --- size ---------------------------------------------------------------------------------------------

def test_body_over_the_limit_is_413(client):
    body = good_body()
    body["padding"] = "x" * LIMIT
    outcome(client.post(SIGN, json=body), 413)
    outcome(client.post(FEEDBACK, json={"feedback": [], "padding": "x" * LIMIT}), 413)


def test_body_just_under_the_limit_is_read(client):
    body = good_body()
    size = len(json.dumps(body))
    body["padding"] = "x" * (LIMIT - size - 100)
    assert len(json.dumps(body)) < LIMIT
    cards(client.post(SIGN, json=body))


def test_default_limit_is_ten_megabytes(tmp_path, knowledge):
    client = create_app(trust_settings(tmp_path, auth="off"), knowledge=knowledge).test_client()
    outcome(post_raw(client, b"{" + b" " * (10 * 1024 * 1024) + b"}"), 413)


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(5)


def test_chunked_body_over_the_limit_is_413_on_a_real_server(live_server):
    oversized = json.dumps({**good_body(), "padding": "x" * (3 * LIMIT)}).encode()
    status, data = send_chunked(live_server, oversized)
    assert status == 413, data
    assert json.loads(data)["resourceType"] == "OperationOutcome"
    # one byte over is over, too
    status, _ = send_chunked(live_server, b"{" + b" " * (LIMIT - 1) + b"}")
    assert status == 413


def test_chunked_body_under_the_limit_is_read_on_a_real_server(live_server):
    status, data = send_chunked(live_server, json.dumps(good_body()).encode(), chunk=500)
    assert status == 200, data
    assert "cards" in json.loads(data)


# --- content type and JSON ------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          "multipart/form-data; boundary=x", "text/html"])
def test_wrong_content_type_is_415(client, content_type):
    outcome(post_raw(client, json.dumps(good_body()), content_type), 415)


def test_fhir_json_content_type_is_accepted(client):
    cards(post_raw(client, json.dumps(good_body()), "application/fhir+json"))


@pytest.mark.parametrize("data", [
    "", "   ", "{", "{\"hook\": }", "nul", "{'hook': 'order-sign'}", "\x00\x01\x02",
    b"\xff\xfe\xfa not utf-8",
    "[" * 100_00,                                          # nesting bomb
    "{\"a\":" * 2000 + "1" + "}" * 2000,
])
def test_malformed_json_is_400(client, data):
    outcome(post_raw(client, data), 400)


@pytest.mark.parametrize("data", ["[]", "\"order-sign\"", "42", "null", "true", "[{\"hook\": \"order-sign\"}]"])
def test_json_that_is_not_an_object_is_400(client, data):
    outcome(post_raw(client, data), 400)
    outcome(post_raw(client, data, path=FEEDBACK), 400)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 30, "9" * 5000])
def test_non_finite_and_out_of_range_numbers_are_refused(client, constant):
    text = json.dumps(good_body())
    assert '"value": 15' in text
    body = outcome(post_raw(client, text.replace('"value": 15', f'"value": {constant}', 1)), 400)
    assert "not valid JSON" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("number", ["922337203685477580", "-922337203685477580", "1.5e308", "1e99", "1e-400",
                                    "123456789012345678901.5"])
def test_large_but_representable_numbers_and_long_digit_strings_are_read(client, number):
    body = good_body()
    body["hookInstance"] = "12345678901234567890123-e400"        # digits and an exponent-like run in a string
    text = json.dumps(body)
    response = post_raw(client, text.replace('"value": 15', f'"value": {number}', 1))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_unpaired_surrogate_is_refused_but_a_real_pair_is_fine(client):
    text = json.dumps(good_body())
    outcome(post_raw(client, text.replace('"patientId": "p1"', '"patientId": "\\ud800"')), 400)
    outcome(post_raw(client, text.replace('"userId": "Practitioner/dr-1"', '"userId": "\\udfff x"')), 400)
    cards(post_raw(client, text.replace('"userId": "Practitioner/dr-1"', '"userId": "Practitioner/\\ud83d\\ude00"')))


# --- envelope -------------------------------------------------------------------------------------------

def _without(path: str) -> dict:
    body = good_body()
    *parents, last = path.split(".")
    target = body
    for p in parents:
        target = target[p]
    del target[last]
    return body


def _with(path: str, value) -> dict:
    body = good_body()
    *parents, last = path.split(".")
    target = body
    for p in parents:
        target = target[p]
    target[last] = value
    return body


@pytest.mark.parametrize("body", [
    _without("hook"), _without("hookInstance"), _without("context"), _without("context.patientId"),
    _without("context.draftOrders"),
    _with("hook", "patient-view"), _with("hook", 42), _with("hook", None), _with("hook", ""),
    _with("hookInstance", ["x"]), _with("hookInstance", ""), _with("context", "p1"), _with("context", []),
    _with("context.patientId", 42), _with("context.patientId", ""), _with("context.patientId", None),
    _with("context.patientId", {"id": "p1"}), _with("fhirServer", "file:///etc/passwd"),
    _with("fhirServer", 12), _with("fhirAuthorization", {"token_type": "Bearer"}),
    _with("fhirAuthorization", "Bearer abc"),
], ids=lambda b: json.dumps(b)[:0] or None)
def test_broken_envelope_is_400(client, body):
    outcome(client.post(SIGN, json=body), 400)


@pytest.mark.parametrize("value", ["x", 42, [], [1, 2], {"patient": 42}, {"patient": "Patient/p1"},
                                   {"patient": {"resourceType": 42}}, {"haematology": {"resourceType": "Bundle",
                                                                                       "entry": "nope"}},
                                   {"haematology": {"resourceType": "Bundle", "entry": [1, None, "x", []]}}])
def test_broken_prefetch_never_500(client, value):
    response = client.post(SIGN, json=_with("prefetch", value))
    assert response.status_code in (200, 400, 412), response.get_data(as_text=True)
    if response.status_code != 200:
        outcome(response)


@pytest.mark.parametrize("draft_orders", [
    "x", 42, [], {"resourceType": "Bundle", "entry": "x"}, {"resourceType": "Bundle", "entry": [None, 1, "x"]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest"}}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "d",
                                                       "status": 42, "intent": [], "subject": "p1",
                                                       "medicationCodeableConcept": "upadacitinib"}}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}]},
])
def test_broken_draft_orders_never_500(client, draft_orders):
    response = client.post(SIGN, json=_with("context.draftOrders", draft_orders))
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        outcome(response)
    else:
        cards(response)


# --- FHIR resources that fail validation, absurd values ---------------------------------------------------

def order_with_dose(value, unit="mg", code="mg") -> dict:
    return draft_order("upadacitinib", None, dose_quantity={"value": value, "unit": unit, "code": code,
                                                             "system": "http://unitsofmeasure.org"})


def test_age_400_is_not_used(client):
    resources = [patient(birth_date="1626-01-01"), *record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])[1:]]
    text = not_interpreted(cards(client.post(SIGN, json=make_request(resources)))).lower()
    assert "birth" in text or "age" in text


@pytest.mark.parametrize("birth_date", ["not-a-date", "2090-01-01", "1999-13-45", 19990101, ["1999"], None])
def test_unusable_birth_date_is_said(client, birth_date):
    p = patient()
    p["birthDate"] = birth_date
    resources = [p, *record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])[1:]]
    response = client.post(SIGN, json=make_request(resources))
    text = not_interpreted(cards(response)).lower()
    assert "birth" in text or "age" in text


@pytest.mark.parametrize("value", [-15, 0, -0.001])
def test_negative_or_zero_dose_is_said_not_checked(client, value):
    text = not_interpreted(cards(client.post(SIGN, json=make_request(record(extra=[RA, order_with_dose(value)]))))).lower()
    assert "dose" in text


@pytest.mark.parametrize("unit", ["furlong", "mg/kg/fortnight", "", "🙂"])
def test_unknown_dose_unit_is_said_not_checked(client, unit):
    order = order_with_dose(15, unit, unit)
    text = not_interpreted(cards(client.post(SIGN, json=make_request(record(extra=[RA, order]))))).lower()
    assert "dose" in text or "unit" in text


@pytest.mark.parametrize("value", ["lots", None, [15], {"v": 15}, True])
def test_dose_of_the_wrong_type_never_500(client, value):
    order = order_with_dose(15)
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = value
    not_interpreted(cards(client.post(SIGN, json=make_request(record(extra=[RA, order])))))


@pytest.mark.parametrize("course", ["continuous", 42, ["acute"]])
def test_a_course_of_therapy_that_is_not_a_codeable_concept_gives_the_same_cards_not_a_500(client, course):
    """Upadacitinib 30 mg once daily for RA (above the 15 mg RA dose) whose courseOfTherapyType is a bare string:
    the prescriber sees the cards of the same order without it, and one saying the order is not valid FHIR R4
    (naming the field), not a 500."""
    order = draft_order("upadacitinib", 30, 1)
    plain = cards(client.post(SIGN, json=make_request(record(extra=[RA, order]))))
    assert any("15 mg" in c["summary"] for c in plain), [c["summary"] for c in plain]
    odd = copy.deepcopy(order)
    odd["courseOfTherapyType"] = course
    got = cards(client.post(SIGN, json=make_request(record(extra=[RA, odd]))))
    said = [(c["indicator"], c["summary"]) for c in got]
    invalid = [s for s in said if "not valid FHIR R4 (courseOfTherapyType" in s[1]]
    assert len(invalid) == 1, said
    assert [s for s in said if s not in invalid] == [(c["indicator"], c["summary"]) for c in plain]


def test_absurdly_large_dose_is_not_read_as_a_normal_one(client):
    found = cards(client.post(SIGN, json=make_request(record(extra=[RA, order_with_dose(1e300)]))))
    assert found, "a 1e300 mg dose must not pass silently"


@pytest.mark.parametrize("value, unit", [(-3, "10*9/L"), (3, "bananas"), ("low", "10*9/L"), (1e300, "10*9/L")])
def test_lab_value_that_cannot_be_interpreted_is_said(client, value, unit):
    resources = record(drop=["751-8"], extra=[obs("751-8", 1.0, "10*9/L"), RA, draft_order("upadacitinib 15 mg", 15)])
    anc = next(r for r in resources if r.get("code", {}).get("coding", [{}])[0].get("code") == "751-8")
    anc["valueQuantity"] = {"value": value, "unit": unit, "code": unit, "system": "http://unitsofmeasure.org"}
    response = client.post(SIGN, json=make_request(resources))
    found = cards(response)
    if value == 1e300:
        assert response.status_code == 200      # absurdly high is at least not a crash
        return
    text = not_interpreted(found).lower()
    assert "neutrophil" in text or "anc" in text


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(resourceType=42),
    lambda r: r.update(subject="p1"),
    lambda r: r.update(code="751-8"),
    lambda r: r.update(effectiveDateTime="yesterday"),
    lambda r: r.update(valueQuantity="1.0 10*9/L"),
    lambda r: r.pop("resourceType"),
])
def test_observations_that_fail_fhir_validation_never_500(client, mutate):
    resources = record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])
    for r in resources:
        if r.get("resourceType") == "Observation":
            mutate(r)
    response = client.post(SIGN, json=make_request(resources))
    assert response.status_code in (200, 400), response.get_data(as_text=True)


def test_patient_view_with_garbage_everywhere_never_500(client):
    body = make_request(record(extra=[RA]), hook="patient-view")
    for key, value in list(body["prefetch"].items()):
        broken = copy.deepcopy(value)
        if isinstance(broken, dict):
            broken["entry"] = [{"resource": {"resourceType": "Observation", "valueQuantity": {"value": "NaN?"},
                                             "code": {"coding": "x"}, "subject": {"reference": 42}}}]
        body["prefetch"][key] = broken
    response = client.post(VIEW, json=body)
    assert response.status_code in (200, 400, 412), response.get_data(as_text=True)


def test_errors_do_not_echo_patient_data_in_a_500(client, caplog):
    """If anything does fail, the log line carries no patient id (the handler logs only method and path)."""
    text = json.dumps(good_body()).replace('"patientId": "p1"', '"patientId": "\\ud800"')
    post_raw(client, text)
    assert "p1" not in " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
