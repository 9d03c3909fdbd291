"""The OpenAPI document, and fuzzing of the API from it (schemathesis 4.x) and from hypothesis: never a 500.

Everything runs in-process against the Flask app (WSGI), bounded in examples so the module takes well
under a minute. No FHIR server is allowed, so nothing generated can make the service call out.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from cds_service.web import health
from cds_service.web.app import create_app
from fixtures.builders import draft_order
from tests.helpers.hooks import make_request
from tests.helpers.records import RA, record
from tests.helpers.trust import trust_settings

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


# Built at import: schemathesis' pytest integration needs the schema at collection time
# (its from_fixture loader does not work with pytest 9).
_TMP = tempfile.TemporaryDirectory(prefix="jak-fuzz-")
APP = create_app(trust_settings(Path(_TMP.name), auth="off", allowed_fhir_servers=(), fhir_timeout=0.2,
                                max_body=200_000))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def fuzz_app():
    return APP


@pytest.fixture(scope="module")
def fuzz_schema():
    return schema


@schema.parametrize()
@FUZZ
def test_api_never_answers_500(case):
    response = case.call_and_validate(checks=[not_a_server_error])
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400 and response.status_code != 401 and response.text:
        assert response.json()["resourceType"] == "OperationOutcome"


# --- the document itself ----------------------------------------------------------------------------------

def test_openapi_document_is_served_and_describes_every_route(fuzz_app):
    response = fuzz_app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/cds-services", "/cds-services/{service_id}", "/cds-services/{service_id}/feedback",
                                 "/openapi.json", "/app/", "/app/launch", "/app/{name}", "/app/api/queries",
                                 "/app/api/strings", "/app/api/monitoring"}
    # the operator's endpoints (probes, metrics) are not part of the API an EHR calls
    operational = {*health.PATHS, "/metrics"}
    routes = {r.rule.replace("<service_id>", "{service_id}").replace("<path:name>", "{name}")
              for r in fuzz_app.url_map.iter_rules() if r.endpoint != "static" and r.rule not in operational}
    assert routes == set(doc["paths"])
    assert doc["paths"]["/cds-services/{service_id}"]["post"]["parameters"][0]["schema"]["enum"] == [
        "jak-order-select", "jak-order-sign", "jak-patient-view"]
    assert doc["components"]["securitySchemes"]["cdsClientJwt"]["scheme"] == "bearer"


def test_openapi_document_is_a_valid_openapi_3_schema(fuzz_schema):
    operations = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in fuzz_schema.get_all_operations())}
    assert {"GET /cds-services", "POST /cds-services/{service_id}",
            "POST /cds-services/{service_id}/feedback"} <= operations


# --- hypothesis: arbitrary JSON, arbitrary bytes --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

envelope_keys = st.sampled_from(["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization"])
context_keys = st.sampled_from(["patientId", "userId", "draftOrders", "selections", "encounterId"])


@st.composite
def mangled_requests(draw):
    """A real hook request with some fields replaced by arbitrary JSON or removed."""
    body = make_request(record(extra=[RA, draft_order("upadacitinib 15 mg", 15)]))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "context"]))
        target = body if where == "top" else body.get("context")
        if not isinstance(target, dict):
            continue
        key = draw(envelope_keys if where == "top" else context_keys)
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return body


@FUZZ
@given(body=mangled_requests())
def test_mangled_hook_requests_never_500(fuzz_app, body):
    response = fuzz_app.test_client().post("/cds-services/jak-order-sign", json=body)
    assert response.status_code in (200, 400, 412), response.get_data(as_text=True)[:300]


@FUZZ
@given(body=json_values)
def test_arbitrary_json_never_500(fuzz_app, body):
    client = fuzz_app.test_client()
    for path in ("/cds-services/jak-patient-view", "/cds-services/jak-order-select/feedback"):
        response = client.post(path, data=json.dumps(body), content_type="application/json")
        assert response.status_code == 400, response.get_data(as_text=True)[:300]


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_500(fuzz_app, data):
    response = fuzz_app.test_client().post("/cds-services/jak-order-sign", data=data, content_type="application/json")
    assert response.status_code == 400


feedback_items = st.fixed_dictionaries(
    {"card": st.uuids().map(str) | st.text(max_size=40), "outcome": st.sampled_from(["accepted", "overridden", "x"]),
     "outcomeTimestamp": st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=30)},
    optional={"acceptedSuggestions": st.lists(st.fixed_dictionaries({"id": st.uuids().map(str) | json_values}),
                                              max_size=3),
              "overrideReason": st.fixed_dictionaries({}, optional={
                  "reason": st.fixed_dictionaries({"code": st.text(max_size=10)},
                                                  optional={"system": st.text(max_size=10),
                                                            "display": json_values}),
                  "userComment": json_values})})


@FUZZ
@given(items=st.lists(feedback_items, min_size=0, max_size=4))
def test_feedback_never_500_and_stores_exactly_what_was_accepted(fuzz_app, items):
    store = fuzz_app.extensions["jak_store"]
    before = store.count("jak_feedback")
    response = fuzz_app.test_client().post("/cds-services/jak-order-sign/feedback", json={"feedback": items})
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    stored = store.count("jak_feedback") - before
    assert stored == (len(items) if response.status_code == 200 else 0)
