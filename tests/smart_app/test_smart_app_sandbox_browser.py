"""The monitoring app opened from the CDS Hooks sandbox (cds-hooks/sandbox built from source) through the card link.

Runs only when JAK_CDS_SANDBOX_DIST names the sandbox's built ``build/`` directory (see docs/smart-app.md for how
to build it); not needed in CI. The sandbox (served statically), ``jak-cds fhir-server`` as its FHIR server (open
for the sandbox, SMART EHR for the app) and the service (hook auth off, loopback) run on loopback: the sandbox
calls patient-view, registers the smart link's launch at the FHIR server, and opens the app in a new tab, which
completes the EHR launch and draws the chart.

JAK_CDS_SCREENSHOT_SANDBOX=docs/smart-app-sandbox.png writes the screenshot shown in the docs.
"""
from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DIST = os.environ.get("JAK_CDS_SANDBOX_DIST")
if not DIST or not (Path(DIST) / "index.html").is_file():
    pytest.skip("JAK_CDS_SANDBOX_DIST does not name a built CDS Hooks sandbox", allow_module_level=True)

from cds_service.config import Settings  # noqa: E402
from cds_service.web.app import create_app  # noqa: E402
from fixtures.builders import TODAY  # noqa: E402
from tests.helpers.browser import CHROMIUM, skip_without_browser, sync_playwright  # noqa: E402
from tests.helpers.browser import wait_for as _wait_for  # noqa: E402
from tests.helpers.deploy import free_port

skip_without_browser()

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_PORT, FHIR_PORT, SERVICE_PORT = free_port(), free_port(), free_port()  # free loopback ports (JAK_CDS_TEST_PORTS may set the range)
PATIENT = "app-upadacitinib-falling-neutrophils"


class _Static(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sandbox():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", SANDBOX_PORT),
                                             functools.partial(_Static, directory=DIST))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{SANDBOX_PORT}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fhir_server():
    process = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "fhir-server",
                                str(ROOT / "fixtures" / "fhir" / f"{PATIENT}.json"), "--port", str(FHIR_PORT)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(FHIR_PORT)
        yield f"http://127.0.0.1:{FHIR_PORT}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from werkzeug.serving import make_server
    settings = Settings(evaluation_date=TODAY.isoformat(), auth="off",
                        database_url=f"sqlite:///{tmp_path_factory.mktemp('sandbox') / 'app.sqlite3'}")
    server = make_server("127.0.0.1", SERVICE_PORT, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{SERVICE_PORT}"
    finally:
        server.shutdown()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_the_card_link_in_the_sandbox_opens_the_app_with_the_chart(sandbox, fhir_server, service):
    from playwright.sync_api import expect
    base = f"{fhir_server}/{PATIENT}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            sandbox_requests: list[str] = []
            page = context.new_page()
            page.on("request", lambda r: sandbox_requests.append(f"{r.method} {r.url}"))
            page.goto(f"{sandbox}/?fhirServiceUrl={base}&patientId=p1&hook=patient-view"
                      f"&serviceDiscoveryURL={service}/cds-services")
            card = page.get_by_text("interrupt upadacitinib").first
            expect(card).to_be_visible(timeout=60000)
            link = page.get_by_role("button", name="Open JAK monitoring").first
            expect(link).to_be_enabled(timeout=30000)        # the sandbox got a launch_id from our FHIR server
            assert f"POST {base}/_services/smart/Launch" in sandbox_requests
            if os.environ.get("JAK_CDS_SCREENSHOT_SANDBOX"):
                link.hover()
                page.wait_for_timeout(500)                    # the button's hover transition, for the picture
                page.screenshot(path=os.environ["JAK_CDS_SCREENSHOT_SANDBOX"])
            app_requests: list[str] = []
            context.on("request", lambda r: app_requests.append(r.url))
            with context.expect_page(timeout=30000) as opened:
                link.click()
            app = opened.value
            problems: list[str] = []
            app.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            app.on("pageerror", lambda e: problems.append(str(e)))
            app.wait_for_selector("svg.chart[data-analyte=anc]", timeout=30000)
            assert app.url.startswith(f"{service}/app/index.html")
            chart = app.locator("svg.chart[data-analyte=anc]")
            line = chart.locator("g.threshold[data-kind=interrupt] line")
            assert float(chart.locator("circle.point.last").get_attribute("cy")) > float(line.get_attribute("y1"))
            assert any(u.startswith(f"{fhir_server}/_smart/token") for u in app_requests)
            ours = [u for u in app_requests if u.startswith(f"{service}/app/")]
            assert {origin(u) for u in app_requests[app_requests.index(ours[0]):]} <= {fhir_server, service}
            assert app.evaluate("() => sessionStorage.length + localStorage.length") == 0
            assert problems == []
        finally:
            browser.close()
