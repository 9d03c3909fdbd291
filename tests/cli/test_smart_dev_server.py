"""``jak-cds fhir-server`` as a minimal SMART EHR (development only): the launch a CDS Hooks sandbox registers for a
card's smart link, the authorize redirect, the token with patient and appContext, and FHIR reads with that bearer."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_service.cli.devtools.fhir_fixture_server import create_app, load_records
from cds_service.cli.devtools.smart_dev_auth import s256

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
BUNDLE = "app-upadacitinib-falling-neutrophils"
OTHER = "app-upadacitinib-no-labs"
HOST = "http://localhost"
BASE = f"{HOST}/{BUNDLE}"
APP = "http://127.0.0.1:18512/app/launch"
REDIRECT = "http://127.0.0.1:18512/app/index.html"
CONTEXT = '{"jakCdsTicket":"abc.def"}'


class Clock:
    now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(clock):
    app = create_app(load_records([str(FIXTURES / f"{BUNDLE}.json"), str(FIXTURES / f"{OTHER}.json")]))
    app.extensions["smart_dev_auth"].clock = clock
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def launch(client, base=BUNDLE, **parameters):
    response = client.post(f"/{base}/_services/smart/Launch",
                           json={"launchUrl": APP, "parameters": {"patient": "p1", "appContext": CONTEXT,
                                                                  "smart_messaging_origin": "http://x", **parameters}})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["launch_id"]


def authorize(client, launch_id, *, redirect_uri=REDIRECT, aud=BASE, verifier="v" * 50, **extra):
    args = {"response_type": "code", "client_id": "jak-cds-monitoring", "scope": "launch patient/*.read",
            "redirect_uri": redirect_uri, "aud": aud, "launch": launch_id, "state": "s1", **extra}
    if verifier:
        args.update(code_challenge=s256(verifier), code_challenge_method="S256")
    return client.get("/_smart/authorize", query_string=args)


def redirected(response) -> dict:
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(client, code, verifier="v" * 50, redirect_uri=REDIRECT):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": "jak-cds-monitoring"}
    if verifier:
        form["code_verifier"] = verifier
    return client.post("/_smart/token", data=form)


def token_for(client, **parameters):
    code = redirected(authorize(client, launch(client, **parameters)))["code"]
    return exchange(client, code).get_json()


def test_the_smart_configuration_names_the_endpoints_and_ehr_launch(client):
    for path in (f"/{BUNDLE}/.well-known/smart-configuration", f"/{OTHER}/.well-known/smart-configuration"):
        config = client.get(path).get_json()
        assert config["authorization_endpoint"] == f"{HOST}/_smart/authorize"
        assert config["token_endpoint"] == f"{HOST}/_smart/token"
        assert {"launch-ehr", "context-ehr-patient"} <= set(config["capabilities"])
        assert config["code_challenge_methods_supported"] == ["S256"]


def test_an_ehr_launch_ends_with_a_token_carrying_the_patient_and_the_cards_app_context(client):
    launch_id = launch(client)
    back = redirected(authorize(client, launch_id))
    assert back["state"] == "s1" and back["code"]
    answer = exchange(client, back["code"])
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    token = answer.get_json()
    assert token["token_type"] == "Bearer" and len(token["access_token"]) >= 40
    assert token["patient"] == "p1" and token["appContext"] == CONTEXT and token["expires_in"] <= 900
    # the code is good once
    again = exchange(client, back["code"])
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_an_object_app_context_is_handed_over_as_a_json_string(client):
    assert token_for(client, appContext={"jakCdsTicket": "t"})["appContext"] == '{"jakCdsTicket":"t"}'


def test_reads_accept_the_token_and_stay_open_without_one(client):
    token = token_for(client)["access_token"]
    with_token = client.get(f"/{BUNDLE}/Patient/p1", headers={"Authorization": f"Bearer {token}"})
    assert with_token.status_code == 200 and with_token.get_json()["id"] == "p1"
    assert client.get(f"/{BUNDLE}/Patient/p1").status_code == 200           # the fhirServiceUrl mode
    wrong = client.get(f"/{BUNDLE}/Patient/p1", headers={"Authorization": "Bearer made-up"})
    assert wrong.status_code == 401 and wrong.get_json()["resourceType"] == "OperationOutcome"
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    # a token is good only at the FHIR base it was issued for
    assert client.get(f"/{OTHER}/Patient/p1", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_codes_and_launches_expire(client, clock):
    token = token_for(client)["access_token"]
    launch_id = launch(client)
    code = redirected(authorize(client, launch(client)))["code"]
    clock.now += 901
    assert client.get(f"/{BUNDLE}/Patient/p1", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert exchange(client, code).get_json()["error"] == "invalid_grant"
    stale = authorize(client, launch_id)
    assert stale.status_code == 400 and "expired launch" in stale.get_json()["error_description"]


def test_the_redirect_uri_must_be_on_the_launch_urls_origin(client):
    for elsewhere in ("http://evil.example/app/index.html", "http://127.0.0.1:9999/app/index.html", "javascript:x"):
        refused = authorize(client, launch(client), redirect_uri=elsewhere)
        assert refused.status_code == 400 and "Location" not in refused.headers
        assert refused.get_json()["error"] == "invalid_request"


def test_pkce_s256_is_checked_when_the_client_sends_a_challenge(client):
    code = redirected(authorize(client, launch(client)))["code"]
    assert exchange(client, code, verifier="w" * 50).get_json()["error"] == "invalid_grant"
    code = redirected(authorize(client, launch(client)))["code"]
    assert exchange(client, code, verifier=None).get_json()["error"] == "invalid_grant"
    plain = redirected(authorize(client, launch(client), verifier=None, code_challenge="x",
                                 code_challenge_method="plain"))
    assert plain["error"] == "invalid_request" and "code" not in plain
    code = redirected(authorize(client, launch(client), verifier=None))["code"]     # no PKCE: accepted
    assert exchange(client, code, verifier=None).status_code == 200


def test_the_audience_must_be_the_launchs_fhir_server(client):
    back = redirected(authorize(client, launch(client), aud=f"{HOST}/{OTHER}"))
    assert back["error"] == "invalid_request" and back["state"] == "s1"


def test_a_bad_launch_request_is_a_4xx_operation_outcome(client):
    for body in ({}, {"launchUrl": "ftp://x"}, {"launchUrl": APP, "parameters": []},
                 {"launchUrl": APP, "parameters": {"patient": 3}}):
        response = client.post(f"/{BUNDLE}/_services/smart/Launch", json=body)
        assert response.status_code == 400 and response.get_json()["resourceType"] == "OperationOutcome"
    assert client.post("/_smart/token", data={"grant_type": "password"}).get_json()["error"] == \
        "unsupported_grant_type"
