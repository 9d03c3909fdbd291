"""Decision 17: another medicine ordered for a patient who already takes a systemic JAK inhibitor.

What a prescriber sees (one card naming both drugs, with the JAK inhibitor's own advice and severity) and what
an EHR integrator cares about: an unrelated order costs no FHIR read at all, and an order that could interact
reads the medication list only, unless the patient takes a JAK inhibitor.
"""
import re

import responses

from fixtures.builders import ATC, CVX, draft_order
from fixtures.scenarios_co_prescription import (
    BARICITINIB_4,
    CLARITHROMYCIN,
    RA,
    TOFACITINIB_5_BID,
    UPADACITINIB_15,
    ordered,
    record,
)
from tests.helpers.hooks import FHIR_BASE, alerts, call_hook, cards_of, rule_of, serve_fhir

AMOXICILLIN = ordered("amoxicillin 500 mg capsule", 500, 3)
ADALIMUMAB = ordered("Humira 40 mg pen", 40, None, [{"system": ATC, "code": "L04AB04"}])
MMR = ordered("MMR vaccine", per_day=None, codings=[{"system": CVX, "code": "03"}])


def _without_prefetch(client, resources, calls):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, [r for r in resources if r.get("status") != "draft"], calls=calls)
        return cards_of(call_hook(client, resources, prefetch=False, fhir_server=FHIR_BASE))


def _types(calls) -> list[str]:
    return sorted(call.url[len(FHIR_BASE) + 1:].split("?")[0] for call in calls)


def test_clarithromycin_for_a_patient_on_tofacitinib_names_both_drugs_and_the_reduced_dose(hook):
    cards = hook([*record(extra=[RA, TOFACITINIB_5_BID]), CLARITHROMYCIN])
    assert [(c["indicator"], rule_of(c)) for c in cards] == [("warning", "co-prescription")]
    card = cards[0]
    assert card["summary"].startswith("Clarithromycin 500 mg tablet for a patient on tofacitinib")
    assert "reduce tofacitinib to 5 mg once daily" in card["summary"]
    assert "tofacitinib 5 mg tablet — 5 mg twice daily (active MedicationRequest" in card["detail"]
    assert "suggestions" not in card          # the advice is about the active order, which a card cannot edit


def test_a_live_vaccine_or_a_biologic_is_critical_and_offers_to_remove_the_new_order(hook):
    for new in (MMR, ADALIMUMAB):
        cards = hook([*record(extra=[RA, UPADACITINIB_15]), new])
        assert [(c["indicator"], rule_of(c)) for c in cards] == [("critical", "co-prescription")]
        action = cards[0]["suggestions"][0]["actions"][0]
        assert action["type"] == "delete" and action["resourceId"] == ["MedicationRequest/draft-other"]


def test_a_medicine_the_jak_inhibitor_does_not_interact_with_gets_no_card(hook):
    assert hook([*record(extra=[RA, BARICITINIB_4]), CLARITHROMYCIN]) == []
    assert hook([*record(extra=[RA, TOFACITINIB_5_BID]), AMOXICILLIN]) == []


def test_an_unrelated_order_reads_nothing_from_the_record(client):
    calls: list = []
    cards = _without_prefetch(client, [*record(extra=[RA, TOFACITINIB_5_BID]), AMOXICILLIN], calls)
    assert cards == [] and calls == []


def test_an_interacting_order_for_a_patient_on_no_jak_inhibitor_reads_the_medication_list_only(client):
    calls: list = []
    cards = _without_prefetch(client, [*record(extra=[RA]), CLARITHROMYCIN], calls)
    assert cards == []
    assert _types(calls) == ["MedicationRequest", "MedicationStatement"]


def test_without_prefetch_the_same_card_as_with_prefetch(client, hook):
    resources = [*record(extra=[RA, TOFACITINIB_5_BID]), CLARITHROMYCIN]
    calls: list = []
    fetched = _without_prefetch(client, resources, calls)
    sent = hook(resources)
    assert [(c["indicator"], c["summary"]) for c in fetched] == [(c["indicator"], c["summary"]) for c in sent]
    assert len(calls) > 2                 # the rest of the record is read once the JAK inhibitor is known


def test_a_medication_list_that_cannot_be_read_gives_no_card_and_no_error(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), status=503)
        response = call_hook(client, [*record(extra=[RA, TOFACITINIB_5_BID]), CLARITHROMYCIN], prefetch=False,
                             fhir_server=FHIR_BASE)
    assert cards_of(response) == []


def test_ordered_together_with_a_jak_inhibitor_the_dose_card_of_that_order_says_it_once(hook):
    tofacitinib = draft_order("tofacitinib 5 mg tablet", 5, per_day=2, rid="draft-jak")
    cards = hook([*record(extra=[RA]), tofacitinib, CLARITHROMYCIN])
    assert "co-prescription" not in [rule_of(c) for c in cards]
    assert [rule_of(c) for c in alerts(cards)].count("tofacitinib-strong-cyp3a4") == 1
