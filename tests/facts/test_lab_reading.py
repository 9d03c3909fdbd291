"""Lab reading (issue 20): the patient's results under the codes and units laboratories send -> the card and the
number a clinician checks.

LOINC coverage (decision 16; review "LOINC coverage", finding 20), values read in a unit that is not quite their
own and said so (finding 28), the laboratory-reported eGFR (decision 16), the tofacitinib haemoglobin fall
(finding 17) and the tofacitinib week-8 lipids (finding 16), each with a trigger and a near miss.
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.facts import build_facts, creatinine_clearance, egfr
from cds_service.fhir.values import query_type
from cds_service.knowledge.schemas.lab_threshold import LabThreshold, check
from cds_service.record.index import PatientRecord
from cds_service.record.templates import what_a_query_reads
from fixtures.builders import TODAY, ago, draft_order, medication_request, obs, patient
from fixtures.scenarios_labs import (
    AD,
    RA,
    hb_course,
    molar_lipids,
    order_record,
    swap_code,
    tofacitinib,
    without_baseline_hb,
)
from fixtures.scenarios_monitoring import FOUR, jaki, on_treatment
from tests.helpers.hooks import alerts, rule_of

HB_FALL = "hb-fall-2-from-baseline-on-treatment-tofacitinib"


def facts_for(knowledge, *resources):
    return build_facts(knowledge, PatientRecord({"all": list(resources)}), "p1", TODAY)


@pytest.fixture
def view(hook):
    def run(resources):
        return hook(resources, "patient-view")
    return run


def keys(cards) -> list[str]:
    return sorted(f"{c['indicator']}:{r}" for c in cards for r in rule_of(c).split("+"))


def card_of(cards, rule) -> dict:
    [card] = [c for c in cards if rule in rule_of(c).split("+")]
    return card


# -- LOINC coverage: the codes laboratories send are read (decision 16) ----------------------------------------

@pytest.mark.parametrize("code, value, unit, analyte, canonical", [
    ("33256-9", 2.8, "10*3/uL", "wbc", 2.8),          # WBC corrected for nucleated erythrocytes, automated
    ("12227-5", 2.8, "10*9/L", "wbc", 2.8),
    ("804-5", 2800, "/uL", "wbc", 2.8),               # manual count
    ("778-1", 90, "10*3/uL", "platelets", 90),        # manual count
    ("97995-5", 90, "10*9/L", "platelets", 90),
    ("59826-8", 88.42, "umol/L", "creatinine", 1.0),  # blood, molar
    ("77140-2", 176.84, "umol/L", "creatinine", 2.0),
    ("101475-2", 88.42, "umol/L", "creatinine", 1.0),
    ("21232-4", 1.2, "mg/dL", "creatinine", 1.2),     # arterial blood
    ("35203-9", 1.2, "mg/dL", "creatinine", 1.2),     # mass or moles: the unit says which
    ("35203-9", 106.1, "umol/L", "creatinine", 1.2),
    ("88294-4", 45, "mL/min/{1.73_m2}", "egfr", 45), ("88293-6", 45, "mL/min/{1.73_m2}", "egfr", 45),
    ("69405-9", 45, "mL/min/{1.73_m2}", "egfr", 45), ("70969-1", 45, "mL/min/{1.73_m2}", "egfr", 45),
    ("77147-7", 45, "mL/min/{1.73_m2}", "egfr", 45), ("94677-2", 45, "mL/min/{1.73_m2}", "egfr", 45),
    ("98980-6", 45, "mL/min/{1.73_m2}", "egfr", 45),
    ("76625-3", 94, "U/L", "alt", 94), ("1744-2", 94, "U/L", "alt", 94), ("77144-4", 1.5, "ukat/L", "alt", 90),
    ("30239-8", 50, "U/L", "ast", 50), ("88112-8", 50, "U/L", "ast", 50),
    ("14647-2", 5.2, "mmol/L", "total_cholesterol", 5.2), ("14927-8", 1.7, "mmol/L", "triglycerides", 1.7),
    ("22748-8", 3.1, "mmol/L", "ldl", 3.1), ("39469-2", 3.1, "mmol/L", "ldl", 3.1),
    ("69419-0", 3.1, "mmol/L", "ldl", 3.1), ("96258-9", 3.1, "mmol/L", "ldl", 3.1),
    ("14646-4", 1.3, "mmol/L", "hdl", 1.3),
])
def test_a_result_under_a_code_laboratories_send_is_read(knowledge, code, value, unit, analyte, canonical):
    found = facts_for(knowledge, patient(), obs(code, value, unit)).latest(analyte)
    assert found is not None and found.value == pytest.approx(canonical, rel=1e-3) and found.code == code


@pytest.mark.parametrize("code, unit, analyte", [
    ("48134-1", "U/L", "alt"),            # macromolecular ALT: another analyte
    ("44785-4", "U/L", "alt"),            # ALT, maximum value during a study
    ("44784-7", "mg/dL", "creatinine"),   # creatinine, maximum value during a study
    ("11041-1", "mg/dL", "creatinine"),   # post-dialysis creatinine would overstate renal function
    ("2161-8", "mg/dL", "creatinine"),    # urine creatinine
    ("49498-9", "10*3/uL", "wbc"),        # a smear estimate, not a count
    ("13056-7", "10*3/uL", "platelets"),  # platelets in plasma
])
def test_codes_of_another_specimen_or_kind_are_not_read_as_the_analyte(knowledge, code, unit, analyte):
    assert facts_for(knowledge, patient(), obs(code, 1.0, unit)).latest(analyte) is None


def test_a_result_is_recognised_by_code_not_by_its_name(knowledge):
    """A local code with the display "Creatinine" could be urine: it is not read as serum creatinine."""
    local = obs("2160-0", 1.9, "mg/dL")
    local["code"] = {"coding": [{"system": "urn:oid:1.2.3.4", "code": "CREA", "display": "Creatinine"}],
                     "text": "Creatinine"}
    assert facts_for(knowledge, patient(), local).latest("creatinine") is None


def test_the_prefetch_asks_for_every_added_code(templates):
    asked = {item.split("|", 1)[1] for t in templates.values() if query_type(t) == "Observation"
             for item in what_a_query_reads(t)}
    assert {"33256-9", "804-5", "778-1", "59826-8", "35203-9", "21232-4", "88293-6", "88294-4", "69405-9",
            "70969-1", "77147-7", "94677-2", "98980-6", "76625-3", "1744-2", "77144-4", "30239-8", "88112-8",
            "14647-2", "14927-8", "22748-8", "39469-2", "14646-4"} <= asked
    assert not {"48134-1", "44784-7"} & asked


# -- monitoring counts them (item 6) ----------------------------------------------------------------------------

def test_week_4_blood_count_with_manual_platelets_778_1_is_done(view):
    assert view(swap_code(on_treatment(5, labs_days_ago=3), "777-3", "778-1")) == []
    # near miss: the same count under a platelet code of another specimen leaves the blood count owed
    cards = view(swap_code(on_treatment(5, labs_days_ago=3), "777-3", "13056-7"))
    assert "Nothing since the start: platelet count." in card_of(cards, "monitor-cbc")["detail"]


def test_creatinine_38483_4_and_wbc_33256_9_count_as_done(view):
    assert view(swap_code(swap_code(on_treatment(5, labs_days_ago=3), "6690-2", "33256-9"), "2160-0", "38483-4")) == []


def test_molar_lipids_count_as_done_and_stop_the_overdue_card(view):
    molar = swap_code(swap_code(on_treatment(30), "2093-3", "14647-2", since_days=210), "2571-8", "14927-8",
                      since_days=210)
    assert view(molar) == []
    without = [r for r in molar if not (r["resourceType"] == "Observation"
                                        and r["code"]["coding"][0]["code"] in ("14647-2", "14927-8"))]
    assert keys(view(without)) == ["warning:monitor-lipids"]


def test_alt_in_blood_76625_3_is_held_against_the_uln(view):
    cards = view(on_treatment(skip=["1742-6"], extra=[obs("76625-3", 112, "U/L", 5, ref_high=45)]))
    assert keys(cards) == ["warning:alt-above-2x-uln-on-treatment"] and "2.5 x ULN" in cards[0]["summary"]


# -- units read with a note (finding 28) and the laboratory-reported eGFR (item 5) ------------------------------

def test_egfr_sent_in_ml_min_is_read_and_the_card_says_so(hook):
    cards = hook([*order_record(sex="female", age=45, extra=[obs("33914-3", 45, "mL/min", 5)]), AD,
                  draft_order("Cibinqo 200 mg", 200)])
    [card] = alerts(cards)
    assert rule_of(card) == "abrocitinib-egfr-30-60"
    assert (f"eGFR 45 mL/min/1.73 m², laboratory-reported eGFR 45 mL/min on {ago(5)} (LOINC 33914-3, reported in "
            "mL/min, not per 1.73 m²: read as mL/min/1.73 m² without conversion)") in card["detail"]


def test_egfr_per_1_73_m2_carries_no_note(knowledge):
    value = facts_for(knowledge, patient(), obs("33914-3", 45, "mL/min/{1.73_m2}")).latest("egfr")
    assert value.note is None


def test_race_coded_egfr_is_named_as_such(knowledge):
    facts = facts_for(knowledge, patient(age=45, sex="male"), obs("88293-6", 45, "mL/min/{1.73_m2}"))
    assert "race coefficient" in egfr(facts, knowledge).method


def test_crcl_reported_per_1_73_m2_is_read_as_ml_min_and_the_card_says_so(hook):
    cards = hook([*order_record(extra=[obs("2164-2", 45, "mL/min/{1.73_m2}", 3)]), RA, draft_order("Olumiant 4 mg", 4)])
    [card] = alerts(cards)
    assert rule_of(card) == "baricitinib-crcl-30-60"
    assert ("measured creatinine clearance 45 mL/min/1.73 m² on " + ago(3) + " (LOINC 2164-2, reported per 1.73 m² "
            "body surface area: read as mL/min without correcting for the patient's body size)") in card["detail"]


def test_a_crcl_rule_with_only_an_egfr_says_crcl_could_not_be_computed_and_shows_the_egfr(hook):
    on_it = medication_request("Olumiant 4 mg", status="active", rid="old-bari", authored_days_ago=100)
    record = order_record(drop=["2160-0"], extra=[obs("33914-3", 45, "mL/min/{1.73_m2}", 5), on_it])
    cards = hook([*record, RA, draft_order("Olumiant 4 mg", 4)])
    [card] = alerts(cards)
    assert rule_of(card) == "missing-data"
    assert ("renal dose (creatinine clearance)**: no serum creatinine in the last 90 days (an eGFR is on record, "
            f"45 mL/min/1.73 m² on {ago(5)} (LOINC 33914-3), but an eGFR is not a creatinine clearance") in card["detail"]


def test_first_order_with_only_an_egfr_lists_it_with_the_missing_creatinine(hook):
    cards = hook([*order_record(drop=["2160-0"], extra=[obs("33914-3", 45, "mL/min/{1.73_m2}", 5)]), RA,
                  draft_order("Olumiant 4 mg", 4)])
    [card] = alerts(cards)
    assert rule_of(card) == "baseline-screening" and "an eGFR is on record, 45 mL/min/1.73 m²" in card["detail"]


def test_reported_egfr_is_used_and_named_when_there_is_no_creatinine(knowledge):
    facts = facts_for(knowledge, patient(age=45), obs("98979-8", 28, "mL/min/{1.73_m2}", 5))
    found = egfr(facts, knowledge)
    assert found.value == 28 and "laboratory-reported eGFR 28 mL/min/1.73 m² on " + ago(5) in found.method
    assert "no serum creatinine in the last 90 days" in found.method


def test_reported_egfr_newer_than_the_creatinine_is_used(knowledge):
    facts = facts_for(knowledge, patient(age=45), obs("2160-0", 0.8, "mg/dL", 30), obs("33914-3", 28, "mL/min/{1.73_m2}", 5))
    found = egfr(facts, knowledge)
    assert found.value == 28 and "newer than the latest serum creatinine (0.8 mg/dL on " + ago(30) in found.method


@pytest.mark.parametrize("egfr_days", [20, 10])      # older than, and the same day as, the creatinine
def test_reported_egfr_not_newer_than_the_creatinine_is_not_preferred(knowledge, egfr_days):
    facts = facts_for(knowledge, patient(age=45, sex="female"), obs("2160-0", 0.8, "mg/dL", 10),
                      obs("33914-3", 28, "mL/min/{1.73_m2}", egfr_days))
    found = egfr(facts, knowledge)
    assert found.value == pytest.approx(93, abs=1) and found.method.startswith("CKD-EPI 2021 (creatinine 0.8 mg/dL")
    assert "laboratory-reported eGFR 28 mL/min/1.73 m²" in found.method and "is not used" in found.method


def test_older_reported_egfr_does_not_stand_in_when_ckd_epi_cannot_be_computed(knowledge):
    facts = facts_for(knowledge, {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"},
                      obs("2160-0", 1.9, "mg/dL", 10), obs("33914-3", 75, "mL/min/{1.73_m2}", 40))
    found = egfr(facts, knowledge)
    assert found.value is None
    assert "could not be computed from the serum creatinine 1.9 mg/dL on " + ago(10) in found.missing
    assert "75 mL/min/1.73 m² on " + ago(40) in found.missing and "older than that creatinine" in found.missing


def test_same_day_reported_egfr_stands_in_when_ckd_epi_cannot_be_computed(knowledge):
    facts = facts_for(knowledge, {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"},
                      obs("2160-0", 1.9, "mg/dL", 10), obs("33914-3", 35, "mL/min/{1.73_m2}", 10))
    found = egfr(facts, knowledge)
    assert found.value == 35 and "could not be computed from the creatinine of that day" in found.method


def test_an_egfr_is_never_used_as_a_creatinine_clearance(knowledge):
    facts = facts_for(knowledge, patient(age=60, sex="male"), obs("29463-7", 80, "kg"),
                      obs("33914-3", 25, "mL/min/{1.73_m2}", 5))
    crcl = creatinine_clearance(facts, knowledge)
    assert crcl.value is None and "an eGFR is on record, 25 mL/min/1.73 m²" in crcl.missing


# -- tofacitinib: Hb fall of more than 2 g/dL from the pre-treatment value (finding 17) --------------------------

@pytest.mark.parametrize("baseline, now, unit, code, fires", [
    (12.9, 10.6, "g/dL", "718-7", True),        # 2.3 g/dL
    (12.9, 10.8, "g/dL", "718-7", True),        # 2.1 g/dL
    (12.9, 10.9, "g/dL", "718-7", False),       # exactly 2 g/dL is not more than 2
    (12.9, 11.4, "g/dL", "718-7", False),       # 1.5 g/dL
    (129, 106, "g/L", "718-7", True),           # g/L: compared in g/dL (23 g/L = 2.3 g/dL)
    (8.0, 6.75, "mmol/L", "59260-0", True),     # 1.25 mmol/L > 1.24
    (8.0, 6.80, "mmol/L", "59260-0", False),    # 1.20 mmol/L
])
def test_tofacitinib_hb_fall_of_more_than_2_g_dl_interrupts(view, baseline, now, unit, code, fires):
    cards = view(hb_course(baseline, now, unit, code))
    assert keys(cards) == ([f"critical:{HB_FALL}"] if fires else [])


def test_the_hb_fall_card_shows_both_values_and_the_fall(view):
    [card] = view(hb_course(12.9, 10.6))
    assert card["summary"] == "Haemoglobin 10.6 g/dL, 2.3 g/dL below the pre-treatment value: interrupt tofacitinib"
    assert f"10.6 g/dL on {ago(5)}" in card["detail"] and f"12.9 g/dL on {ago(30 * 7 + 5)}" in card["detail"]
    assert "a fall of more than 2 g/dL" in card["detail"] and "repeat testing" in card["detail"]


def test_hb_fall_across_units_is_compared_in_g_dl(view):
    # baseline 12.9 g/dL, now 6.5 mmol/L = 10.47 g/dL: a fall of 2.43 g/dL
    record = on_treatment(skip=["718-7"], drug=tofacitinib(), extra=[obs("718-7", 12.9, "g/dL", 30 * 7 + 5),
                                                                      obs("59260-0", 6.5, "mmol/L", 5)])
    [card] = view(record)
    assert rule_of(card) == HB_FALL and "2.43 g/dL below the pre-treatment value" in card["summary"]


def test_hb_below_8_and_a_fall_give_one_interrupt_card(view):
    cards = view(hb_course(12.9, 7.5))
    assert len(alerts(cards)) == 1 and cards[0]["indicator"] == "critical"


def test_the_fall_rule_is_tofacitinib_only(view):
    assert view(hb_course(12.9, 10.6, drug=jaki())) == []


def test_no_pre_treatment_hb_is_a_stated_gap(view):
    [card] = view(without_baseline_hb(hb_course(None, 10.6)))
    assert rule_of(card) == "missing-data"
    assert "haemoglobin fall against the pre-treatment baseline" in card["detail"]
    assert "no haemoglobin result on or before the treatment start" in card["detail"]


def test_an_uninterpretable_pre_treatment_hb_is_said_not_skipped(view):
    record = on_treatment(skip=["718-7"], drug=tofacitinib(),
                          extra=[obs("718-7", 12.9, "furlongs", 30 * 7 + 5), obs("718-7", 10.6, "g/dL", 5)])
    cards = view(record)
    gap = card_of(cards, "missing-data")
    assert f"the pre-treatment result of {ago(30 * 7 + 5)} could not be interpreted" in gap["detail"]
    assert "compared with the older 13.5 g/dL on " + ago(30 * 7 + 10) in gap["detail"]   # the work-up's Hb


def test_no_recent_on_treatment_hb_leaves_the_fall_to_the_schedule(view):
    """The last blood count 100 days ago: the schedule says it is due; the fall rule adds no gap of its own."""
    assert keys(view(on_treatment(40, labs_days_ago=100, drug=tofacitinib(40)))) == sorted(f"info:{r}" for r in FOUR)


def _fall(**change):
    return LabThreshold(id="x", analyte="hb", phase=["on_treatment"], drugs=["tofacitinib"],
                        from_baseline={"direction": "fall", **change}, indicator="critical", action="x",
                        sources=["EU-tofacitinib"])


def test_a_baseline_change_is_a_percent_or_an_amount_per_unit(knowledge):
    for bad in ({}, {"percent": 10, "by": {"g/dL": 2.0}}, {"by": {"g/dL": 0.0}}, {"by": {}}):
        with pytest.raises(ValidationError):
            _fall(**bad)
    assert check(knowledge, [_fall(by={"g/dL": 2.0, "mmol/L": 1.24})]) == []
    assert any("canonical unit" in p for p in check(knowledge, [_fall(by={"mmol/L": 1.24})]))
    assert any("not a known unit" in p for p in check(knowledge, [_fall(by={"g/dL": 2.0, "mg/dL": 2000})]))


# -- tofacitinib lipids about 8 weeks after the start (finding 16) ----------------------------------------------

@pytest.mark.parametrize("weeks, expected", [(7, []), (9, ["info:monitor-lipids-tofacitinib"]),
                                             (13, ["warning:monitor-lipids-tofacitinib"])])
def test_tofacitinib_lipids_due_at_week_8_and_overdue_from_week_12(view, weeks, expected):
    record = on_treatment(weeks, labs_days_ago=5, lipids_days_ago=weeks * 7 + 20, drug=tofacitinib(weeks))
    assert keys(view(record)) == expected


def test_tofacitinib_lipids_done_at_week_8_in_mmol_l_count(view):
    assert view(on_treatment(9, labs_days_ago=7, drug=tofacitinib(9), extra=molar_lipids(7))) == []


def test_other_jak_inhibitors_keep_lipids_at_week_12(view):
    assert view(on_treatment(9, labs_days_ago=7)) == []
    assert keys(view(on_treatment(13, labs_days_ago=5, lipids_days_ago=100))) == ["info:monitor-lipids"]


def test_the_tofacitinib_lipid_card_cites_the_eu_text(view):
    [card] = view(on_treatment(9, labs_days_ago=7, drug=tofacitinib(9)))
    assert "about 8 weeks after the start" in card["detail"] and "week 8 check" in card["detail"]
    # the sources are listed once, in the detail (the card's link opens the monitoring app, issue 24)
    assert "xeljanz" in card["detail"].split("**Sources**")[1].lower()
