"""The monitoring app in Dutch and Norwegian Bokmål (issue 25), in headless Chromium with the browser's locale set
to nl-NL / nb-NO: the app takes its texts from the service (GET /app/api/strings, chosen by the browser's
Accept-Language) and the monitoring state in the same language, dates and numbers as the locale writes them, and
no English sentence is left on the page. Same set-up and skip rules as tests/smart_app/test_smart_app_browser.py.
"""
from __future__ import annotations

import pytest

from cds_service.config import Settings
from fixtures.builders import TODAY
from tests.helpers.browser import chromium, fixture_fhir_server, service_on, skip_without_browser
from tests.helpers.deploy import free_port
from tests.helpers.i18n import english_sentences

FHIR_PORT, SERVICE_PORT = free_port(), free_port()  # free loopback ports (JAK_CDS_TEST_PORTS may set the range)
PATIENTS = ["app-upadacitinib-falling-neutrophils", "app-upadacitinib-week-7-visit-missed"]

skip_without_browser()

# what a Dutch or Norwegian prescriber reads (terms as in the cards' catalogues, cards/i18n/*.po)
EXPECTED = {
    "nl-NL": {
        "lang": "nl", "headings": ["Wat de regels zeggen", "Laboratoriumuitslagen", "Controleschema"],
        "columns": ["Datum", "Waarde (×10⁹/L)", "Zoals gerapporteerd", "Overschreden lijnen"],
        "anc": "absoluut aantal neutrofielen", "interrupt": "onderbreken", "finding": "onderbreek upadacitinib",
        "last": ["27 okt 2026", "0,8"], "done": "week 4 (gepland 3 mei 2026): gedaan 3 mei 2026",
        "up to date": "op schema", "planned": "komt nog",
        "overdue": "week 4 (gepland 11 okt 2026): te laat", "due": "week 8 (gepland 8 nov 2026): nu nodig",
    },
    "nb-NO": {
        "lang": "nb", "headings": ["Hva reglene sier", "Laboratoriesvar", "Oppfølgingsplan"],
        "columns": ["Dato", "Verdi (×10⁹/L)", "Som rapportert", "Linjer krysset"],
        "anc": "absolutt nøytrofiltall", "interrupt": "avbryt", "finding": "avbryt upadacitinib",
        "last": ["27. okt. 2026", "0,8"], "done": "uke 4 (planlagt 3. mai 2026): utført 3. mai 2026",
        "up to date": "i rute", "planned": "kommer senere",
        "overdue": "uke 4 (planlagt 11. okt. 2026): forsinket", "due": "uke 8 (planlagt 8. nov. 2026): skal tas nå",
    },
}


@pytest.fixture(scope="module")
def fhir_server():
    with fixture_fhir_server(PATIENTS, FHIR_PORT) as base:
        yield base


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    settings = Settings(evaluation_date=TODAY.isoformat(), auth="off",
                        database_url=f"sqlite:///{tmp_path_factory.mktemp('app-i18n') / 'app.sqlite3'}")
    with service_on(SERVICE_PORT, settings) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_app(browser, service, fhir_server):
    contexts = []

    def run(patient: str, locale: str):
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        problems: list[str] = []
        languages: list[str | None] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("response", lambda r: languages.append((r.url.rsplit("/", 1)[1], r.headers.get("content-language")))
                if "/app/api/" in r.url and "/queries" not in r.url else None)
        page.goto(f"{service}/app/launch?fhirServiceUrl={fhir_server}/{patient}&patientId=p1")
        page.wait_for_selector("main > :not(#status)", timeout=20000)
        for details in page.locator("details").all():      # the tables are read as well as the charts
            details.locator("summary").click()
        return page, problems, languages

    yield run
    for context in contexts:
        context.close()


def _everything_said(page) -> str:
    """The visible text, the page title, and what a screen reader gets from the charts (title, desc, mark titles)."""
    said = [page.title(), page.locator("body").inner_text()]
    said += page.locator("svg title, svg desc").all_text_contents()
    return "\n".join(said)


@pytest.mark.parametrize("locale", ["nl-NL", "nb-NO"])
def test_falling_neutrophils_in_the_browsers_language(open_app, locale):
    want = EXPECTED[locale]
    page, problems, languages = open_app("app-upadacitinib-falling-neutrophils", locale)
    assert page.locator("html").get_attribute("lang") == want["lang"]
    # the launch page's and the app's texts, and the monitoring state: all in the browser's language
    assert sorted(set(languages)) == [("monitoring", want["lang"]), ("strings", want["lang"])]
    assert [h.strip() for h in page.locator("main h2").all_inner_texts()] == want["headings"]
    assert want["finding"] in page.locator(".statements li.critical").inner_text()
    # the chart: still the interrupt line, labelled in the language, the last point below it
    anc = page.locator("section[data-analyte=anc]")
    assert anc.locator("h3").inner_text().startswith(want["anc"])
    line = anc.locator("g.threshold[data-kind=interrupt]")
    assert want["interrupt"] in line.locator("text").text_content()
    assert float(anc.locator("circle.point.last").get_attribute("cy")) > float(line.locator("line").get_attribute("y1"))
    # the table: headers, the newest row with the locale's date and decimal comma
    table = anc.locator("table.values")
    assert [c.strip() for c in table.locator("th").all_inner_texts()] == want["columns"]
    newest = [c.strip() for c in table.locator("tbody tr").first.locator("td").all_inner_texts()]
    assert newest[:2] == want["last"] and want["interrupt"] in newest[3]
    # the schedule: states as words of the language
    cbc = page.locator("tr[data-schedule=monitor-cbc]")
    assert cbc.locator("td.state").inner_text().strip() == want["up to date"]
    assert cbc.locator("li.mark.done").first.inner_text().strip() == want["done"]
    assert cbc.locator("li.mark.planned").last.inner_text().strip().endswith(want["planned"])
    said = _everything_said(page)
    assert english_sentences(said) == [], english_sentences(said)
    assert problems == []


@pytest.mark.parametrize("locale", ["nl-NL", "nb-NO"])
def test_the_missed_visit_is_overdue_in_the_browsers_language(open_app, locale):
    want = EXPECTED[locale]
    page, problems, _ = open_app("app-upadacitinib-week-7-visit-missed", locale)
    cbc = page.locator("tr[data-schedule=monitor-cbc]")
    assert cbc.get_attribute("data-state") == "overdue"
    marks = [m.strip() for m in cbc.locator("li.mark").all_inner_texts()]
    assert marks[:2] == [want["overdue"], want["due"]]
    said = _everything_said(page)
    assert english_sentences(said) == [], english_sentences(said)
    assert problems == []
