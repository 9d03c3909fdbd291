"""CDS Hooks 2.0 client authentication: signed JWTs on every call, everything else a bare 401."""
from __future__ import annotations

import json
import logging
import time

import pytest
import requests
import responses

from cds_service.web import auth
from cds_service.web.app import create_app
from cds_service.cli import main as cli_main
from cds_service.config import REPO_ROOT, Settings
from fixtures.builders import draft_order
from tests.helpers.hooks import make_request
from tests.helpers.records import AD, record
from tests.helpers.trust import (
    BASE,
    ISS,
    JKU,
    bearer,
    claims,
    ec_key,
    feedback_body,
    jwks,
    rsa_key,
    token,
    trust_settings,
    unsafe_token,
)

DISCOVERY = f"{BASE}/cds-services"
SIGN = f"{BASE}/cds-services/jak-order-sign"


@pytest.fixture
def key():
    return ec_key("ec-1", "ES384")


@pytest.fixture
def inline_app(tmp_path, key, knowledge):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}])
    return create_app(settings, knowledge=knowledge)


@pytest.fixture
def client(inline_app):
    return inline_app.test_client()


def assert_refused(response):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_data() == b""


def hook_body():
    return make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]))


# --- accepted ----------------------------------------------------------------------------------------

def test_valid_es384_token_works_end_to_end(client, key, inline_app):
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY))).status_code == 200
    response = client.post("/cds-services/jak-order-sign", json=hook_body(), headers=bearer(token(key, SIGN)))
    assert response.status_code == 200
    card = response.get_json()["cards"][0]
    feedback_url = f"{SIGN}/feedback"
    response = client.post("/cds-services/jak-order-sign/feedback", json=feedback_body(card["uuid"]),
                           headers=bearer(token(key, feedback_url)))
    assert response.status_code == 200
    store = inline_app.extensions["jak_store"]
    assert store.count("jak_feedback") == 1
    report = {r["rule"]: r for r in store.rule_report()}
    assert report[card["source"]["topic"]["code"]]["overridden"] == 1


@pytest.mark.parametrize("alg", ["RS384", "RS256", "RS512"])
def test_rsa_algorithms_are_accepted(tmp_path, knowledge, alg):
    key = rsa_key("rsa-1", alg)
    app = create_app(trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}]), knowledge=knowledge)
    assert app.test_client().get("/cds-services", headers=bearer(token(key, DISCOVERY))).status_code == 200


@pytest.mark.parametrize("alg", ["ES256", "ES512"])
def test_other_ec_algorithms_are_accepted(tmp_path, knowledge, alg):
    key = ec_key("ec-x", alg)
    app = create_app(trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}]), knowledge=knowledge)
    assert app.test_client().get("/cds-services", headers=bearer(token(key, DISCOVERY))).status_code == 200


def test_audience_uses_public_base_url_behind_a_proxy(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}],
                              public_base_url="https://cds.example.org/jak/")
    client = create_app(settings, knowledge=knowledge).test_client()
    assert client.get("/cds-services", headers=bearer(token(key, "https://cds.example.org/jak/cds-services"))
                      ).status_code == 200
    assert_refused(client.get("/cds-services", headers=bearer(token(key, DISCOVERY))))


def test_audience_ignores_the_query_string(client, key):
    assert client.get("/cds-services?x=1", headers=bearer(token(key, DISCOVERY))).status_code == 200


def test_audience_may_be_a_list_containing_the_endpoint(client, key):
    tok = token(key, ["https://other.example.org", DISCOVERY])
    assert client.get("/cds-services", headers=bearer(tok)).status_code == 200


def test_tenant_is_checked_when_the_client_declares_one(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key), "tenant": "hospital-a"}])
    client = create_app(settings, knowledge=knowledge).test_client()
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY, tenant="hospital-a"))).status_code == 200
    assert_refused(client.get("/cds-services", headers=bearer(token(key, DISCOVERY, tenant="hospital-b"))))
    assert_refused(client.get("/cds-services", headers=bearer(token(key, DISCOVERY))))


# --- refused -----------------------------------------------------------------------------------------

def test_no_token_or_not_bearer_is_refused(client, key):
    assert_refused(client.get("/cds-services"))
    assert_refused(client.get("/cds-services", headers={"Authorization": "Basic dXNlcjpwYXNz"}))
    assert_refused(client.get("/cds-services", headers={"Authorization": "Bearer"}))
    assert_refused(client.get("/cds-services", headers={"Authorization": "Bearer not.a.jwt"}))
    assert_refused(client.post("/cds-services/jak-order-sign", json=hook_body()))
    assert_refused(client.post("/cds-services/jak-order-sign/feedback", json=feedback_body(
        "4b0e6c4f-5b3a-4a63-9e59-2f1d3c7b8a11")))


def test_forged_signature_is_refused(client, key):
    impostor = ec_key(key.kid, "ES384")          # same kid, different private key
    assert_refused(client.get("/cds-services", headers=bearer(token(impostor, DISCOVERY))))


def test_tampered_payload_is_refused(client, key):
    head, body, sig = token(key, DISCOVERY).split(".")
    import base64
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["iss"] = ISS
    claims["exp"] += 100000
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_refused(client.get("/cds-services", headers=bearer(f"{head}.{forged}.{sig}")))


def test_expired_token_is_refused(client, key):
    now = int(time.time())
    assert_refused(client.get("/cds-services", headers=bearer(token(key, DISCOVERY, exp=now - 300, iat=now - 600))))


def test_small_clock_skew_is_tolerated(client, key):
    now = int(time.time())
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY, exp=now - 10, iat=now - 310))
                      ).status_code == 200


def test_token_issued_in_the_future_is_refused(client, key):
    now = int(time.time())
    assert_refused(client.get("/cds-services", headers=bearer(token(key, DISCOVERY, iat=now + 3600,
                                                                     exp=now + 4000))))


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "aud", "iss"])
def test_token_missing_a_required_claim_is_refused(client, key, missing):
    tok = token(key, None) if missing == "aud" else token(key, DISCOVERY, **{missing: None})
    assert_refused(client.get("/cds-services", headers=bearer(tok)))


def test_wrong_audience_is_refused(client, key):
    assert_refused(client.get("/cds-services", headers=bearer(token(key, "https://evil.example.org/cds-services"))))
    # a token minted for discovery cannot be used to call a service
    assert_refused(client.post("/cds-services/jak-order-sign", json=hook_body(),
                               headers=bearer(token(key, DISCOVERY))))
    # nor one minted for another service
    assert_refused(client.post("/cds-services/jak-order-sign", json=hook_body(),
                               headers=bearer(token(key, f"{BASE}/cds-services/jak-order-select"))))


def test_unknown_issuer_is_refused(client, key):
    assert_refused(client.get("/cds-services", headers=bearer(token(key, DISCOVERY, iss="https://evil.example.org"))))


def test_hs256_token_is_refused_even_when_keyed_with_the_public_key(client, key):
    # classic algorithm confusion: HMAC keyed with the published public key
    secret = json.dumps(key.jwk).encode()
    assert_refused(client.get("/cds-services", headers=bearer(unsafe_token("HS256", claims(DISCOVERY), secret))))
    assert_refused(client.get("/cds-services", headers=bearer(unsafe_token("HS256", claims(DISCOVERY), b"secret"))))


def test_none_algorithm_is_refused(client):
    assert_refused(client.get("/cds-services", headers=bearer(unsafe_token("none", claims(DISCOVERY)))))


def test_replayed_jti_is_refused(client, key):
    tok = token(key, DISCOVERY)
    assert client.get("/cds-services", headers=bearer(tok)).status_code == 200
    assert_refused(client.get("/cds-services", headers=bearer(tok)))
    # a fresh token with the same jti is a replay too
    first = token(key, DISCOVERY, jti="fixed-jti")
    second = token(key, DISCOVERY, jti="fixed-jti")
    assert client.get("/cds-services", headers=bearer(first)).status_code == 200
    assert_refused(client.get("/cds-services", headers=bearer(second)))


def test_replay_is_refused_by_another_worker_on_the_same_database(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}])
    worker_a = create_app(settings, knowledge=knowledge).test_client()
    worker_b = create_app(settings, knowledge=knowledge).test_client()
    tok = token(key, DISCOVERY)
    assert worker_a.get("/cds-services", headers=bearer(tok)).status_code == 200
    assert_refused(worker_b.get("/cds-services", headers=bearer(tok)))


def test_key_of_the_wrong_type_for_the_algorithm_is_refused(tmp_path, knowledge):
    ec384 = ec_key("k", "ES384")
    ec256 = ec_key("k", "ES256")
    # the client publishes a P-256 key under kid k but the token claims ES384 (curve mismatch)
    listed = {**ec256.jwk, "alg": "ES384"}
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": {"keys": [listed]}}])
    client = create_app(settings, knowledge=knowledge).test_client()
    assert_refused(client.get("/cds-services", headers=bearer(token(ec384, DISCOVERY))))


def test_unknown_kid_is_refused(client):
    other = ec_key("someone-else", "ES384")
    assert_refused(client.get("/cds-services", headers=bearer(token(other, DISCOVERY))))


def test_token_without_kid_is_refused(client, key):
    import jwt
    tok = jwt.encode(claims(DISCOVERY), key.private, algorithm="ES384")
    assert_refused(client.get("/cds-services", headers=bearer(tok)))


# --- JWKS by URL ---------------------------------------------------------------------------------------

@pytest.fixture
def jku_app(tmp_path, knowledge):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jku": JKU}])
    return create_app(settings, knowledge=knowledge)


@responses.activate
def test_jwks_fetched_from_the_allowed_jku_and_cached(jku_app, key):
    responses.get(JKU, json=jwks(key))
    client = jku_app.test_client()
    for _ in range(3):
        assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=JKU))).status_code == 200
    assert len(responses.calls) == 1
    # the client's jku is also used when the token has no jku header
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY))).status_code == 200
    assert len(responses.calls) == 1


@responses.activate
def test_key_rotation_refetches_on_unknown_kid(jku_app):
    old, new = ec_key("2026-01"), ec_key("2026-02")
    responses.get(JKU, json=jwks(old))
    client = jku_app.test_client()
    assert client.get("/cds-services", headers=bearer(token(old, DISCOVERY, jku=JKU))).status_code == 200
    responses.replace(responses.GET, JKU, json=jwks(old, new))
    jku_app.extensions["jak_auth"].jwks._last_attempt.clear()      # past the refetch interval
    assert client.get("/cds-services", headers=bearer(token(new, DISCOVERY, jku=JKU))).status_code == 200
    assert len(responses.calls) == 2


@responses.activate
def test_a_key_replaced_under_the_same_kid_is_the_one_used(jku_app):
    """An EHR that replaces its key but keeps the kid: once the JWKS is fetched again, tokens signed with
    the old key are refused and those signed with the new key accepted (no stale key object is reused)."""
    old, new = ec_key("main"), ec_key("main")
    responses.get(JKU, json=jwks(old))
    client = jku_app.test_client()
    assert client.get("/cds-services", headers=bearer(token(old, DISCOVERY, jku=JKU))).status_code == 200
    responses.replace(responses.GET, JKU, json=jwks(new))
    jku_app.extensions["jak_auth"].jwks._keys.clear()             # past the JWKS cache lifetime
    jku_app.extensions["jak_auth"].jwks._last_attempt.clear()     # and the refetch interval
    assert client.get("/cds-services", headers=bearer(token(new, DISCOVERY, jku=JKU))).status_code == 200
    assert_refused(client.get("/cds-services", headers=bearer(token(old, DISCOVERY, jku=JKU))))


@responses.activate
def test_unknown_kid_refetch_is_rate_limited(jku_app, key):
    responses.get(JKU, json=jwks(key))
    client = jku_app.test_client()
    stranger = ec_key("unknown")
    for _ in range(5):
        assert_refused(client.get("/cds-services", headers=bearer(token(stranger, DISCOVERY, jku=JKU))))
    assert len(responses.calls) == 1
    # the cached set still serves known keys without a fetch
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=JKU))).status_code == 200
    assert len(responses.calls) == 1


@responses.activate
def test_jku_other_than_the_allowed_one_is_never_fetched(jku_app, key):
    evil = "https://evil.example.org/jwks.json"
    responses.get(evil, json=jwks(key))
    assert_refused(jku_app.test_client().get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=evil))))
    assert len(responses.calls) == 0


@responses.activate
def test_jwks_fetch_failures_refuse_quickly(jku_app, key):
    responses.get(JKU, body=requests.ConnectTimeout("timed out"))
    start = time.monotonic()
    assert_refused(jku_app.test_client().get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=JKU))))
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("answer", [dict(status=500, body="oops"), dict(status=200, body="not json"),
                                    dict(status=200, json={"keys": "nope"}), dict(status=302, body="")])
def test_bad_jwks_answers_refuse(jku_app, key, answer):
    with responses.RequestsMock() as rsps:
        rsps.get(JKU, **answer)
        assert_refused(jku_app.test_client().get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=JKU))))


def test_jwks_fetch_uses_timeouts():
    seen = {}

    class Session:
        def get(self, url, **kwargs):
            seen.update(kwargs)
            raise requests.ReadTimeout("slow")

    assert auth.JwksCache(Session()).keys(JKU, "k") == []
    connect, read = seen["timeout"]
    assert 0 < connect <= 5 and 0 < read <= 10
    assert seen["allow_redirects"] is False


# --- preflight, docs, modes ------------------------------------------------------------------------------

def test_cors_preflight_needs_no_token(client):
    response = client.options("/cds-services/jak-order-sign", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"


def test_refusal_carries_cors_headers_so_browsers_can_see_it(client):
    response = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert_refused(response)
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"


def test_openapi_document_is_public(client):
    assert client.get("/openapi.json").status_code == 200


def test_tokens_are_never_logged(client, key, caplog):
    caplog.set_level(logging.DEBUG)
    good = token(key, DISCOVERY)
    expired = token(key, DISCOVERY, exp=int(time.time()) - 1000, iat=int(time.time()) - 2000)
    forged = token(ec_key(key.kid), DISCOVERY)
    client.get("/cds-services", headers=bearer(good))
    client.get("/cds-services", headers=bearer(good))            # replay
    client.get("/cds-services", headers=bearer(expired))
    client.get("/cds-services", headers=bearer(forged))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "401" in text                                         # the refusals were logged ...
    for tok in (good, expired, forged):
        for part in tok.split("."):
            assert part not in text                              # ... without any part of the token


def test_create_app_with_auth_auto_and_no_clients_is_open(tmp_path, knowledge):
    client = create_app(trust_settings(tmp_path), knowledge=knowledge).test_client()
    assert client.get("/cds-services").status_code == 200


def test_create_app_with_auth_required_enforces(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], auth="required")
    client = create_app(settings, knowledge=knowledge).test_client()
    assert_refused(client.get("/cds-services"))
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY))).status_code == 200


def test_auth_off_overrides_clients(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], auth="off")
    assert create_app(settings, knowledge=knowledge).test_client().get("/cds-services").status_code == 200


def test_serve_on_non_loopback_without_clients_refuses_to_start(tmp_path, knowledge):
    with pytest.raises(SystemExit, match="non-loopback.*JAK_CDS_TRUSTED_CLIENTS.*JAK_CDS_AUTH=off"):
        create_app(trust_settings(tmp_path), knowledge=knowledge, loopback=False)
    # explicit off is allowed, with a warning
    app = create_app(trust_settings(tmp_path, auth="off"), knowledge=knowledge, loopback=False)
    assert app.config["JAK_AUTH_MODE"] == "off"
    # with clients it starts and enforces
    key = ec_key()
    app = create_app(trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}]), knowledge=knowledge, loopback=False)
    assert app.config["JAK_AUTH_MODE"] == "required"


def test_serve_on_loopback_without_clients_runs_open_with_a_warning(tmp_path, knowledge, caplog):
    caplog.set_level(logging.WARNING)
    app = create_app(trust_settings(tmp_path), knowledge=knowledge, loopback=True)
    assert app.config["JAK_AUTH_MODE"] == "off"
    assert any("AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)


def test_required_without_clients_refuses_to_serve(tmp_path, knowledge):
    with pytest.raises(SystemExit, match="no trusted clients"):
        create_app(trust_settings(tmp_path, auth="required"), knowledge=knowledge, loopback=True)


def test_cli_serve_on_all_interfaces_without_clients_exits_with_the_reason(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("JAK_CDS_TRUSTED_CLIENTS", raising=False)
    monkeypatch.delenv("JAK_CDS_AUTH", raising=False)
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert cli_main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve on a non-loopback address" in capsys.readouterr().err


# --- trusted client file -------------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("{not json", "not readable JSON"),
    ('[{"jku": "https://x.example/jwks"}]', "iss"),
    ('[{"iss": "https://a.example"}]', "needs 'jku'"),
    ('[{"iss": "https://a.example", "jku": "ftp://a.example/jwks"}]', "https"),
    ('[{"iss": "https://a.example", "jku": "https://a.example/j", "colour": "red"}]', "colour"),
    ('[{"iss": "https://a.example", "jku": "https://a.example/j"}, {"iss": "https://a.example", "jku": "https://a.example/k"}]',
     "twice"),
    ('"just a string"', "malformed"),
])
def test_malformed_trusted_clients_file_is_a_clear_start_up_error(tmp_path, knowledge, content, message):
    path = tmp_path / "clients.json"
    path.write_text(content)
    settings = trust_settings(tmp_path, trusted_clients_file=str(path))
    with pytest.raises(SystemExit, match=message):
        create_app(settings, knowledge=knowledge)


def test_missing_trusted_clients_file_is_a_clear_start_up_error(tmp_path, knowledge):
    settings = trust_settings(tmp_path, trusted_clients_file=str(tmp_path / "nope.json"))
    with pytest.raises(SystemExit, match="does not exist"):
        create_app(settings, knowledge=knowledge)


def test_sandbox_preset_trusts_the_public_sandbox_by_jku():
    [client] = auth.load_trusted_clients(REPO_ROOT / "deploy" / "trusted-clients.sandbox.json")
    assert client.iss == "https://sandbox.cds-hooks.org"
    assert client.jku == "https://sandbox.cds-hooks.org/.well-known/jwks.json"


@responses.activate
def test_sandbox_preset_accepts_an_es384_token_signed_like_the_sandbox(tmp_path, knowledge):
    preset = REPO_ROOT / "deploy" / "trusted-clients.sandbox.json"
    sandbox_key = ec_key("sandbox-kid", "ES384")
    responses.get("https://sandbox.cds-hooks.org/.well-known/jwks.json", json=jwks(sandbox_key))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", trusted_clients_file=str(preset),
                        public_base_url="https://cds.example.org")
    client = create_app(settings, knowledge=knowledge).test_client()
    tok = token(sandbox_key, "https://cds.example.org/cds-services", iss="https://sandbox.cds-hooks.org",
                jku="https://sandbox.cds-hooks.org/.well-known/jwks.json")
    assert client.get("/cds-services", headers=bearer(tok)).status_code == 200
    assert_refused(client.get("/cds-services", headers=bearer(token(sandbox_key, "https://cds.example.org/cds-services"))))


def test_concurrent_first_calls_share_one_jwks_fetch(jku_app, key):
    """Callers arriving while the JWKS is being fetched wait for it instead of being refused."""
    import threading

    def slow_jwks(_request):
        time.sleep(0.3)
        return 200, {"Content-Type": "application/json"}, json.dumps(jwks(key))

    statuses = []
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, JKU, callback=slow_jwks)

        def call():
            client = jku_app.test_client()
            statuses.append(client.get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=JKU))).status_code)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(rsps.calls) == 1
    assert statuses == [200] * 5


def test_stale_jwks_is_refetched_after_its_ttl():
    now = [1000.0]
    session = requests.Session()
    cache = auth.JwksCache(session, ttl=100, refetch_interval=10, clock=lambda: now[0])
    key = ec_key("k1")
    with responses.RequestsMock() as rsps:
        rsps.get(JKU, json=jwks(key))
        assert cache.keys(JKU, "k1")[0]["kid"] == "k1"
        now[0] += 50
        cache.keys(JKU, "k1")
        assert len(rsps.calls) == 1                 # fresh: served from the cache
        now[0] += 100
        cache.keys(JKU, "k1")
        assert len(rsps.calls) == 2                 # past the TTL: fetched again


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_rsa_keys_are_refused(tmp_path, knowledge):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.helpers.trust import SigningKey
    weak = SigningKey("weak", "RS384", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    client = create_app(trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(weak)}]), knowledge=knowledge).test_client()
    assert_refused(client.get("/cds-services", headers=bearer(token(weak, DISCOVERY))))


@responses.activate
def test_no_netrc_login_is_sent_to_the_ehrs_jwks_url(jku_app, key, tmp_path, monkeypatch):
    """requests would add a ~/.netrc login for the JWKS host to the request; the EHR must never get one."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ehr.example.org login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    responses.get(JKU, json=jwks(key))
    client = jku_app.test_client()
    assert client.get("/cds-services", headers=bearer(token(key, DISCOVERY, jku=JKU))).status_code == 200
    assert "Authorization" not in responses.calls[0].request.headers
