"""First slice of clinical rules through every layer: this patient -> this card."""
import pytest

from fixtures.builders import ICD10, condition, draft_order, full_baseline, obs, patient
from tests.helpers.hooks import alerts, cards_of, make_request, rule_of
from tests.helpers.records import AD, RA, record

def test_clean_patient_on_correct_order_gets_no_alert(hook):
    assert alerts(hook(record(extra=[RA, draft_order("upadacitinib 15 mg", 15)]))) == []


def test_upadacitinib_ad_age_65_suggests_15_mg_and_the_suggestion_edits_the_draft(hook):
    cards = hook(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]))
    card, prac = alerts(cards)          # 65 is also a PRAC risk group (decision 7): advice only, no second edit
    assert rule_of(card) == "upadacitinib-ad-age-65" and rule_of(prac) == "prac-risk-groups"
    assert not prac.get("suggestions")
    assert "15 mg once daily" in card["summary"]
    action = card["suggestions"][0]["actions"][0]
    assert action["type"] == "update"
    dose = action["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert (dose["value"], dose["code"]) == (15, "mg")
    assert action["resource"]["id"] == "draft-1"


def test_accepting_the_dose_suggestion_does_not_alert_again_on_sign(hook):
    cards = hook(record(age=70, extra=[AD, draft_order("Rinvoq 30 mg", 30)]), "order-select")
    corrected = alerts(cards)[0]["suggestions"][0]["actions"][0]["resource"]
    again = alerts(hook(record(age=70, extra=[AD]), drafts=[corrected]))
    assert [rule_of(c) for c in again] == ["prac-risk-groups"]      # the age-70 PRAC advice stays, no dose card


def test_age_64_is_a_near_miss(hook):
    assert alerts(hook(record(age=64, extra=[AD, draft_order("Rinvoq 30 mg", 30)]))) == []


def test_baricitinib_in_tablets_is_read_as_tablets_times_strength(hook):
    order = draft_order("Olumiant 2 mg tablet", None, dose_quantity={"value": 2, "unit": "tablet"})
    card, _prac = alerts(hook(record(age=70, extra=[RA, order])))
    assert rule_of(card) == "baricitinib-age-65"
    assert "4 mg once daily" in card["detail"]


def test_anc_below_one_is_critical_and_cites_its_source(hook):
    cards = hook(record(drop=["751-8"], extra=[obs("751-8", 0.8, "10*9/L"), RA, draft_order("upadacitinib 15 mg", 15)]))
    [card] = alerts(cards)
    assert card["indicator"] == "critical"
    assert "0.8" in card["summary"] and "upadacitinib" in card["summary"]
    assert card["source"]["url"].startswith("https://")
    assert card["overrideReasons"]


def test_anc_in_cells_per_microlitre_is_converted(hook):
    low = hook(record(drop=["751-8"], extra=[obs("751-8", 900, "/uL"), RA, draft_order("upadacitinib 15 mg", 15)]))
    ok = hook(record(drop=["751-8"], extra=[obs("751-8", 1100, "/uL"), RA, draft_order("upadacitinib 15 mg", 15)]))
    assert [rule_of(c) for c in alerts(low)] == ["anc-below-1-start"]
    assert alerts(ok) == []


def test_haemoglobin_is_compared_in_the_unit_the_lab_reported(hook):
    # 4.9 mmol/L < 5.0 -> alert; 8.1 g/dL = 5.03 mmol/L -> no alert
    low = hook(record(drop=["718-7"], extra=[obs("59260-0", 4.9, "mmol/L"), RA, draft_order("baricitinib 4 mg", 4)]))
    ok = hook(record(drop=["718-7"], extra=[obs("718-7", 8.1, "g/dL"), RA, draft_order("baricitinib 4 mg", 4)]))
    assert [rule_of(c) for c in alerts(low)] == ["hb-below-8-start"]
    assert alerts(ok) == []


def test_tofacitinib_hb_limit_is_9(hook):
    order = draft_order("tofacitinib 5 mg", 5, per_day=2)
    assert [rule_of(c) for c in alerts(hook(record(drop=["718-7"], extra=[obs("718-7", 8.5, "g/dL"), RA, order])))] \
        == ["hb-below-9-start-tofacitinib"]
    assert alerts(hook(record(drop=["718-7"], extra=[obs("718-7", 9.2, "g/dL"), RA, order]))) == []


def test_active_tuberculosis_by_icd10_is_critical(hook):
    tb = condition("A15.0", "Tuberculosis of lung", system=ICD10)
    [card] = alerts(hook(record(extra=[RA, tb, draft_order("Jyseleca 200 mg", 200)])))
    assert rule_of(card) == "active-tuberculosis" and card["indicator"] == "critical"


def test_resolved_tuberculosis_does_not_alert(hook):
    old = condition("56717001", "Tuberculosis", status="resolved", abated_days_ago=3000)
    assert alerts(hook(record(extra=[RA, old, draft_order("Jyseleca 200 mg", 200)]))) == []


def test_missing_labs_are_said_out_loud_not_treated_as_normal(hook):
    cards = hook([patient(), RA, draft_order("upadacitinib 15 mg", 15)])
    # first JAK inhibitor: the baseline checklist card says what is missing (and is not repeated on a
    # separate could-not-check card, issue 3 decision 9)
    [card] = alerts(cards)
    assert rule_of(card) == "baseline-screening"
    assert "neutrophil" in card["detail"] and "no result in the last 90 days" in card["detail"]


def test_stale_lab_is_not_used(hook):
    cards = hook(record(drop=["751-8"], extra=[obs("751-8", 3.0, "10*9/L", days_ago=200), RA,
                                               draft_order("upadacitinib 15 mg", 15)]))
    [card] = alerts(cards)
    assert "older than 90 days" in card["detail"]


def test_unknown_unit_is_reported_as_uninterpretable(hook):
    cards = hook(record(drop=["751-8"], extra=[obs("751-8", 3.0, "furlongs"), RA, draft_order("upadacitinib 15 mg", 15)]))
    [card] = alerts(cards)
    assert "could not be interpreted" in card["detail"] and "furlongs" in card["detail"]


@pytest.mark.parametrize("newest_first", [True, False])
def test_the_newest_uninterpretable_result_is_the_one_said_whatever_order_the_ehr_sends(client, newest_first):
    results = [obs("751-8", 3.0, "furlongs", days_ago=3), obs("751-8", 3.0, "bananas", days_ago=60),
               obs("751-8", 3.0, "10*9/L", days_ago=200)]
    body = make_request(record(drop=["751-8"], extra=[*results, RA, draft_order("upadacitinib 15 mg", 15)]))
    if not newest_first:                      # the prefetch asks for _sort=-date; not every EHR obeys
        body["prefetch"]["haematology"]["entry"].reverse()
    [card] = alerts(cards_of(client.post("/cds-services/jak-order-sign", json=body)))
    assert "could not be interpreted" in card["detail"] and "furlongs" in card["detail"]
    assert "bananas" not in card["detail"]


def test_a_newer_uninterpretable_result_is_said_even_when_an_older_one_was_usable(hook):
    cards = hook(record(drop=["751-8"], extra=[obs("751-8", 3.0, "furlongs", days_ago=2), obs("751-8", 3.0, "10*9/L",
                                                                                            days_ago=20),
                                               RA, draft_order("upadacitinib 15 mg", 15)]))
    [card] = alerts(cards)
    assert rule_of(card) == "missing-data"
    assert "newer result" in card["detail"] and "furlongs" in card["detail"] and "checked against" in card["detail"]


def test_a_loinc_code_with_stray_spaces_in_the_prefetch_is_still_read(client):
    body = make_request(record(drop=["751-8"], extra=[RA, draft_order("upadacitinib 15 mg", 15)]))
    neutrophils = obs("751-8", 3.0, "10*9/L")
    neutrophils["code"]["coding"][0]["code"] = " 751-8 "       # as an EHR's own prefetch might send it
    body["prefetch"]["haematology"].setdefault("entry", []).append({"resource": neutrophils})
    assert alerts(cards_of(client.post("/cds-services/jak-order-sign", json=body))) == []


def test_order_for_another_drug_gets_no_cards(hook):
    assert hook([patient(), draft_order("methotrexate 15 mg", 15)]) == []


def test_topical_ruxolitinib_gets_no_systemic_cards(hook):
    assert hook([patient(), draft_order("Opzelura 1.5% cream", None, per_day=2)]) == []


def test_implausible_birth_date_is_said_not_used(hook):
    born_1626 = patient(age=400)
    cards = hook([born_1626, *full_baseline(), AD, draft_order("Rinvoq 30 mg", 30)])
    [card] = alerts(cards)
    assert rule_of(card) == "missing-data" and "implausible age" in card["detail"]


def test_a_draft_order_echoed_in_the_medication_prefetch_is_not_a_current_medication(client):
    from tests.helpers.hooks import make_request
    order = draft_order("upadacitinib 15 mg", 15)
    body = make_request(record(extra=[RA]), drafts=[order])
    body["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": order}]}
    cards = client.post("/cds-services/jak-order-sign", json=body).get_json()["cards"]
    assert alerts(cards) == []
