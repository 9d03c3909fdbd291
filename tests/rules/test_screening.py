"""Baseline screening checklist before a first systemic JAK inhibitor (issue 3, family 5; decision 9).

Each item: a patient who triggers it and a near miss; unit variants and the ways a record can be coded
(Observation, DiagnosticReport, Procedure, Immunization); one card per order; de-duplication with the
could-not-check card.
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.knowledge.schemas.screening import RecordPart
from fixtures.builders import (
    SNOMED,
    diagnostic_report,
    draft_order,
    immunization,
    medication_request,
    obs,
    procedure,
)
from fixtures.scenarios_screening import NEGATIVE, POSITIVE, baseline
from tests.helpers.hooks import alerts, make_request, rule_of

ORDER = draft_order("upadacitinib 15 mg", 15)
SEROLOGY = ["5196-1", "16933-4", "16128-1", "56888-1"]


def checklist(cards) -> dict | None:
    found = [c for c in cards if rule_of(c) == "baseline-screening"]
    assert len(found) <= 1, "one checklist card per order"
    return found[0] if found else None


def only(cards, rule) -> dict:
    found = alerts(cards)
    assert [rule_of(c) for c in found] == [rule], [(c["summary"], rule_of(c)) for c in found]
    return found[0]


def test_complete_current_work_up_gets_no_card(hook):
    assert hook([*baseline(), ORDER]) == []


def test_missing_serology_lists_each_test_with_its_loinc_and_offers_one_order_suggestion(hook):
    card = only(hook([*baseline(drop=SEROLOGY), ORDER]), "baseline-screening")
    assert card["indicator"] == "warning" and "4 missing" in card["summary"]
    for text in ("HBsAg (LOINC 5196-1", "anti-HBc (LOINC 16933-4", "HCV antibody (LOINC 16128-1",
                 "HIV-1/2 Ag/Ab (LOINC 56888-1"):
        assert text in card["detail"]
    [suggestion] = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one"
    requests = [a["resource"] for a in suggestion["actions"]]
    assert all(a["type"] == "create" for a in suggestion["actions"])
    assert sorted(r["code"]["coding"][0]["code"] for r in requests) == sorted(SEROLOGY)
    for r in requests:
        assert (r["resourceType"], r["status"], r["intent"]) == ("ServiceRequest", "draft", "order")
        assert r["code"]["coding"][0]["system"] == "http://loinc.org"
        assert r["subject"] == {"reference": "Patient/p1"}
    assert card["overrideReasons"]


def test_only_the_first_systemic_jak_inhibitor_gets_the_checklist(hook):
    gaps = baseline(drop=SEROLOGY)
    past = medication_request("tofacitinib 5 mg", dose_mg=5, per_day=2, status="stopped", rid="old")
    assert checklist(hook([*gaps, past, ORDER])) is None
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "completed",
                 "medicationCodeableConcept": {"text": "Olumiant 4 mg"}, "subject": {"reference": "Patient/p1"},
                 "effectiveDateTime": "2024-01-01"}
    assert checklist(hook([*gaps, statement, ORDER])) is None
    methotrexate = medication_request("methotrexate 15 mg", dose_mg=15, status="active", rid="mtx")
    assert checklist(hook([*gaps, methotrexate, ORDER])) is not None


def test_the_draft_echoed_in_the_medication_prefetch_does_not_make_it_a_repeat_order(client):
    order = draft_order("upadacitinib 15 mg", 15)
    body = make_request(baseline(drop=SEROLOGY), drafts=[order])
    body["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": order}]}
    cards = client.post("/cds-services/jak-order-sign", json=body).get_json()["cards"]
    assert checklist(cards) is not None


@pytest.mark.parametrize("days, stale", [(183, True), (181, False)])
def test_tb_screen_is_current_for_6_months(hook, days, stale):
    igra = obs("71773-6", None, None, days, value_code=NEGATIVE)
    card = checklist(hook([*baseline(drop=["71773-6"], extra=[igra]), ORDER]))
    assert (card is not None) == stale
    if stale:
        assert "IGRA or tuberculin skin test (LOINC 71773-6" in card["detail"] and igra["effectiveDateTime"][:10] in card["detail"]


@pytest.mark.parametrize("days, unit, stale", [(91, "mmol/L", True), (89, "mmol/L", False), (89, "mg/dL", False),
                                               (91, "mg/dL", True)])
def test_lipids_are_current_for_90_days_in_either_unit(hook, days, unit, stale):
    value = 5.0 if unit == "mmol/L" else 190
    extra = [obs("2093-3", value, unit, days), obs("2571-8", value / 3, unit, days)]
    card = checklist(hook([*baseline(drop=["2093-3", "2571-8"], extra=extra), ORDER]))
    assert (card is not None) == stale
    if stale:
        assert "total cholesterol (LOINC 2093-3)" in card["detail"] and "older than 90 days" in card["detail"]


def test_ast_stands_in_for_alt(hook):
    assert checklist(hook([*baseline(drop=["1742-6"], extra=[obs("1920-8", 25, "U/L")]), ORDER])) is None
    card = checklist(hook([*baseline(drop=["1742-6"]), ORDER]))
    assert "ALT (or AST) (LOINC 1742-6 / 1920-8)" in card["detail"]


@pytest.mark.parametrize("sex, age, needed", [("female", 30, True), ("female", 12, True), ("female", 50, True),
                                              ("female", 51, False), ("female", 11, False), ("male", 30, False)])
def test_pregnancy_test_for_women_12_to_50(hook, sex, age, needed):
    card = checklist(hook([*baseline(drop=["2106-3"], age=age, sex=sex), ORDER]))
    assert (card is not None and "hCG" in card["detail"]) == needed


def test_serum_hcg_counts_as_a_pregnancy_test(hook):
    serum = obs("2118-8", None, None, 5, value_code=NEGATIVE)
    assert checklist(hook([*baseline(drop=["2106-3"], age=30, extra=[serum]), ORDER])) is None


def test_chest_x_ray_as_report_or_procedure_and_its_6_month_limit(hook):
    assert checklist(hook([*baseline(drop=["36643-5"]), ORDER]))["summary"].endswith("1 missing or out of date")
    as_procedure = procedure("399208008", "Plain X-ray of chest", 170)
    assert checklist(hook([*baseline(drop=["36643-5"], extra=[as_procedure]), ORDER])) is None
    single_view = diagnostic_report("36554-4", "XR Chest Single view", 100)
    assert checklist(hook([*baseline(drop=["36643-5"], extra=[single_view]), ORDER])) is None
    old = diagnostic_report("36643-5", "XR Chest 2 Views", 200)
    card = checklist(hook([*baseline(drop=["36643-5"], extra=[old]), ORDER]))
    assert old["effectiveDateTime"][:10] in card["detail"] and "older than 182 days" in card["detail"]
    cancelled = diagnostic_report("36643-5", "XR Chest 2 Views", 20, status="cancelled")
    assert checklist(hook([*baseline(drop=["36643-5"], extra=[cancelled]), ORDER])) is not None


@pytest.mark.parametrize("cvx, status, ok", [("187", "completed", True), ("121", "completed", True),
                                             ("187", "not-done", False), ("03", "completed", False)])
def test_zoster_status_from_an_immunization(hook, cvx, status, ok):
    vaccine = immunization(cvx, "vaccine", 900, status=status)
    card = checklist(hook([*baseline(drop=["19162-7"], extra=[vaccine]), ORDER]))
    assert (card is None) == ok
    if not ok:
        assert "CVX 187, 121" in card["detail"]
        # a vaccination is not ordered as a lab test
        assert not card.get("suggestions")


def test_first_order_lab_gap_is_said_once_on_the_checklist(hook):
    cards = hook([*baseline(drop=["751-8"]), ORDER])
    card = only(cards, "baseline-screening")
    assert "absolute neutrophil count (LOINC 751-8): no result in the last 90 days" in card["detail"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]] == ["751-8"]


def test_repeat_order_lab_gap_still_shows_on_the_could_not_check_card(hook):
    past = medication_request("baricitinib 2 mg", dose_mg=2, status="stopped", rid="old")
    card = only(hook([*baseline(drop=["751-8"]), past, ORDER]), "missing-data")
    assert "neutrophil" in card["detail"]


def test_a_gap_caused_by_a_listed_test_is_named_on_the_checklist(hook):
    card = only(hook([*baseline(drop=["2160-0"]), draft_order("Olumiant 4 mg", 4)]), "baseline-screening")
    assert "serum creatinine (LOINC 2160-0)" in card["detail"]
    assert "renal dose (creatinine clearance): no serum creatinine in the last 90 days" in card["detail"]


def test_an_uninterpretable_result_is_not_called_missing_and_not_reordered(hook):
    cards = hook([*baseline(drop=["751-8"], extra=[obs("751-8", 3.0, "furlongs")]), ORDER])
    card = only(cards, "missing-data")
    assert "could not be interpreted" in card["detail"] and "furlongs" in card["detail"]


def test_an_uninterpretable_result_older_than_the_limit_does_not_stop_the_test_being_ordered(hook):
    cards = hook([*baseline(drop=["751-8"], extra=[obs("751-8", 3.0, "furlongs", days_ago=200)]), ORDER])
    card = only(cards, "baseline-screening")
    assert "absolute neutrophil count (LOINC 751-8): no result in the last 90 days" in card["detail"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]] == ["751-8"]


def test_data_that_could_not_be_obtained_is_said_not_ordered(hook, templates):
    keys = [k for k in templates if k != "screening"]       # the serology query is neither sent nor fetchable
    cards = hook([*baseline(), ORDER], prefetch=keys)
    assert checklist(cards) is None
    missing = only(cards, "missing-data")
    assert "HBsAg" in missing["detail"] and "could not be obtained" in missing["detail"]


def test_order_select_gives_the_same_checklist(hook):
    resources = [*baseline(drop=SEROLOGY), ORDER]
    sign, select = checklist(hook(resources)), checklist(hook(resources, "order-select"))
    assert sign["summary"] == select["summary"] and sign["detail"] == select["detail"]


def test_unknown_sex_keeps_the_pregnancy_test_and_says_why(hook):
    resources = baseline(drop=["2106-3"], age=30)
    resources[0] = {**resources[0]}
    del resources[0]["gender"]
    card = checklist(hook([*resources, ORDER]))
    assert "hCG" in card["detail"] and "sex not recorded" in card["detail"]


def test_non_systemic_orders_get_no_checklist(hook):
    assert hook([*baseline(drop=SEROLOGY), draft_order("Opzelura 1.5% cream", None, per_day=2)]) == []
    assert hook([*baseline(drop=SEROLOGY), draft_order("methotrexate 15 mg", 15)]) == []


def test_record_part_needs_exactly_one_kind():
    with pytest.raises(ValidationError):
        RecordPart(display="x", analytes=["hb"], codes=[{"system": "loinc", "code": "1-1", "display": "x"}])
    with pytest.raises(ValidationError):
        RecordPart(display="x")
    with pytest.raises(ValidationError):
        RecordPart(display="x", analytes=["hb"], order={"system": "snomed", "code": "1", "display": "x"})


def test_checklist_codes_are_read_as_records(knowledge):
    wanted = knowledge.record_keys
    assert {"loinc|5196-1", "loinc|71773-6", "loinc|36643-5", "snomed|399208008", "cvx|187", "cvx|121",
            "snomed|271303006"} <= wanted


# -- results read, not only counted (decision 15; review findings 6, 14, 21) -------------------------------------

def test_a_tuberculin_skin_test_procedure_without_a_reading_is_not_a_negative_screen(hook):
    skin_test = procedure("28163009", "Skin test for tuberculosis", 30)
    card = only(hook([*baseline(drop=["71773-6"], extra=[skin_test]), ORDER]), "baseline-screening")
    assert "IGRA or tuberculin skin test (LOINC 71773-6, 46217-6, 71775-1, 1648-5; SNOMED CT 28163009" in card["detail"]
    assert (f"Skin test for tuberculosis on {skin_test['performedDateTime']} (Procedure) has no readable result: a "
            "test without its reading is not a negative screen") in card["detail"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]] == ["71773-6"]


@pytest.mark.parametrize("value, unit, answer", [(3, "mm", None), (None, None, NEGATIVE)])
def test_a_negative_skin_test_satisfies_tb_screening(hook, value, unit, answer):
    result = obs("1648-5", value, unit, 60, value_code=answer)
    assert checklist(hook([*baseline(drop=["71773-6"], extra=[result]), ORDER])) is None


@pytest.mark.parametrize("days, asked", [(13, False), (14, False), (15, True), (30, True)])
def test_a_negative_pregnancy_test_counts_for_14_days(hook, days, asked):
    test = obs("2106-3", None, None, days, value_code=NEGATIVE)
    card = checklist(hook([*baseline(drop=["2106-3"], age=30, extra=[test]), ORDER]))
    assert (card is not None) == asked
    if asked:
        assert f"the latest result (Negative on {test['effectiveDateTime'][:10]}) is older than 14 days" in card["detail"]
        assert [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]] == ["2106-3"]


def test_an_equivocal_quantitative_hcg_is_repeated(hook):
    card = only(hook([*baseline(age=30, extra=[obs("19080-1", 12, "[IU]/L", 3)]), ORDER]), "baseline-screening")
    assert "the latest result (12 IU/L on" in card["detail"] and "neither negative nor positive: repeat the test" \
        in card["detail"]


def test_a_negative_quantitative_hcg_satisfies_the_pregnancy_test(hook):
    assert checklist(hook([*baseline(drop=["2106-3"], age=30, extra=[obs("19080-1", 2, "[IU]/L", 5)]), ORDER])) is None


def test_an_unreadable_serology_result_is_a_gap_not_a_done_test_and_not_reordered(hook):
    unreadable = {**obs("5196-1", None, None, 5), "valueString": "see scanned report"}
    cards = hook([*baseline(extra=[unreadable]), ORDER])
    assert checklist(cards) is None
    missing = only(cards, "missing-data")
    assert "hepatitis B surface antigen (HBsAg)" in missing["detail"] and "see scanned report" in missing["detail"]


def test_an_indeterminate_hbsag_is_repeated(hook):
    equivocal = obs("5196-1", None, None, 5, value_code=(SNOMED, "82334004", "Indeterminate"))
    card = only(hook([*baseline(drop=["5196-1"], extra=[equivocal]), ORDER]), "baseline-screening")
    assert "HBsAg (LOINC 5196-1, 5195-3): the latest result (Indeterminate on" in card["detail"]


# -- pregnancy tests: every hCG code (findings 9, 14) -------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["19080-1", "83086-9", "45194-8", "20415-6", "21198-7"])
def test_every_quantitative_hcg_code_counts_for_the_pregnancy_contraindication(hook, code):
    cards = hook([*baseline(age=30, extra=[obs(code, 150, "[IU]/L", 3)]), ORDER])
    assert [rule_of(c) for c in alerts(cards)] == ["pregnancy"]


@pytest.mark.parametrize("code", ["2110-5", "2112-1", "80384-1", "80385-8", "20994-0"])
def test_every_qualitative_hcg_code_counts_for_the_pregnancy_contraindication(hook, code):
    cards = hook([*baseline(age=30, extra=[obs(code, None, None, 2, value_code=POSITIVE)]), ORDER])
    assert [rule_of(c) for c in alerts(cards)] == ["pregnancy"]


def test_a_positive_hcg_keeps_counting_for_90_days_and_needs_no_new_checklist_test(hook):
    positive = obs("2106-3", None, None, 60, value_code=POSITIVE)
    cards = hook([*baseline(drop=["2106-3"], age=30, extra=[positive]), ORDER])
    assert [rule_of(c) for c in alerts(cards)] == ["pregnancy"]
