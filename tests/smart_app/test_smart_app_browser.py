"""The monitoring app in headless Chromium (Playwright with Debian's /usr/bin/chromium, no browser download):
``jak-cds fhir-server`` serves the fixture patients, the service serves the app, and the app is opened the way an
open FHIR server is launched (``fhirServiceUrl`` + ``patientId``).

Skipped when Chromium or Playwright is missing, unless JAK_CDS_REQUIRE_BROWSER=1 (.ci/run sets it: fail, not skip).
JAK_CDS_SCREENSHOT=docs/smart-app.png writes the screenshot of the falling-neutrophils patient shown in the docs.
"""
from __future__ import annotations

import os

import pytest

from cds_service.config import Settings
from fixtures.builders import TODAY
from tests.helpers.browser import chromium, fixture_fhir_server, service_on, skip_without_browser
from tests.helpers.deploy import free_port

# the launch and sandbox browser tests import these from here (and are skipped with this module)

FHIR_PORT, SERVICE_PORT = free_port(), free_port()  # free loopback ports (JAK_CDS_TEST_PORTS may set the range)
PATIENTS = ["app-upadacitinib-falling-neutrophils", "app-upadacitinib-week-7-visit-missed", "app-upadacitinib-no-labs"]

skip_without_browser()


@pytest.fixture(scope="module")
def fhir_server():
    with fixture_fhir_server(PATIENTS, FHIR_PORT) as base:
        yield base


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    settings = Settings(evaluation_date=TODAY.isoformat(), auth="off",
                        database_url=f"sqlite:///{tmp_path_factory.mktemp('app') / 'app.sqlite3'}")
    with service_on(SERVICE_PORT, settings) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_app(browser, service, fhir_server):
    pages = []

    def run(patient: str):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{service}/app/launch?fhirServiceUrl={fhir_server}/{patient}&patientId=p1")
        page.wait_for_selector("main > :not(#status)", timeout=20000)
        pages.append((page, problems))
        return page, problems

    yield run
    for page, _ in pages:
        page.close()


def test_falling_neutrophils_cross_the_interrupt_line(open_app):
    page, problems = open_app("app-upadacitinib-falling-neutrophils")
    chart = page.locator("svg.chart[data-analyte=anc]")
    line = chart.locator("g.threshold[data-kind=interrupt] line")
    assert line.count() == 1
    last = chart.locator("circle.point.last")
    # drawn, not only listed: the last point lies below the interrupt line on screen (larger y is lower)
    assert float(last.get_attribute("cy")) > float(line.get_attribute("y1"))
    assert float(last.get_attribute("data-value")) < float(chart.locator("g.threshold[data-kind=interrupt]").get_attribute("data-value"))
    assert "interrupt upadacitinib" in page.locator(".statements li.critical").inner_text()
    table = page.locator("section[data-analyte=anc] table.values")
    assert table.count() == 1 and "0.8" in table.text_content() and "interrupt" in table.text_content()
    assert page.locator("svg.chart").count() >= 9
    if os.environ.get("JAK_CDS_SCREENSHOT"):
        page.screenshot(path=os.environ["JAK_CDS_SCREENSHOT"], full_page=False)
    assert problems == []


def test_the_missed_visit_is_marked_overdue(open_app):
    page, problems = open_app("app-upadacitinib-week-7-visit-missed")
    row = page.locator("tr[data-schedule=monitor-cbc]")
    assert row.get_attribute("data-state") == "overdue"
    assert "week 4 (due 2026-10-11): overdue" in row.locator("li.mark.overdue").first.inner_text()
    assert page.locator("svg.chart[data-analyte=anc] g.visit[data-status=overdue]").count() >= 1
    assert problems == []


def test_no_labs_says_so_instead_of_drawing_empty_charts(open_app):
    page, problems = open_app("app-upadacitinib-no-labs")
    assert "No laboratory results on record" in page.locator("p.no-labs").inner_text()
    assert page.locator("svg").count() == 0
    assert page.locator("tr[data-schedule=monitor-cbc]").get_attribute("data-state") == "overdue"
    assert problems == []
