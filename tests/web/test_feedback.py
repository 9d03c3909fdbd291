"""POST /cds-services/{id}/feedback, the audit of issued cards, and `jak-cds report`."""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import pytest

from cds_service.web.app import create_app
from cds_service.cli import main as cli_main
from cds_service.store import Store
from fixtures.builders import draft_order
from tests.helpers.hooks import make_request
from tests.helpers.records import AD, RA, record
from tests.helpers.trust import StoreFactory, feedback_body, trust_settings

SIGN = "/cds-services/jak-order-sign"
FEEDBACK = f"{SIGN}/feedback"


@pytest.fixture
def settings(tmp_path):
    return trust_settings(tmp_path, auth="off")


def issue_age_card(client, token="secret-token"):
    """The upadacitinib age >= 65 dose card (the fixture record is patient p1)."""
    body = make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]), token=token)
    response = client.post(SIGN, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert cards, "the upadacitinib 30 mg order at 65 should get a card"
    # the dose card if the rules give it (they are being extended by others), else the first card
    card = next((c for c in cards if c["source"]["topic"]["code"] == "upadacitinib-ad-age-65"), cards[0])
    return body, card


def assert_outcome(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    return body


def test_every_issued_card_is_recorded_with_its_rule_and_hook(client, app):
    body = make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]))
    cards = client.post(SIGN, json=body).get_json()["cards"]
    rows = app.extensions["jak_store"].issued()
    assert sorted(r["card_uuid"] for r in rows) == sorted(c["uuid"] for c in cards) and cards
    card = cards[0]
    [row] = [r for r in rows if r["card_uuid"] == card["uuid"]]
    assert row["rule_id"] == card["source"]["topic"]["code"]
    assert row["service_id"] == "jak-order-sign"
    assert row["hook_instance"] == body["hookInstance"]
    assert row["knowledge_version"] == app.extensions["jak_engine"].knowledge.version
    assert row["issued_at"] is not None


def test_audit_holds_a_keyed_hash_never_the_patient_id_or_a_token(tmp_path, knowledge):
    settings = trust_settings(tmp_path, auth="off", patient_hash_key="hash-key-1")
    app = create_app(settings, knowledge=knowledge)
    client = app.test_client()
    body = make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]),
                        patient_id="MRN-77-SECRET", fhir_server="http://127.0.0.1:9/fhir", token="tok-SECRET-99")
    body["prefetch"] = make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]),
                                    patient_id="MRN-77-SECRET")["prefetch"]
    card = client.post(SIGN, json=body).get_json()["cards"][0]
    client.post(FEEDBACK, json=feedback_body(card["uuid"]))
    row = app.extensions["jak_store"].issued()[0]
    assert row["patient_hash"] == hmac.new(b"hash-key-1", b"MRN-77-SECRET", hashlib.sha256).hexdigest()
    app.extensions["jak_store"].dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("trust.sqlite3*"))
    assert raw, "the database file should exist"
    assert b"MRN-77-SECRET" not in raw and b"tok-SECRET-99" not in raw


def test_accepted_feedback_is_stored(client, app):
    _, card = issue_age_card(client)
    suggestion = card.get("suggestions", [{"uuid": "6f1c1f7e-2f0e-4a55-9a35-0f8c9b0d5e11"}])[0]["uuid"]
    response = client.post(FEEDBACK, json=feedback_body(card["uuid"], "accepted", suggestion=suggestion))
    assert response.status_code == 200
    [row] = app.extensions["jak_store"].feedback_rows()
    assert (row["card_uuid"], row["outcome"], json.loads(row["accepted_suggestions"])) == (
        card["uuid"], "accepted", [suggestion])


def test_overridden_feedback_is_stored_with_the_reason(client, app):
    _, card = issue_age_card(client)
    response = client.post(FEEDBACK, json=feedback_body(card["uuid"], code="benefit", display="Benefit outweighs risk",
                                                        comment="discussed with patient"))
    assert response.status_code == 200
    [row] = app.extensions["jak_store"].feedback_rows()
    assert (row["outcome"], row["override_code"], row["override_display"], row["user_comment"]) == (
        "overridden", "benefit", "Benefit outweighs risk", "discussed with patient")


def test_several_items_in_one_call(client, app):
    _, a = issue_age_card(client)
    _, b = issue_age_card(client)
    body = {"feedback": feedback_body(a["uuid"])["feedback"] + feedback_body(b["uuid"], "accepted")["feedback"]}
    assert client.post(FEEDBACK, json=body).status_code == 200
    assert app.extensions["jak_store"].count("jak_feedback") == 2


def test_unknown_service_is_404(client):
    assert_outcome(client.post("/cds-services/nope/feedback", json=feedback_body(str(uuid.uuid4()))), 404)


CARD = "0d9a7d3e-8a0b-4c39-9d0b-8a6a4d4f3e21"


@pytest.mark.parametrize("body", [
    [],
    "feedback",
    {},
    {"feedback": []},
    {"feedback": "x"},
    {"feedback": [{}]},
    {"feedback": [{"card": CARD, "outcome": "accepted"}]},                                   # no timestamp
    {"feedback": [{"card": CARD, "outcome": "maybe", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
    {"feedback": [{"card": "not-a-uuid", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
    {"feedback": [{"card": 42, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
    {"feedback": [{"card": CARD, "outcome": "accepted", "outcomeTimestamp": "yesterday"}]},
    {"feedback": [{"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                   "acceptedSuggestions": [{"id": "x"}]}]},
    {"feedback": [{"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                   "overrideReason": {"reason": {"code": "x"}}}]},
    {"feedback": [{"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                   "acceptedSuggestions": [{"id": CARD}]}]},
    {"feedback": [{"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                   "overrideReason": {"reason": {"system": "urn:x"}}}]},                    # coding without code
    {"feedback": [{"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                   "overrideReason": "because"}]},
    {"feedback": [{"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}] * 101},
])
def test_invalid_feedback_is_400_with_an_operation_outcome(client, app, body):
    assert_outcome(client.post(FEEDBACK, json=body), 400)
    assert app.extensions["jak_store"].count("jak_feedback") == 0


def test_feedback_must_be_json(client):
    assert_outcome(client.post(FEEDBACK, data="card=1", content_type="application/x-www-form-urlencoded"), 415)
    assert_outcome(client.post(FEEDBACK, data="{not json", content_type="application/json"), 400)
    assert_outcome(client.post(FEEDBACK, data="", content_type="application/json"), 400)


def test_feedback_for_a_card_we_never_issued_is_kept_apart(client, app):
    assert client.post(FEEDBACK, json=feedback_body(CARD)).status_code == 200
    report = {r["rule"]: r for r in app.extensions["jak_store"].rule_report()}
    assert report["(unknown card)"]["overridden"] == 1


def _run_report(monkeypatch, capsys, url, *args):
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", url)
    assert cli_main(["report", *args]) == 0
    return capsys.readouterr().out


def test_feedback_survives_a_restart_and_shows_in_the_report(settings, knowledge, monkeypatch, capsys):
    first = create_app(settings, knowledge=knowledge)
    client = first.test_client()
    _, card1 = issue_age_card(client)
    _, card2 = issue_age_card(client)
    _, card3 = issue_age_card(client)
    assert client.post(FEEDBACK, json=feedback_body(card1["uuid"], "accepted")).status_code == 200
    assert client.post(FEEDBACK, json=feedback_body(card2["uuid"], code="declined",
                                                    display="Patient declined")).status_code == 200
    first.extensions["jak_store"].dispose()
    del first, client

    second = create_app(settings, knowledge=knowledge)            # a restart on the same database file
    assert second.test_client().post(FEEDBACK, json=feedback_body(card3["uuid"], code="declined",
                                                                  display="Patient declined")).status_code == 200
    second.extensions["jak_store"].dispose()

    rule_id = card1["source"]["topic"]["code"]
    assert card2["source"]["topic"]["code"] == card3["source"]["topic"]["code"] == rule_id
    report = json.loads(_run_report(monkeypatch, capsys, settings.database_url, "--json"))
    [rule] = [r for r in report["rules"] if r["rule"] == rule_id]
    assert rule["issued"] >= 3 and (rule["accepted"], rule["overridden"]) == (1, 2)
    assert rule["top_override_reasons"] == [{"system": "https://jak-cds.example/override", "code": "declined",
                                             "display": "Patient declined", "count": 2}]
    assert (report["totals"]["accepted"], report["totals"]["overridden"]) == (1, 2)
    assert report["totals"]["issued"] == sum(r["issued"] for r in report["rules"]) >= 3

    text = _run_report(monkeypatch, capsys, settings.database_url)
    line = next(ln for ln in text.splitlines() if ln.startswith(rule_id + " "))
    assert line.split()[1:4] == [str(rule["issued"]), "1", "2"] and "Patient declined (2)" in line


def test_report_on_an_empty_database(tmp_path, monkeypatch, capsys):
    assert "no cards issued" in _run_report(monkeypatch, capsys, f"sqlite:///{tmp_path / 'empty.sqlite3'}")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_feedback_through_the_app_and_a_restart_on_each_backend(kind, tmp_path, knowledge, settings):
    stores = StoreFactory(kind, tmp_path)
    try:
        app = create_app(settings, knowledge=knowledge)
        app.extensions["jak_store"] = stores()
        client = app.test_client()
        _, card = issue_age_card(client)
        assert client.post(FEEDBACK, json=feedback_body(card["uuid"])).status_code == 200
        app.extensions["jak_store"].flush()    # the old process stops: its audit writer empties (atexit)
        restarted = stores()
        [row] = [r for r in restarted.rule_report() if r["rule"] == card["source"]["topic"]["code"]]
        assert row["issued"] >= 1 and row["overridden"] == 1
    finally:
        stores.close()


def test_cards_without_a_store_are_still_answered(settings, knowledge):
    """The audit is an extension: the hook answer does not depend on it."""
    app = create_app(settings, knowledge=knowledge)
    del app.extensions["jak_store"]
    _, card = issue_age_card(app.test_client())
    assert card["uuid"]


def test_no_card_no_audit_row(client, app):
    response = client.post(SIGN, json=make_request(record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])))
    cards = response.get_json()["cards"]
    assert len(app.extensions["jak_store"].issued()) == len(cards)


def test_store_from_settings_uses_the_configured_database(settings):
    store = Store.from_settings(settings)
    assert store.url == settings.database_url


def test_database_outage_still_answers_the_hook_and_asks_feedback_to_retry(tmp_path, knowledge, caplog):
    """SQLite's outage: a file that cannot be opened (here its directory is missing). The clinician still
    gets the cards, feedback is refused with 503 + Retry-After, and once the file can be opened the
    audit rows kept meanwhile are written: nothing is lost."""
    settings = trust_settings(tmp_path, auth="off", database_url=f"sqlite:///{tmp_path / 'no-such-dir' / 'x.sqlite3'}",
                              audit_spool=str(tmp_path / "spool"))
    app = create_app(settings, knowledge=knowledge)
    store = app.extensions["jak_store"]
    client = app.test_client()
    _, card = issue_age_card(client)                              # the clinician still gets the cards
    store.flush()                                                 # the audit is written in the background
    assert store.audit_failures == 0
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
    response = client.post(FEEDBACK, json=feedback_body(card["uuid"]))
    assert_outcome(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    (tmp_path / "no-such-dir").mkdir()                            # the database is back
    assert store.drain(timeout=30)
    assert card["uuid"] in {r["card_uuid"] for r in store.issued()}
    assert client.post(FEEDBACK, json=feedback_body(card["uuid"])).status_code == 200
    assert store.count("jak_feedback") == 1 and store.audit_failures == 0


def test_report_on_an_unreachable_database_says_so(monkeypatch, capsys):
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert cli_main(["report"]) == 2
    assert "cannot read the database" in capsys.readouterr().err
