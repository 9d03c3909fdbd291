"""Monitoring a patient on a systemic JAK inhibitor on patient-view (issue 3, family 6; decisions 10-11).

Schedules (due = info, overdue = warning), the week-12 response review, the yearly skin examination and the
on-treatment thresholds, each with a trigger and a near miss across units and reference-range sources.
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.knowledge.schemas.lab_threshold import LabThreshold
from cds_service.knowledge.schemas.monitoring import MonitoringSchedule
from fixtures.builders import ago, medication_request, obs, patient, procedure
from fixtures.scenarios_monitoring import AD, FOUR, SKIN_EXAM, jaki, on_treatment
from tests.helpers.hooks import rule_of


@pytest.fixture
def view(hook):
    def run(resources):
        return hook(resources, "patient-view")
    return run


def rules_of(card) -> list[str]:
    """Schedules due at the same visit share one card; its rule id joins theirs with '+'."""
    return rule_of(card).split("+")


def keys(cards) -> list[str]:
    return sorted(f"{c['indicator']}:{r}" for c in cards for r in rules_of(c))


def card_of(cards, rule) -> dict:
    [card] = [c for c in cards if rule in rules_of(c)]
    return card


def test_patient_up_to_date_gets_no_card(view):
    assert view(on_treatment()) == []


def test_patient_not_on_a_systemic_jaki_gets_no_card_even_with_gaps(view):
    cream = medication_request("Opzelura 1.5% cream", status="active", authored_days_ago=100)
    assert view([patient(), cream]) == []
    stopped = jaki(weeks=40)
    stopped["status"] = "stopped"
    assert view([patient(birth_date="1626-01-01"), stopped]) == []


@pytest.mark.parametrize("weeks, expected", [(3, []), (5, [f"info:{r}" for r in FOUR]),
                                             (7, [f"warning:{r}" for r in FOUR])])
def test_week_4_tests_due_from_week_4_and_overdue_from_week_6(view, weeks, expected):
    assert keys(view(on_treatment(weeks, labs_days_ago=None))) == sorted(expected)


def test_week_4_results_taken_up_to_a_week_early_count_but_the_pre_treatment_work_up_does_not(view):
    assert view(on_treatment(5, labs_days_ago=35 - 22)) == []          # day 22 of treatment
    assert keys(view(on_treatment(5, labs_days_ago=35 - 20))) == sorted(f"info:{r}" for r in FOUR)  # day 20: too early


def test_due_card_says_why_and_offers_the_orders(view):
    card = card_of(view(on_treatment(5, labs_days_ago=None)), "monitor-cbc")
    assert "week 4 check" in card["detail"] and "Treatment started:** " + ago(35) in card["detail"]
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]]
    assert codes[:5] == ["718-7", "6690-2", "777-3", "751-8", "731-0"]       # the blood count first, then the rest
    assert card["indicator"] == "info" and not card.get("overrideReasons")


def test_tests_due_at_the_same_visit_share_one_card_and_one_order_set(view):
    cards = view(on_treatment(7, labs_days_ago=None))
    [card] = cards
    assert card["indicator"] == "warning" and len(card["summary"]) < 140
    assert card["suggestions"][0]["label"] == "Order the monitoring tests listed"
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]]
    assert {"718-7", "751-8", "1742-6", "2324-2", "2160-0", "2157-6"} <= set(codes)
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("days, expected", [(80, None), (100, "info"), (181, "info"), (200, "warning")])
def test_after_week_16_every_3_months_due_and_6_months_overdue(view, days, expected):
    cards = view(on_treatment(60, labs_days_ago=days))
    assert {c["indicator"] for c in cards if set(rules_of(c)) & set(FOUR)} == ({expected} if expected else set())
    assert [c for c in cards if rule_of(c) == "missing-data"] == []     # absent results are not a second card


def test_one_missing_test_makes_its_set_due_and_the_card_names_it(view):
    card = card_of(view(on_treatment(40, labs_days_ago=30, skip=["2324-2"])), "monitor-liver")
    assert "Nothing since the start: gamma-GT." in card["detail"]
    assert "LOINC" not in card["detail"]       # at a glance: codes are in the order and the app (issue 24)


def test_lipids_at_week_12_then_yearly(view):
    assert keys(view(on_treatment(13, labs_days_ago=5, lipids_days_ago=100))) == ["info:monitor-lipids"]
    assert view(on_treatment(13, labs_days_ago=5, lipids_days_ago=5)) == []
    assert keys(view(on_treatment(11, labs_days_ago=5, lipids_days_ago=None))) == []
    assert keys(view(on_treatment(80))) == ["warning:monitor-lipids"]        # week-13 lipids 469 days ago
    assert view(on_treatment(60)) == []                                      # 329 days ago


@pytest.mark.parametrize("days, expected", [(None, "info"), (100, None), (400, "info"), (500, "warning")])
def test_yearly_skin_examination(view, days, expected):
    cards = view(on_treatment(skin_days_ago=days))
    assert [c["indicator"] for c in cards if rule_of(c) == "monitor-skin-examination"] == \
        ([expected] if expected else [])
    if days is None:
        assert "No skin examination on record" in cards[0]["summary"]


def test_skin_examination_before_the_start_counts(view):
    assert view(on_treatment(10, labs_days_ago=7, skin_days_ago=200)) == []


@pytest.mark.parametrize("weeks, shown", [(11, False), (13, True), (16, True), (17, False)])
def test_upadacitinib_atopic_dermatitis_response_review_at_week_12(view, weeks, shown):
    cards = view([*on_treatment(weeks, labs_days_ago=3, lipids_days_ago=3), AD])
    assert ("info:upadacitinib-ad-week-12-review" in keys(cards)) == shown


def test_no_response_review_for_other_drugs_or_indications(view):
    assert view(on_treatment(13, labs_days_ago=3, lipids_days_ago=3)) == []                      # RA only
    baricitinib = jaki("baricitinib 4 mg", 4, weeks=13)
    assert view([*on_treatment(13, labs_days_ago=3, lipids_days_ago=3, drug=baricitinib), AD]) == []


# -- thresholds on treatment (decision 11) -------------------------------------------------------------

def with_lab(code, value, unit, skip, **kwargs):
    return on_treatment(skip=[skip], extra=[obs(code, value, unit, 5, **kwargs)])


@pytest.mark.parametrize("value, unit, expected", [(0.8, "10*9/L", ["critical:anc-below-1-on-treatment"]),
                                                   (1.0, "10*9/L", []), (900, "/uL", ["critical:anc-below-1-on-treatment"]),
                                                   (1100, "/uL", [])])
def test_anc_below_1_interrupts(view, value, unit, expected):
    assert keys(view(with_lab("751-8", value, unit, "751-8"))) == expected


@pytest.mark.parametrize("code, value, unit, expected", [("59260-0", 4.9, "mmol/L", True), ("59260-0", 5.1, "mmol/L", False),
                                                         ("718-7", 7.9, "g/dL", True), ("718-7", 8.1, "g/dL", False)])
def test_haemoglobin_in_the_unit_reported(view, code, value, unit, expected):
    cards = view(with_lab(code, value, unit, "718-7"))
    assert keys(cards) == (["critical:hb-below-8-on-treatment"] if expected else [])


def test_alc_below_0_5_interrupts_tofacitinib_too(view):
    tofa = jaki("tofacitinib 5 mg", 5)
    cards = view(on_treatment(skip=["731-0"], drug=tofa, extra=[obs("731-0", 0.4, "10*9/L", 5)]))
    assert keys(cards) == ["critical:alc-below-0.5-on-treatment"] and "tofacitinib" in cards[0]["summary"]


@pytest.mark.parametrize("value, ref_high, expected", [(94.5, 45, True), (85.5, 45, False), (85, None, True),
                                                       (79, None, False)])
def test_alt_above_2_x_uln_from_the_reference_range_else_the_default(view, value, ref_high, expected):
    cards = view(with_lab("1742-6", value, "U/L", "1742-6", ref_high=ref_high))
    assert keys(cards) == (["warning:alt-above-2x-uln-on-treatment"] if expected else [])
    if expected:
        detail = cards[0]["detail"]
        assert ("reference range" in detail) and (("configured default" in detail) == (ref_high is None))
        assert "gastroenterolog" in detail


@pytest.mark.parametrize("value, expected", [(1.8, True), (1.6, False)])
def test_gamma_gt_in_microkatal_per_litre(view, value, expected):
    # 1.8 ukat/L = 108 U/L > 2 x 50 (default ULN); 1.6 ukat/L = 96 U/L
    cards = view(with_lab("2324-2", value, "ukat/L", "2324-2"))
    assert keys(cards) == (["warning:ggt-above-2x-uln-on-treatment"] if expected else [])


@pytest.mark.parametrize("value, expected", [(1200, True), (800, False)])
def test_ck_above_5_x_uln(view, value, expected):
    cards = view(with_lab("2157-6", value, "U/L", "2157-6", ref_high=200))
    assert keys(cards) == (["warning:ck-above-5x-uln-on-treatment"] if expected else [])


@pytest.mark.parametrize("code, value, unit, expected", [("2160-0", 1.048, "mg/dL", True), ("2160-0", 1.032, "mg/dL", False),
                                                         ("14682-9", 92.7, "umol/L", True), ("14682-9", 91.2, "umol/L", False)])
def test_creatinine_more_than_30_percent_above_the_pre_treatment_value(view, code, value, unit, expected):
    # baseline 0.8 mg/dL (70.7 umol/L) ten days before the start: +31 % / +29 %
    cards = view(with_lab(code, value, unit, "2160-0"))
    assert keys(cards) == (["warning:creatinine-rise-30-percent-on-treatment"] if expected else [])
    if expected:
        assert "0.8 mg/dL on " + ago(30 * 7 + 10) in cards[0]["detail"]


def test_no_pre_treatment_creatinine_is_said(view):
    record = [r for r in on_treatment() if not (r["resourceType"] == "Observation"
                                               and r["code"]["coding"][0]["code"] == "2160-0"
                                               and r["effectiveDateTime"][:10] == ago(30 * 7 + 10))]
    [card] = view(record)
    assert rule_of(card) == "missing-data" and "no serum creatinine result on or before the treatment start" in card["detail"]


def test_platelets_below_100_warn_and_below_50_stop_abrocitinib(view):
    abro = jaki("Cibinqo 100 mg", 100)
    assert keys(view(on_treatment(skip=["777-3"], drug=abro, extra=[obs("777-3", 40, "10*9/L", 5)]))) == \
        ["critical:platelets-below-50-on-treatment-abrocitinib"]
    assert keys(view(with_lab("777-3", 40, "10*9/L", "777-3"))) == ["warning:platelets-below-100-on-treatment"]
    assert keys(view(with_lab("777-3", 90, "10*9/L", "777-3"))) == ["warning:platelets-below-100-on-treatment"]
    assert view(with_lab("777-3", 110, "10*9/L", "777-3")) == []


@pytest.mark.parametrize("value, unit, expected", [(2.8, "10*9/L", True), (3.1, "10*9/L", False), (2800, "/uL", True)])
def test_wbc_below_3(view, value, unit, expected):
    assert keys(view(with_lab("6690-2", value, unit, "6690-2"))) == \
        (["warning:wbc-below-3-on-treatment"] if expected else [])


def test_an_uninterpretable_on_treatment_result_is_said(view):
    cards = view(on_treatment(skip=["751-8"], extra=[obs("751-8", 3.0, "furlongs", 5)]))
    assert "furlongs" in card_of(cards, "missing-data")["detail"]
    # and the set has no usable ANC, so the blood count is still owed
    detail = card_of(cards, "monitor-cbc")["detail"]
    assert "Nothing since the start: absolute neutrophil count." in detail
    assert "A newer result could not be interpreted: absolute neutrophil count." in detail


# -- start date ------------------------------------------------------------------------------------------

def test_medication_statement_start_and_earliest_active_order(view):
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                 "medicationCodeableConcept": {"text": "Xeljanz 5 mg"}, "subject": {"reference": "Patient/p1"},
                 "effectivePeriod": {"start": ago(35)}}
    assert keys(view(on_treatment(5, labs_days_ago=None, drug=statement))) == sorted(f"info:{r}" for r in FOUR)
    renewal = jaki(weeks=2, rid="renewal")          # a renewal 2 weeks ago does not restart the schedule
    assert keys(view([*on_treatment(7, labs_days_ago=None), renewal])) == sorted(f"warning:{r}" for r in FOUR)


def test_unknown_start_date_is_said(view):
    order = jaki()
    del order["authoredOn"]
    [card] = view([*on_treatment(labs_days_ago=30, drug=order)])
    assert rule_of(card) == "missing-data" and "start date is not recorded" in card["detail"]


# -- data validation -------------------------------------------------------------------------------------

def test_schedule_and_threshold_tables_are_validated():
    part = {"display": "x", "analytes": ["hb"]}
    with pytest.raises(ValidationError):
        MonitoringSchedule(id="x", display="x", drugs=["upadacitinib"], parts=[part], every_days=182,
                           overdue_days=91, action="x", sources=["S000"])
    with pytest.raises(ValidationError):
        LabThreshold(id="x", analyte="alt", phase=["on_treatment"], drugs=["upadacitinib"], above_uln_times=2,
                     indicator="warning", action="x", sources=["S000"])             # no default ULN
    with pytest.raises(ValidationError):
        LabThreshold(id="x", analyte="creatinine", phase=["start"], drugs=["upadacitinib"],
                     from_baseline={"direction": "rise", "percent": 30}, indicator="warning", action="x", sources=["S000"])


def test_skin_exam_code_is_read_from_a_procedure(view):
    exam = procedure(*SKIN_EXAM, days_ago=30)
    assert view(on_treatment(skin_days_ago=None, extra=[exam])) == []


@pytest.mark.parametrize("text, dose, expected", [("Cibinqo 100 mg", 100, ["info:monitor-lipids-abrocitinib"]),
                                                  ("upadacitinib 15 mg", 15, [])])
def test_abrocitinib_lipids_at_week_4(view, text, dose, expected):
    assert keys(view(on_treatment(5, labs_days_ago=3, drug=jaki(text, dose, weeks=5)))) == expected
