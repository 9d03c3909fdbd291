"""Decision 18: a JAK inhibitor order whose record cannot be read at all gets a warning card, never silence.

412 stays for a call that gave neither prefetch nor fhirServer (tests/web/test_protocol.py)."""
import re

import responses

from fixtures.builders import condition, draft_order, full_baseline, patient
from tests.helpers.hooks import FHIR_BASE, call_hook, cards_of, rule_of

RECORD = [patient(), *full_baseline(), condition("69896004", "Rheumatoid arthritis")]
UPADACITINIB = draft_order("upadacitinib 15 mg prolonged-release tablet", 15, rid="draft-upa")


def _server_down(client, drafts, status=503):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), status=status)
        return cards_of(call_hook(client, [*RECORD, *drafts], prefetch=False, fhir_server=FHIR_BASE))


def test_fhir_server_down_gives_a_warning_that_no_safety_check_was_run_and_why(client):
    cards = _server_down(client, [UPADACITINIB])
    assert [(c["indicator"], rule_of(c)) for c in cards] == [("warning", "record-unreadable")]
    card = cards[0]
    assert card["summary"] == "No safety check could be run for upadacitinib: the patient record could not be read"
    assert "HTTP 503" in card["detail"] and "**medications**" in card["detail"]
    assert "Missing data is not evidence that the order is safe" in card["detail"]
    assert [r["code"] for r in card["overrideReasons"]] == ["results-elsewhere", "will-order", "not-applicable"]


def test_prefetch_that_is_all_errors_without_a_fhir_server_gives_the_warning(client, templates):
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    body = {"hook": "order-sign", "hookInstance": "x-1",
            "context": {"userId": "Practitioner/1", "patientId": "p1",
                        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": UPADACITINIB}]}},
            "prefetch": {key: outcome for key in templates}}
    cards = cards_of(client.post("/cds-services/jak-order-sign", json=body))
    assert [rule_of(c) for c in cards] == ["record-unreadable"]


def test_one_warning_per_systemic_order_and_none_for_a_cream(client):
    cream = draft_order("Opzelura 1.5% cream", None, per_day=2, rid="draft-cream")
    tofacitinib = draft_order("tofacitinib 5 mg tablet", 5, per_day=2, rid="draft-tofa")
    cards = _server_down(client, [UPADACITINIB, cream, tofacitinib])
    assert sorted(c["summary"].split(":")[0] for c in cards) == [
        "No safety check could be run for tofacitinib", "No safety check could be run for upadacitinib"]


def test_a_jak_inhibitor_the_service_does_not_check_still_gets_its_notice(client):
    cards = _server_down(client, [draft_order("Litfulo 50 mg capsule", 50, rid="draft-ritle")])
    assert [(c["indicator"], rule_of(c)) for c in cards] == [("info", "jaki-not-checked")]
