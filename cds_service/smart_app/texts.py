"""Every text the monitoring app shows (issue 25): ``say()`` templates, so the catalogues (``cards/i18n/*.po``)
are their one source of truth and the start-up check and ``python -m cds_service.i18n`` cover them.

``GET /app/api/strings`` answers ``strings()`` in the call's language. A template's ``{placeholders}`` are left
for the app to fill (``say`` without values does not format); the values it fills in are numbers and dates it
formats with ``Intl`` for ``LOCALES[language]`` (dates as ``DATE_STYLE[language]``: English keeps ISO 8601, as
the cards do), or texts the service already made in that language (analyte names, findings, visit labels).
"""

from __future__ import annotations

from cds_service.i18n import say

# the BCP 47 locale the app formats numbers and dates with (Intl), per language the service answers in
LOCALES = {"en": "en-GB", "nl": "nl-NL", "nb": "nb-NO"}
# "iso": 2026-11-01 (what the English cards show); "medium": Intl's medium date (1 nov 2026, 1. nov. 2026)
DATE_STYLE = {"en": "iso", "nl": "medium", "nb": "medium"}


def visit_states() -> dict[str, str]:
    """The words for a visit's or a schedule's state (the codes stay English in the data)."""
    return {
        "done": say("done"),
        "due": say("due"),
        "overdue": say("overdue"),
        "planned": say("planned"),
        "up to date": say("up to date"),
    }


def strings() -> dict[str, str]:
    """The app's texts in the current language (``i18n.using``), by key."""
    return {
        # the pages
        "title": say("JAK inhibitor monitoring"),
        "launchTitle": say("JAK monitoring: launching"),
        "connecting": say("Connecting to the patient record…"),
        "reading": say("Reading the patient record…"),
        "footer": say(
            "Thresholds, schedule and analyte codes come from the service's knowledge (the same rules "
            "as its cards). Values are shown in the unit the laboratory reported."
        ),
        # messages
        "launchFailed": say("The app could not be launched: {why}"),
        "noSession": say(
            "No SMART session: this app keeps its access token in the page's memory only, so a "
            "reload or a page opened directly has none. Open it again from the card link (or launch "
            "it from the EHR)."
        ),
        "launchIncomplete": say("The app could not complete its SMART launch: {why}"),
        "unknownError": say("unknown error"),
        "noPatient": say("The launch named no patient."),
        "cannotRead": say("The patient record could not be read from the FHIR server."),
        "refused": say(
            "The service refused this launch (HTTP 401): its ticket is missing, expired or for another "
            "patient. Open the app again from a current card for this patient."
        ),
        "notComputed": say("The monitoring state could not be computed: {why}"),
        "httpStatus": say("the service answered HTTP {status}"),
        "partUnreadable": say("Part of the record could not be read: {why}"),
        "noLabs": say(
            "No laboratory results on record for the monitored tests ({tests}). Nothing to draw: the "
            "tests are listed in the monitoring schedule below."
        ),
        "resultUnreadable": say("A result could not be interpreted: {why}"),
        "resultOfUnreadable": say("A result of {date} could not be interpreted: {why}"),
        # the header line
        "drugSince": say("{drug} since {date}"),
        "drugSinceUnknown": say("{drug} since an unknown date"),
        "asOf": say("as of {date}"),
        # headings
        "rulesSay": say("What the rules say"),
        "labResults": say("Laboratory results"),
        "schedule": say("Monitoring schedule"),
        # a panel: chart title and description (role="img"), marks, the table
        "chartTitle": say("{analyte} ({unit}) over time"),
        "chartDesc": say("Results: {count}; latest {value} on {date}."),
        "chartLines": say("Lines: {lines}."),
        "chartNoLines": say("No threshold lines for this drug."),
        "treatmentStart": say("treatment start {date}"),
        "start": say("start"),
        "pointTitle": say("{value} on {date}"),
        "visit": say("{visit} (due {due}): {state}"),
        "visitDone": say("{visit} (due {due}): done {date}"),
        "tableSummary": say("Values as a table"),
        "tableCaption": say("{analyte}: values ({unit})"),
        "colDate": say("Date"),
        "colValue": say("Value ({unit})"),
        "colReported": say("As reported"),
        "colCrossed": say("Lines crossed"),
        "none": say("none"),
        # the schedule table
        "colTests": say("Tests"),
        "colNow": say("Now"),
        "colVisits": say("Visits"),
        "stateWhy": say("{state}: {why}"),
        **{f"state:{code}": text for code, text in visit_states().items()},
    }
