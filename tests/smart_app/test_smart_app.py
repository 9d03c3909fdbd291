"""The SMART monitoring app's server side (issue 24): the card link, the monitoring state the app draws, the
ticket that stands in for hook authentication, the page headers, and that the built assets are current.

The browser itself is driven in tests/smart_app/test_smart_app_browser.py."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from cds_service.cli.replay import load_scenario
from cds_service.fhir.query import search
from cds_service.record.templates import render
from cds_service.smart_app import check_ticket, mint_ticket
from cds_service.web.app import create_app
from tests.helpers.hooks import call_hook, cards_of, make_request, rule_of
from tests.helpers.trust import ISS, bearer, ec_key, jwks, token, trust_settings

ROOT = Path(__file__).resolve().parents[2]
APP_SRC = ROOT / "smart-app"
STATIC = ROOT / "cds_service" / "smart_app" / "static"
FIXTURES = ROOT / "fixtures" / "fhir"


def stamp() -> str:
    """The digest smart-app/build.mjs writes to BUILD-STAMP: "path\\0bytes\\0" per source file, sorted by path."""
    names = sorted([p.relative_to(APP_SRC).as_posix() for p in (APP_SRC / "src").rglob("*") if p.is_file()]
                   + ["build.mjs", "package.json", "package-lock.json"])
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (APP_SRC / name).read_bytes() + b"\0")
    return digest.hexdigest()


def test_the_built_app_is_current_with_its_sources():
    assert (STATIC / "BUILD-STAMP").read_text().strip() == stamp(), "the app's sources changed: run `make app`"
    for name in ("index.html", "launch.html", "app.js", "launch.js", "app.css"):
        assert (STATIC / name).is_file(), name


def record_of(name: str) -> list[dict]:
    return load_scenario(FIXTURES / f"{name}.json").resources


def read_like_the_app(client, resources: list[dict], patient_id: str = "p1") -> dict:
    """What app.js does: the service's queries, run against the FHIR server (here: the fixture record)."""
    queries = client.get("/app/api/queries").get_json()["queries"]
    context = {"patientId": patient_id}
    return {key: search(resources, render(query, context)) for key, query in queries.items()}


def monitoring(client, name: str, headers=None):
    body = {"patientId": "p1", "prefetch": read_like_the_app(client, record_of(name))}
    return client.post("/app/api/monitoring", json=body, headers=headers or {})


def panel(state: dict, analyte: str) -> dict:
    return next(a for a in state["analytes"] if a["id"] == analyte)


def test_falling_neutrophils_are_drawn_against_the_interrupt_line_of_the_card(client):
    state = monitoring(client, "app-upadacitinib-falling-neutrophils").get_json()
    anc = panel(state, "anc")
    assert anc["unit"] == "×10⁹/L"
    assert [p["value"] for p in anc["series"]] == [4.2, 3.4, 2.6, 1.9, 1.3, 0.8]
    interrupt = next(line for line in anc["lines"] if line["kind"] == "interrupt")
    assert interrupt["value"] == 1.0 and anc["series"][-1]["value"] < interrupt["value"]
    assert state["start"] == "2026-04-05"
    # the same verdict as the patient-view card
    assert {"indicator": "critical", "rule": "anc-below-1-on-treatment",
            "summary": "Absolute neutrophil count 0.8 ×10⁹/L < 1: interrupt upadacitinib"} in state["statements"]
    assert panel(state, "alt")["lines"][0]["label"] == "2 × ULN" and panel(state, "alt")["lines"][0]["value"] == 90


def test_the_missed_week_4_visit_is_overdue(client):
    state = monitoring(client, "app-upadacitinib-week-7-visit-missed").get_json()
    cbc = next(s for s in state["schedules"] if s["id"] == "monitor-cbc")
    assert cbc["state"] == "overdue"
    assert [(v["label"], v["status"]) for v in cbc["visits"]][:2] == [("week 4", "overdue"), ("week 8", "due")]


def test_no_labs_gives_a_message_per_test_and_no_series(client):
    state = monitoring(client, "app-upadacitinib-no-labs").get_json()
    assert state["analytes"] and all(a["series"] == [] for a in state["analytes"])
    assert panel(state, "anc")["message"] == "Absolute neutrophil count: none on record."


def test_a_record_part_the_app_could_not_read_is_said(client):
    prefetch = read_like_the_app(client, record_of("app-upadacitinib-falling-neutrophils"))
    del prefetch["haematology"]
    state = client.post("/app/api/monitoring", json={"patientId": "p1", "prefetch": prefetch}).get_json()
    assert state["unavailable"] and "could not be obtained" in panel(state, "anc")["message"]


def test_haemoglobin_in_mmol_is_drawn_in_mmol_with_the_mmol_line(client):
    state = monitoring(client, "mon-hb-4.8-mmol").get_json()
    hb = panel(state, "hb")
    assert hb["unit"] == "mmol/L" and any(line["value"] == 5.0 and line["kind"] == "interrupt" for line in hb["lines"])


@pytest.mark.parametrize("body", [[], {"patientId": ""}, {"patientId": "p1", "prefetch": []},
                                  {"patientId": "p1", "prefetch": {"nonsense": []}},
                                  {"patientId": "p1", "prefetch": {"haematology": 3}}])
def test_bad_input_is_a_4xx_operation_outcome(client, body):
    response = client.post("/app/api/monitoring", json=body)
    assert 400 <= response.status_code < 500
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_app_pages_carry_a_content_security_policy(client):
    response = client.get("/app/index.html")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "connect-src 'self' http://127.0.0.1:*" in policy and "https:" not in policy.replace("https://", "")
    assert client.get("/app/launch").status_code == 200
    assert client.get("/app/BUILD-STAMP").status_code == 404


def test_patient_view_cards_carry_the_app_link_and_list_their_sources_once(client):
    cards = cards_of(call_hook(client, record_of("mon-week-7-overdue"), "patient-view"))
    card = cards[0]
    assert card["links"] == [{"label": "Open JAK monitoring", "url": "http://localhost/app/launch", "type": "smart"}]
    assert "**Sources**" in card["detail"]


def test_the_link_respects_the_public_base_url(settings, knowledge):
    app = create_app(settings.with_(public_base_url="https://cds.example.org/jak"), knowledge=knowledge)
    cards = cards_of(call_hook(app.test_client(), record_of("mon-anc-0.8"), "patient-view"))
    assert {link["url"] for card in cards for link in card["links"]} == {"https://cds.example.org/jak/app/launch"}


def order_cards(client, name: str) -> list[dict]:
    scenario = load_scenario(FIXTURES / f"{name}.json")
    return cards_of(call_hook(client, scenario.resources + scenario.drafts, scenario.hook))


def smart_links(card: dict) -> list[dict]:
    return [link for link in card.get("links", []) if link.get("type") == "smart"]


def test_order_cards_get_the_link_only_for_a_patient_already_on_a_jak_inhibitor(client):
    cards = order_cards(client, "co-baricitinib-then-probenecid")
    assert cards and all(smart_links(c) for c in cards if rule_of(c) != "missing-data")
    assert not any(smart_links(c) for c in order_cards(client, "core-upadacitinib-ad-age-65"))


def test_a_jak_inhibitor_order_for_a_patient_already_on_another_links_to_the_app(client):
    """Upadacitinib ordered for a patient whose baricitinib is still active: the order's cards link to the chart
    of the treatment under way; the same order as a first JAK inhibitor has no link."""
    on_baricitinib = load_scenario(FIXTURES / "co-baricitinib-then-probenecid.json")
    active = [r for r in on_baricitinib.resources if r["resourceType"] == "MedicationRequest"]
    first = load_scenario(FIXTURES / "core-upadacitinib-ad-age-65.json")
    cards = cards_of(call_hook(client, first.resources + active + first.drafts, first.hook))
    assert cards and all(smart_links(c) for c in cards if rule_of(c) != "missing-data")
    assert not any(smart_links(c) for c in order_cards(client, "core-upadacitinib-ad-age-65"))


# --- the ticket when hook authentication is on ---------------------------------------------------

@pytest.fixture
def secured(tmp_path, knowledge):
    key = ec_key()
    app = create_app(trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], app_ticket_key="k" * 32),
                     knowledge=knowledge)
    return app.test_client(), key


def test_with_auth_on_the_link_carries_a_ticket_that_opens_the_endpoint_for_that_patient_only(secured):
    client, key = secured
    body = make_request(record_of("mon-anc-0.8"), "patient-view")
    response = client.post("/cds-services/jak-patient-view", json=body,
                           headers=bearer(token(key, "http://localhost/cds-services/jak-patient-view")))
    link = cards_of(response)[0]["links"][0]
    ticket = json.loads(link["appContext"])["jakCdsTicket"]
    payload = ticket.split(".")[0]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "p1" not in {str(v) for v in claims.values()}      # the patient id is not in the ticket, only its keyed hash
    prefetch = read_like_the_app(client, record_of("mon-anc-0.8"))
    ok = client.post("/app/api/monitoring", json={"patientId": "p1", "prefetch": prefetch}, headers=bearer(ticket))
    assert ok.status_code == 200 and panel(ok.get_json(), "anc")["series"]
    assert client.post("/app/api/monitoring", json={"patientId": "p1", "prefetch": prefetch}).status_code == 401
    other = client.post("/app/api/monitoring", json={"patientId": "p2", "prefetch": prefetch}, headers=bearer(ticket))
    assert other.status_code == 401
    assert client.get("/app/index.html").status_code == 200          # the pages hold no patient data
    assert client.get("/cds-services").status_code == 401            # the hooks still want their JWT


def test_a_ticket_expires_and_cannot_be_forged():
    key = b"k" * 32
    ticket = mint_ticket(key, "p1", now=1000, ttl=60)
    assert check_ticket(key, ticket, "p1", now=1059) is None
    assert check_ticket(key, ticket, "p1", now=1061) == "ticket expired"
    assert check_ticket(b"x" * 32, ticket, "p1", now=1000) == "bad ticket signature"
    assert check_ticket(key, ticket, "p2", now=1000) == "ticket is for another patient"
    assert check_ticket(key, "garbage", "p1", now=1000) is not None


# --- languages (issue 25): the app's texts and the monitoring state in the browser's language ------------------

def test_the_app_texts_follow_accept_language(client):
    answers = {}
    for header, language in [("nl-NL,nl;q=0.9,en;q=0.8", "nl"), ("no", "nb"), ("de", "en"), (None, "en")]:
        response = client.get("/app/api/strings", headers={"Accept-Language": header} if header else {})
        assert response.status_code == 200 and response.headers["Content-Language"] == language
        answers[language] = response.get_json()
        assert answers[language]["language"] == language
    assert answers["nl"]["strings"]["schedule"] == "Controleschema"
    assert answers["nb"]["strings"]["state:overdue"] == "forsinket"
    assert answers["en"]["strings"]["visit"] == "{visit} (due {due}): {state}"      # placeholders left for the app
    assert (answers["en"]["locale"], answers["en"]["dates"]) == ("en-GB", "iso")
    assert (answers["nb"]["locale"], answers["nb"]["dates"]) == ("nb-NO", "medium")
    assert set(answers["nl"]["strings"]) == set(answers["nb"]["strings"]) == set(answers["en"]["strings"])
    words = {k: v for k, v in answers["en"]["strings"].items() if re.search("[a-z]", re.sub(r"\{\w+\}", "", v))}
    same = {k for k in words if answers["nl"]["strings"][k] == words[k] or answers["nb"]["strings"][k] == words[k]}
    assert same == {"start"}            # the chart's "start" mark is the same word in Dutch and Norwegian


def test_the_monitoring_state_is_in_the_language_asked_for(client):
    """The same state as in English (values, lines, visit marks), its texts in Norwegian: the missed week-4 visit
    is overdue in every language (the visit the rules' verdict is about is found by its week, not its label)."""
    english = monitoring(client, "app-upadacitinib-week-7-visit-missed").get_json()
    response = monitoring(client, "app-upadacitinib-week-7-visit-missed", headers={"Accept-Language": "nb"})
    assert response.headers["Content-Language"] == "nb"
    norwegian = response.get_json()
    cbc = next(s for s in norwegian["schedules"] if s["id"] == "monitor-cbc")
    assert [(v["label"], v["status"]) for v in cbc["visits"]][:2] == [("uke 4", "overdue"), ("uke 8", "due")]
    assert cbc["display"] == "full blodstatus med differensialtelling" and cbc["why"].startswith("kontroll uke 4")

    def shape(state):
        return ([(s["id"], s["state"], [(v["due"], v["status"], v["done"]) for v in s["visits"]]) for s in state["schedules"]],
                [(a["id"], a["series"] and [p["value"] for p in a["series"]], [(l["kind"], l["value"]) for l in a["lines"]])
                 for a in state["analytes"]], [(s["indicator"], s["rule"]) for s in state["statements"]])
    assert shape(norwegian) == shape(english)

    dutch = monitoring(client, "app-upadacitinib-falling-neutrophils", headers={"Accept-Language": "nl"}).get_json()
    anc = panel(dutch, "anc")
    assert anc["display"] == "absoluut aantal neutrofielen" and anc["series"][-1]["reported"] == "0,8 ×10⁹/L"
    assert [line["label"] for line in anc["lines"]] == ["niet starten / onderbreken < 1 ×10⁹/L"]
    assert panel(dutch, "alt")["lines"][0]["label"] == "2 × bovengrens"
    assert {"indicator": "critical", "rule": "anc-below-1-on-treatment",
            "summary": "Absoluut aantal neutrofielen 0,8 ×10⁹/L < 1: onderbreek upadacitinib"} in dutch["statements"]
    no_labs = monitoring(client, "app-upadacitinib-no-labs", headers={"Accept-Language": "nl"}).get_json()
    assert panel(no_labs, "anc")["message"] == "Absoluut aantal neutrofielen: niets vastgelegd."


@pytest.mark.parametrize("language", ["en", "nl", "nb"])
def test_week_9_with_nothing_done_marks_week_4_overdue_and_week_8_due_in_every_language(client, language):
    """The rules' verdict is about week 8 (due); week 4 stays overdue. The visit a verdict is about is found by
    its checkpoint week, not by matching the visit's label in the verdict's text (which differs per language)."""
    from fixtures.scenarios_monitoring import on_treatment
    body = {"patientId": "p1", "prefetch": read_like_the_app(client, on_treatment(9, labs_days_ago=None))}
    state = client.post("/app/api/monitoring", json=body, headers={"Accept-Language": language}).get_json()
    cbc = next(s for s in state["schedules"] if s["id"] == "monitor-cbc")
    assert cbc["state"] == "due"
    assert [(v["week"], v["status"]) for v in cbc["visits"]][:3] == [(4, "overdue"), (8, "due"), (12, "planned")]
