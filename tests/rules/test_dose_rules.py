"""Dose rules (issue 3, family 1): this patient + this order -> this dose card (or none).

Every rule has a patient who triggers it and a near miss who must not; unit variants (creatinine in µmol/L,
weight in [lb_av]) and code systems (ATC, SNOMED CT, ICD-10, text) are exercised; accepting a suggestion
must make the same order pass on sign.
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.knowledge.schemas.dose import DoseRule, DoseWhen, check
from fixtures.builders import (
    ATC,
    ICD10,
    SNOMED,
    condition,
    draft_order,
    obs,
)
from tests.helpers.dose import (
    AD,
    RA,
    UC,
    accept_and_resign,
    active_med,
    child_pugh,
    dose_alerts,
    dose_cards,
    egfr_obs,
    only_alert,
    record,
    renal,
    said_out_loud,
    suggested_dose,
)
from tests.helpers.hooks import rule_of

# -- indication maxima --------------------------------------------------------------

def test_tofacitinib_10_mg_twice_daily_in_ra_is_above_the_maximum(hook):
    resources = record(extra=[RA, draft_order("tofacitinib 10 mg tablet", 10, per_day=2)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "tofacitinib-max-ra-psa-as"
    assert suggested_dose(card) == (5, 2)
    assert "rheumatoid arthritis" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_tofacitinib_10_mg_twice_daily_in_uc_is_allowed(hook):
    assert dose_alerts(hook(record(extra=[UC, draft_order("tofacitinib 10 mg tablet", 10, per_day=2)]))) == []


def test_tofacitinib_xr_11_mg_once_daily_passes_but_twice_daily_is_corrected(hook):
    assert dose_alerts(hook(record(extra=[RA, draft_order("Xeljanz 11 mg prolonged-release", 11)]))) == []
    resources = record(extra=[RA, draft_order("Xeljanz 11 mg prolonged-release", 11, per_day=2)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "tofacitinib-max-xr" and suggested_dose(card) == (11, 1)
    assert accept_and_resign(hook, resources, card) == []


def test_upadacitinib_30_mg_in_ra_is_reduced_to_15(hook):
    card = only_alert(hook(record(extra=[RA, draft_order("Rinvoq 30 mg", 30)])))
    assert rule_of(card) == "upadacitinib-max-ra-psa-as" and suggested_dose(card) == (15, 1)


def test_unknown_indication_uses_the_overall_maximum_and_says_so(hook):
    assert dose_alerts(hook(record(extra=[draft_order("Rinvoq 30 mg", 30)]))) == []
    card = only_alert(hook(record(extra=[draft_order("Rinvoq 45 mg", 45, per_day=2)])))
    assert rule_of(card) == "upadacitinib-max-overall"
    assert "indication is not recorded" in card["detail"]


@pytest.mark.parametrize("drug, dose, rule", [("Olumiant 4 mg", 8, "baricitinib-max"),
                                              ("Jyseleca 200 mg", 400, "filgotinib-max"),
                                              ("Cibinqo 200 mg", 300, "abrocitinib-max")])
def test_overall_maxima(hook, drug, dose, rule):
    card = only_alert(hook(record(extra=[draft_order(drug, dose)])))
    assert rule_of(card) == rule


def test_upadacitinib_45_mg_in_uc_without_phase_is_information_not_a_warning(hook):
    cards = hook(record(extra=[UC, draft_order("Rinvoq 45 mg", 45)]))
    assert dose_alerts(cards) == []
    [info] = [c for c in cards if rule_of(c) == "upadacitinib-max-ibd-maintenance"]
    assert info["indicator"] == "info" and "induction or maintenance" in info["detail"]


def test_upadacitinib_45_mg_marked_maintenance_is_reduced_and_induction_passes(hook):
    order = draft_order("Rinvoq 45 mg", 45)
    order["dosageInstruction"][0]["text"] = "Rinvoq 45 mg once daily, maintenance"
    resources = record(extra=[UC, order])
    card = only_alert(hook(resources))
    assert rule_of(card) == "upadacitinib-max-ibd-maintenance" and suggested_dose(card) == (30, 1)
    assert accept_and_resign(hook, resources, card) == []
    induction = draft_order("Rinvoq 45 mg", 45)
    induction["note"] = [{"text": "Induction, 8 weeks"}]
    assert dose_cards(hook(record(extra=[UC, induction]))) == []


# -- age and weight -------------------------------------------------------------------

def test_filgotinib_ra_age_65_start_is_100_mg_near_miss_64_and_continuation(hook):
    card = only_alert(hook(record(age=65, extra=[RA, draft_order("Jyseleca 200 mg", 200)])))
    assert rule_of(card) == "filgotinib-ra-age-65-start" and suggested_dose(card) == (100, 1)
    assert "75" in card["detail"]            # the older S001 boundary is quoted
    assert dose_alerts(hook(record(age=64, extra=[RA, draft_order("Jyseleca 200 mg", 200)]))) == []
    on_it = active_med("Jyseleca 200 mg tablet", {"system": ATC, "code": "L04AF04"}, rid="old-filgotinib")
    assert dose_alerts(hook(record(age=70, extra=[RA, on_it, draft_order("Jyseleca 200 mg", 200)]))) == []


def test_abrocitinib_age_65_is_100_mg_and_64_is_a_near_miss(hook):
    card = only_alert(hook(record(age=65, extra=[AD, draft_order("Cibinqo 200 mg", 200)])))
    assert rule_of(card) == "abrocitinib-age-65" and suggested_dose(card) == (100, 1)
    assert dose_alerts(hook(record(age=64, extra=[AD, draft_order("Cibinqo 200 mg", 200)]))) == []


def test_tofacitinib_age_65_is_information_only(hook):
    cards = hook(record(age=70, extra=[RA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))
    assert dose_alerts(cards) == []
    [info] = dose_cards(cards)
    assert rule_of(info) == "tofacitinib-age-65-info" and info["indicator"] == "info"
    assert "suggestions" not in info or not info["suggestions"]
    assert dose_cards(hook(record(age=64, extra=[RA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []


def test_upadacitinib_adolescent_ad_is_15_mg_and_adult_is_not_limited(hook):
    card = only_alert(hook(record(age=15, weight=45, extra=[AD, draft_order("Rinvoq 30 mg", 30)])))
    assert rule_of(card) == "upadacitinib-ad-adolescent" and suggested_dose(card) == (15, 1)
    assert dose_alerts(hook(record(age=18, extra=[AD, draft_order("Rinvoq 30 mg", 30)]))) == []


def test_upadacitinib_adolescent_under_30_kg_is_not_recommended_and_weight_in_lb_counts(hook):
    card = only_alert(hook(record(age=14, weight=28, extra=[AD, draft_order("Rinvoq 15 mg", 15)])))
    assert rule_of(card) == "upadacitinib-ad-adolescent-under-30kg"
    assert card["suggestions"][0]["actions"][0] == {
        "type": "delete", "description": "Remove the draft upadacitinib order",
        "resourceId": ["MedicationRequest/draft-1"]}
    # 70 lb = 31.8 kg: at or above 30 kg, 15 mg is the right dose
    heavy = record(age=14, drop=["29463-7"], extra=[obs("29463-7", 70, "[lb_av]"), AD, draft_order("Rinvoq 15 mg", 15)])
    assert dose_alerts(hook(heavy)) == []


def test_adolescent_without_weight_is_said_out_loud(hook):
    cards = hook(record(age=14, drop=["29463-7"], extra=[AD, draft_order("Rinvoq 15 mg", 15)]))
    assert dose_alerts(cards) == []
    assert "body weight for the weight-based dose" in said_out_loud(cards)


def test_abrocitinib_adolescent_25_to_59_kg_starts_at_100_mg(hook):
    card = only_alert(hook(record(age=14, weight=50, extra=[AD, draft_order("Cibinqo 200 mg", 200)])))
    assert rule_of(card) == "abrocitinib-adolescent-start" and suggested_dose(card) == (100, 1)
    assert dose_alerts(hook(record(age=14, weight=60, extra=[AD, draft_order("Cibinqo 200 mg", 200)]))) == []


@pytest.mark.parametrize("drug, dose, age, rule", [("Cibinqo 100 mg", 100, 11, "abrocitinib-under-12"),
                                                   ("Jyseleca 100 mg", 100, 17, "filgotinib-under-18"),
                                                   ("Rinvoq 15 mg", 15, 10, "upadacitinib-under-12")])
def test_under_the_approved_minimum_age(hook, drug, dose, age, rule):
    card = only_alert(hook(record(age=age, extra=[draft_order(drug, dose)])))
    assert rule_of(card) == rule and "not recommended" in card["summary"]
    assert card["suggestions"][0]["actions"][0]["type"] == "delete"


def test_upadacitinib_adolescent_with_ra_is_not_recommended_but_unknown_indication_is_information(hook):
    card = only_alert(hook(record(age=16, extra=[RA, draft_order("Rinvoq 15 mg", 15)])))
    assert rule_of(card) == "upadacitinib-adolescent-non-ad"
    cards = hook(record(age=16, extra=[draft_order("Rinvoq 15 mg", 15)]))
    assert dose_alerts(cards) == []
    assert [c["indicator"] for c in dose_cards(cards)] == ["info"]


# -- renal ------------------------------------------------------------------------------

@pytest.mark.parametrize("creatinine_unit, weight_unit", [("mg/dL", "kg"), ("umol/L", "kg"), ("umol/L", "[lb_av]")])
def test_baricitinib_crcl_58_is_2_mg_and_62_is_a_near_miss(hook, creatinine_unit, weight_unit):
    low = renal(58, creatinine_unit=creatinine_unit, weight_unit=weight_unit,
                extra=[RA, draft_order("Olumiant 4 mg", 4)])
    card = only_alert(hook(low))
    assert rule_of(card) == "baricitinib-crcl-30-60" and suggested_dose(card) == (2, 1)
    assert "creatinine clearance 58 mL/min" in card["detail"] and "Cockcroft-Gault" in card["detail"]
    assert accept_and_resign(hook, low, card) == []
    ok = renal(62, creatinine_unit=creatinine_unit, weight_unit=weight_unit, extra=[RA, draft_order("Olumiant 4 mg", 4)])
    assert dose_alerts(hook(ok)) == []


def test_baricitinib_crcl_below_30_is_not_recommended_with_a_stop_suggestion(hook):
    card = only_alert(hook(renal(25, extra=[RA, draft_order("Olumiant 2 mg", 2)])))
    assert rule_of(card) == "baricitinib-crcl-below-30"
    assert card["suggestions"][0]["actions"][0]["resourceId"] == ["MedicationRequest/draft-1"]


def test_measured_creatinine_clearance_is_used_first(hook):
    resources = record(extra=[obs("2164-2", 45, "mL/min", days_ago=3), RA, draft_order("Olumiant 4 mg", 4)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "baricitinib-crcl-30-60" and "measured creatinine clearance" in card["detail"]


def test_no_creatinine_says_exactly_what_is_missing(hook):
    cards = hook(record(drop=["2160-0"], extra=[RA, draft_order("Olumiant 4 mg", 4)]))
    assert dose_alerts(cards) == []
    assert "renal dose (creatinine clearance): no serum creatinine in the last 90 days" in said_out_loud(cards)


def test_upadacitinib_severe_renal_impairment_15_mg_and_esrd_not_recommended(hook):
    severe = record(extra=[egfr_obs(25), AD, draft_order("Rinvoq 30 mg", 30)])
    card = only_alert(hook(severe))
    assert rule_of(card) == "upadacitinib-egfr-15-30" and suggested_dose(card) == (15, 1)
    assert dose_alerts(hook(record(extra=[egfr_obs(32), AD, draft_order("Rinvoq 30 mg", 30)]))) == []
    esrd = only_alert(hook(record(extra=[egfr_obs(12), AD, draft_order("Rinvoq 15 mg", 15)])))
    assert rule_of(esrd) == "upadacitinib-egfr-below-15"


@pytest.mark.parametrize("code, system", [("46177005", SNOMED), ("105502003", SNOMED), ("Z99.2", ICD10)])
def test_dialysis_or_esrd_condition_makes_upadacitinib_not_recommended(hook, code, system):
    dialysis = condition(code, "End-stage renal disease / dialysis", system=system)
    card = only_alert(hook(record(extra=[RA, dialysis, draft_order("Rinvoq 15 mg", 15)])))
    assert rule_of(card) == "upadacitinib-esrd-dialysis"


def test_filgotinib_crcl_bands(hook):
    card = only_alert(hook(renal(40, extra=[RA, draft_order("Jyseleca 200 mg", 200)])))
    assert rule_of(card) == "filgotinib-crcl-15-60" and suggested_dose(card) == (100, 1)
    assert rule_of(only_alert(hook(renal(12, extra=[RA, draft_order("Jyseleca 100 mg", 100)])))) \
        == "filgotinib-crcl-below-15"
    assert dose_alerts(hook(renal(62, extra=[RA, draft_order("Jyseleca 200 mg", 200)]))) == []


def test_abrocitinib_renal_halving_and_severe_start(hook):
    card = only_alert(hook(record(extra=[egfr_obs(45), AD, draft_order("Cibinqo 200 mg", 200)])))
    assert rule_of(card) == "abrocitinib-egfr-30-60" and suggested_dose(card) == (100, 1)
    assert dose_alerts(hook(record(extra=[egfr_obs(61), AD, draft_order("Cibinqo 200 mg", 200)]))) == []
    start = only_alert(hook(record(extra=[egfr_obs(25), AD, draft_order("Cibinqo 100 mg", 100)])))
    assert rule_of(start) == "abrocitinib-egfr-below-30-start" and suggested_dose(start) == (50, 1)
    on_it = active_med("Cibinqo 100 mg", rid="old-abro")
    assert dose_alerts(hook(record(extra=[egfr_obs(25), AD, on_it, draft_order("Cibinqo 100 mg", 100)]))) == []


def test_egfr_is_computed_with_ckd_epi_when_not_reported(hook):
    # woman, 45 y, creatinine 1.6 mg/dL -> CKD-EPI 2021 about 40: abrocitinib halved
    resources = record(drop=["2160-0"], extra=[obs("2160-0", 1.6, "mg/dL"), AD, draft_order("Cibinqo 200 mg", 200)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "abrocitinib-egfr-30-60" and "CKD-EPI 2021" in card["detail"]


def test_tofacitinib_severe_renal_impairment(hook):
    card = only_alert(hook(renal(25, extra=[RA, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-crcl-below-30" and suggested_dose(card) == (5, 1)
    assert "50" in card["detail"]                       # the US threshold is mentioned, not applied
    # UC 10 mg twice daily without a phase: the first correction is the halved induction dose
    uc = only_alert(hook(renal(25, extra=[UC, draft_order("tofacitinib 10 mg", 10, per_day=2)])))
    assert rule_of(uc) == "tofacitinib-crcl-below-30" and suggested_dose(uc) == (5, 2)
    assert dose_alerts(hook(renal(45, extra=[RA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []


# -- hepatic -----------------------------------------------------------------------------

@pytest.mark.parametrize("finding", [{"value": "B"}, {"value": "Child-Pugh class B"}, {"score": 8}])
def test_tofacitinib_child_pugh_b_is_5_mg_once_daily(hook, finding):
    resources = record(extra=[child_pugh(**finding), RA, draft_order("tofacitinib 5 mg", 5, per_day=2)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "tofacitinib-child-pugh-b" and suggested_dose(card) == (5, 1)
    assert accept_and_resign(hook, resources, card) == []


@pytest.mark.parametrize("finding", [{"value": "A"}, {"score": 6}])
def test_child_pugh_a_is_a_near_miss(hook, finding):
    assert dose_alerts(hook(record(extra=[child_pugh(**finding), RA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []


# -- interacting medicines -------------------------------------------------------------------

def test_tofacitinib_with_ketoconazole_by_atc_is_halved(hook):
    keto = active_med("Nizoral 200 mg tablet", {"system": ATC, "code": "J02AB02"})
    resources = record(extra=[RA, keto, draft_order("tofacitinib 5 mg", 5, per_day=2)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "tofacitinib-strong-cyp3a4" and suggested_dose(card) == (5, 1)
    assert "Nizoral" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_ketoconazole_shampoo_and_stopped_medicines_do_not_count(hook):
    shampoo = active_med("ketoconazole 2% shampoo")
    stopped = active_med("itraconazole 100 mg capsule", status="stopped")
    order = draft_order("tofacitinib 5 mg", 5, per_day=2)
    assert dose_alerts(hook(record(extra=[RA, shampoo, stopped, order]))) == []


def test_tofacitinib_with_fluconazole_by_name_but_not_fluoxetine_alone(hook):
    card = only_alert(hook(record(extra=[RA, active_med("fluconazole 200 mg"), draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-cyp3a4-cyp2c19"
    assert dose_alerts(hook(record(extra=[RA, active_med("fluoxetine 20 mg"), draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []


def test_upadacitinib_with_clarithromycin_marks_the_source_quality(hook):
    clari = active_med("clarithromycin 500 mg", {"system": ATC, "code": "J01FA09"})
    card = only_alert(hook(record(extra=[AD, clari, draft_order("Rinvoq 30 mg", 30)])))
    assert rule_of(card) == "upadacitinib-strong-cyp3a4" and suggested_dose(card) == (15, 1)
    assert "patent" in card["detail"]
    assert dose_alerts(hook(record(extra=[RA, clari, draft_order("Rinvoq 15 mg", 15)]))) == []


def test_abrocitinib_with_fluvoxamine_and_baricitinib_with_probenecid(hook):
    card = only_alert(hook(record(extra=[AD, active_med("fluvoxamine 100 mg", {"system": ATC, "code": "N06AB08"}),
                                         draft_order("Cibinqo 200 mg", 200)])))
    assert rule_of(card) == "abrocitinib-strong-cyp2c19" and suggested_dose(card) == (100, 1)
    card = only_alert(hook(record(extra=[RA, active_med("probenecid 500 mg"), draft_order("Olumiant 4 mg", 4)])))
    assert rule_of(card) == "baricitinib-probenecid" and suggested_dose(card) == (2, 1)


# -- one card per order, lowest cap, same answer on select and sign --------------------------

def test_several_reasons_give_one_card_with_the_lowest_dose_and_every_reason(hook):
    # renal impairment and an inhibitor halve once each (no label states the combination: conservative reading),
    # so UC induction 10 mg twice daily -> 5 mg twice daily -> 5 mg once daily
    keto = active_med("ketoconazole 200 mg", {"system": ATC, "code": "J02AB02"})
    order = draft_order("tofacitinib 10 mg", 10, per_day=2)
    order["dosageInstruction"][0]["text"] = "tofacitinib 10 mg twice daily, induction 8 weeks"
    resources = renal(25, age=70, extra=[UC, keto, order])
    cards = hook(resources)
    dose_cards = [c for c in cards if rule_of(c).startswith("tofacitinib")]
    assert len(dose_cards) == 1
    card = dose_cards[0]
    assert suggested_dose(card) == (5, 1)
    for reason in ("severe renal impairment", "strong CYP3A4 inhibitor", "age 65 or older (S001)",
                   "not addressed together by the product information"):
        assert reason in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_baricitinib_age_and_renal_together(hook):
    resources = renal(45, age=70, extra=[RA, draft_order("Olumiant 4 mg", 4)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (2, 1)
    assert "age 65 or older" in card["summary"] and "creatinine clearance 30-60" in card["summary"]


@pytest.mark.parametrize("resources", [
    renal(58, extra=[RA, draft_order("Olumiant 4 mg", 4)]),
    record(age=65, extra=[AD, draft_order("Cibinqo 200 mg", 200)]),
    record(extra=[UC, draft_order("Rinvoq 45 mg", 45)]),
])
def test_order_select_and_order_sign_give_the_same_answer(hook, resources):
    def shape(cards):
        return sorted((rule_of(c), c["indicator"], c["summary"]) for c in cards)
    assert shape(hook(resources, "order-select")) == shape(hook(resources, "order-sign"))


# -- the data is validated at load ---------------------------------------------------------------

def test_dose_when_rejects_an_empty_band():
    with pytest.raises(ValidationError):
        DoseWhen(crcl_at_least=60, crcl_below=30)


def test_a_maximum_cannot_depend_on_the_patient():
    with pytest.raises(ValidationError):
        DoseRule(id="x", drug="baricitinib", kind="maximum", when=DoseWhen(age_at_least=65), max_mg=2, per_day=1,
                 reason="r", detail="d", sources=["EU-baricitinib"])


def test_a_cap_needs_a_dose_and_a_stop_has_none():
    with pytest.raises(ValidationError):
        DoseRule(id="x", drug="baricitinib", reason="r", detail="d", sources=["EU-baricitinib"])
    with pytest.raises(ValidationError):
        DoseRule(id="x", drug="baricitinib", outcome="not_recommended", max_mg=2, per_day=1, reason="r", detail="d",
                 sources=["EU-baricitinib"])


def test_cross_check_finds_unknown_classes_concepts_and_indications(knowledge):
    bad = DoseRule(id="x", drug="baricitinib", indications=["XX"],
                   when=DoseWhen(interacting=["no-such-class"], condition="no-such-concept"),
                   max_mg=2, per_day=1, reason="r", detail="d", sources=["EU-baricitinib"])
    problems = " ".join(check(knowledge, [bad]))
    assert "no-such-class" in problems and "no-such-concept" in problems and "XX" in problems


def test_every_systemic_drug_has_an_overall_maximum(knowledge):
    systemic = {name for name, d in knowledge.drugs.items() if d.category == "systemic"}
    with_max = {r.drug for r in knowledge.rules.dose if r.kind == "maximum" and not r.indications}
    assert systemic <= with_max


def test_tofacitinib_xr_with_ketoconazole_switches_to_the_5_mg_immediate_release_tablet(hook):
    keto = active_med("ketoconazole 200 mg", {"system": ATC, "code": "J02AB02"})
    resources = record(extra=[RA, keto, draft_order("Xeljanz 11 mg prolonged-release tablet", 11)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "tofacitinib-strong-cyp3a4" and suggested_dose(card) == (5, 1)
    corrected = card["suggestions"][0]["actions"][0]["resource"]
    assert "prolonged" not in corrected["dosageInstruction"][0]["text"]
    assert "prolonged" not in corrected["medicationCodeableConcept"]["text"]
    assert accept_and_resign(hook, resources, card) == []


def test_upadacitinib_uc_in_severe_renal_impairment_is_capped_by_phase(hook):
    """Decision 14 (finding 5): UC/Crohn's with eGFR 15-<30, induction 30 mg and maintenance 15 mg are caps."""
    def uc(dose, text):
        order = draft_order(f"Rinvoq {dose} mg", dose)
        order["dosageInstruction"][0]["text"] = text
        return record(extra=[egfr_obs(25), UC, order])
    induction = uc(45, "Rinvoq 45 mg once daily, induction")
    card = only_alert(hook(induction))
    assert rule_of(card) == "upadacitinib-egfr-15-30" and suggested_dose(card) == (30, 1)
    assert "US prescribing information" in card["detail"] and "conservative" in card["detail"]
    assert accept_and_resign(hook, induction, card) == []
    maintenance = uc(30, "Rinvoq 30 mg once daily, maintenance")
    card = only_alert(hook(maintenance))
    assert suggested_dose(card) == (15, 1)
    assert accept_and_resign(hook, maintenance, card) == []
    assert dose_alerts(hook(uc(30, "Rinvoq 30 mg once daily, induction"))) == []
    assert dose_alerts(hook(uc(15, "Rinvoq 15 mg once daily, maintenance"))) == []


def test_child_pugh_older_than_a_year_is_not_used(hook):
    old = child_pugh("B")
    old["effectiveDateTime"] = "2025-06-01T08:00:00Z"
    assert dose_alerts(hook(record(extra=[old, RA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []


def test_unreadable_dose_is_said_out_loud(hook):
    order = draft_order("Olumiant tablet", None, dose_quantity={"value": 2, "unit": "tablet"})
    cards = hook(record(extra=[RA, order]))
    assert dose_alerts(cards) == []
    assert "the dose is 2 tablet(s) but the tablet strength is not stated" in said_out_loud(cards)


def test_year_only_birth_date_across_the_65_boundary_is_a_gap_not_a_guess(hook):
    born_65_this_year = record(age=65, extra=[AD, draft_order("Cibinqo 200 mg", 200)])
    born_65_this_year[0]["birthDate"] = "1961"          # 64 or 65 on 2026-11-01
    cards = hook(born_65_this_year)
    assert dose_alerts(cards) == []
    assert "age-based dose: the recorded birth date is partial" in said_out_loud(cards)


def test_an_inhibitor_ordered_together_with_the_jaki_counts(hook):
    clari = draft_order("clarithromycin 500 mg", 500, per_day=2, rid="draft-2",
                        codings=[{"system": ATC, "code": "J01FA09"}])
    resources = record(extra=[RA, clari, draft_order("tofacitinib 5 mg", 5, per_day=2)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "tofacitinib-strong-cyp3a4" and "(ordered now)" in card["detail"]
    assert dose_alerts(hook(record(extra=[RA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []


def test_the_order_reason_decides_the_indication_over_active_conditions(hook):
    order = draft_order("tofacitinib 10 mg", 10, per_day=2, reason=(SNOMED, "64766004", "Ulcerative colitis"))
    assert dose_alerts(hook(record(extra=[RA, UC, order]))) == []
    ra_order = draft_order("tofacitinib 10 mg", 10, per_day=2, reason=(ICD10, "M06.9", "Rheumatoid arthritis"))
    card = only_alert(hook(record(extra=[RA, UC, ra_order])))
    assert rule_of(card) == "tofacitinib-max-ra-psa-as" and "from the order reason" in card["detail"]


def test_an_interacting_medication_statement_counts_and_a_completed_one_does_not(hook):
    def statement(status):
        return {"resourceType": "MedicationStatement", "id": f"ms-{status}", "status": status,
                "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "M04AB01", "display": "probenecid"}]},
                "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2026-01-01"}}
    card = only_alert(hook(record(extra=[RA, statement("active"), draft_order("Olumiant 4 mg", 4)])))
    assert rule_of(card) == "baricitinib-probenecid"
    assert dose_alerts(hook(record(extra=[RA, statement("completed"), draft_order("Olumiant 4 mg", 4)]))) == []


def test_once_daily_drug_ordered_twice_daily_is_changed_even_at_an_allowed_daily_total(client):
    from fixtures.builders import condition, draft_order, full_baseline, patient
    from tests.helpers.hooks import call_hook, cards_of, rule_of
    ra = condition("69896004", "Rheumatoid arthritis")
    twice = cards_of(call_hook(client, [patient(), *full_baseline(), ra, draft_order("baricitinib 2 mg", 2, per_day=2)]))
    [card] = [c for c in twice if c["indicator"] == "warning"]
    assert rule_of(card) == "baricitinib-max" and card["summary"].startswith("Change baricitinib to 4 mg once daily")
    timing = card["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]["timing"]["repeat"]
    assert timing["frequency"] == 1
    once = cards_of(call_hook(client, [patient(), *full_baseline(), ra, draft_order("baricitinib 4 mg", 4, per_day=1)]))
    assert [c for c in once if c["indicator"] != "info"] == []


def test_a_recorded_indication_of_another_drug_is_named_not_called_unrecorded(client):
    from fixtures.builders import condition, draft_order, full_baseline, patient
    from tests.helpers.hooks import call_hook, cards_of
    ad = condition("24079001", "Atopic dermatitis")
    cards = cards_of(call_hook(client, [patient(), *full_baseline(), ad, draft_order("tofacitinib 10 mg", 10, per_day=3)]))
    [card] = [c for c in cards if c["indicator"] == "warning"]
    assert "no approved indication of tofacitinib on record; recorded: atopic dermatitis" in card["detail"]
    assert "not known (not recorded)" not in card["detail"]
