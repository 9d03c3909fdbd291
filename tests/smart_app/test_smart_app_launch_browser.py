"""The monitoring app's SMART EHR launch end to end in headless Chromium (Playwright, Debian's /usr/bin/chromium).

``jak-cds fhir-server`` plays the EHR (launch registration, authorize, token, FHIR reads with the bearer); the
service runs with hook authentication ON, so the card link's ``appContext`` ticket - minted by the service for a
patient-view call signed with a JWT, handed over by the EHR in the token response - is what opens
``POST /app/api/monitoring``. Also: the access token is never written to sessionStorage or localStorage, and the
app talks to the FHIR server's and the service's origins only.

Skipped when Chromium or Playwright is missing, unless JAK_CDS_REQUIRE_BROWSER=1 (.ci/run sets it).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from cds_service.cli.replay import load_scenario
from cds_service.smart_app import mint_ticket
from tests.helpers.browser import chromium, fixture_fhir_server, service_on, skip_without_browser
from tests.helpers.deploy import free_port
from tests.helpers.hooks import make_request
from tests.helpers.trust import ISS, bearer, ec_key, jwks, token, trust_settings

skip_without_browser()

ROOT = Path(__file__).resolve().parents[2]
FHIR_PORT, SERVICE_PORT = free_port(), free_port()  # free loopback ports (JAK_CDS_TEST_PORTS may set the range)
PATIENT = "app-upadacitinib-falling-neutrophils"
TICKET_KEY = "k" * 32


@pytest.fixture(scope="module")
def fhir_server():
    with fixture_fhir_server([PATIENT, "app-upadacitinib-no-labs"], FHIR_PORT) as base:
        yield base


@pytest.fixture(scope="module")
def secured_service(tmp_path_factory):
    key = ec_key()
    settings = trust_settings(tmp_path_factory.mktemp("launch"), [{"iss": ISS, "jwks": jwks(key)}],
                              app_ticket_key=TICKET_KEY)
    with service_on(SERVICE_PORT, settings) as base:
        yield base, key


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


# every value written to sessionStorage/localStorage by the page (the app's storage writes with setItem)
RECORD_STORAGE_WRITES = """(() => {
  const writes = window.__storageWrites = [];
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) { writes.push(String(key) + "=" + String(value)); return setItem.call(this, key, value); };
})();"""


def card_link(service: str, key) -> dict:
    """Patient-view for the fixture patient, signed as an EHR would: the card's 'Open JAK monitoring' link."""
    url = f"{service}/cds-services/jak-patient-view"
    body = make_request(load_scenario(ROOT / "fixtures" / "fhir" / f"{PATIENT}.json").resources, "patient-view")
    response = requests.post(url, json=body, headers=bearer(token(key, url)), timeout=30)
    assert response.status_code == 200, response.text
    links = [link for card in response.json()["cards"] for link in card.get("links", [])]
    assert links and links[0]["type"] == "smart" and links[0]["url"] == f"{service}/app/launch"
    return links[0]


def ehr_launch(browser, fhir: str, link: dict):
    """What an EHR (or the CDS Hooks sandbox) does with a smart link: register the launch, open the app."""
    base = f"{fhir}/{PATIENT}"
    registered = requests.post(f"{base}/_services/smart/Launch", timeout=10, json={
        "launchUrl": link["url"], "parameters": {"patient": "p1", "appContext": link["appContext"]}})
    assert registered.status_code == 200, registered.text
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(RECORD_STORAGE_WRITES)
    seen = {"requests": [], "token": [], "errors": [], "console": []}
    page.on("request", lambda r: seen["requests"].append(r))
    page.on("response", lambda r: seen["token"].append(r) if r.url.endswith("/_smart/token") else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.goto(f"{link['url']}?launch={registered.json()['launch_id']}&iss={base}")
    page.wait_for_selector("main > :not(#status)", timeout=30000)
    return page, seen


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_ehr_launch_reads_with_the_token_and_the_ticket_opens_the_monitoring_state(browser, fhir_server,
                                                                                     secured_service):
    service, key = secured_service
    link = card_link(service, key)
    page, seen = ehr_launch(browser, fhir_server, link)
    try:
        # the chart of this patient, computed by the service (so the ticket was accepted)
        chart = page.locator("svg.chart[data-analyte=anc]")
        assert chart.locator("g.threshold[data-kind=interrupt] line").count() == 1
        assert "interrupt upadacitinib" in page.locator(".statements li.critical").inner_text()
        # the authorization went through the dev EHR, and the record was read with its access token
        assert len(seen["token"]) == 1 and seen["token"][0].status == 200
        access_token = seen["token"][0].json()["access_token"]
        fhir_reads = [r for r in seen["requests"] if origin(r.url) == fhir_server and r.method == "GET"
                      and "/Observation" in r.url]
        assert fhir_reads and all(r.all_headers().get("authorization") == f"Bearer {access_token}"
                                  for r in fhir_reads)
        monitoring = [r for r in seen["requests"] if r.url == f"{service}/app/api/monitoring"]
        ticket = json.loads(link["appContext"])["jakCdsTicket"]
        assert len(monitoring) == 1 and monitoring[0].all_headers().get("authorization") == f"Bearer {ticket}"
        # the token is in the page's memory only
        stored = page.evaluate("() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])")
        assert access_token not in stored and access_token[:12] not in stored
        assert stored == "[[],[]]"
        writes = page.evaluate("() => window.__storageWrites.join('\\n')")
        assert access_token not in writes                   # never written, not only removed afterwards
        # nothing went anywhere but the FHIR server and the service
        assert {origin(r.url) for r in seen["requests"]} == {fhir_server, service}
        assert seen["errors"] == [] and seen["console"] == []
        # a reload has no session left: the page says so instead of failing
        page.reload()
        page.wait_for_selector("main > :not(#status)", timeout=20000)
        assert "No SMART session" in page.locator("p.message.error").inner_text()
        assert page.locator("svg").count() == 0
    finally:
        page.close()


@pytest.mark.parametrize("ticket", [
    mint_ticket(TICKET_KEY.encode(), "p1", now=time.time() - 9 * 3600),   # expired (8 hours)
    mint_ticket(TICKET_KEY.encode(), "p2"),                                # minted for another patient
    mint_ticket(b"x" * 32, "p1"),                                          # not signed by this service
], ids=["expired", "other-patient", "forged"])
def test_a_bad_ticket_is_a_clear_401_message_not_a_broken_chart(browser, fhir_server, secured_service, ticket):
    service, _ = secured_service
    link = {"url": f"{service}/app/launch", "appContext": json.dumps({"jakCdsTicket": ticket})}
    page, seen = ehr_launch(browser, fhir_server, link)
    try:
        message = page.locator("p.message.error").inner_text()
        assert "refused this launch (HTTP 401)" in message and "expired" in message
        assert page.locator("svg").count() == 0
        assert seen["errors"] == []
    finally:
        page.close()
