"""PRAC 2022 risk groups (decision 7): one warning card per order gathering every factor; lower-dose suggestion
unless the order already asks for it or a dose card already edits the draft."""
from __future__ import annotations

import pytest

from cds_service.cards import one_edit_per_draft
from cds_service.findings import Finding, ProposedAction, ProposedSuggestion
from fixtures.builders import (
    ATC,
    ICD10,
    LOINC,
    SNOMED,
    condition,
    draft_order,
    medication_request,
    obs,
    patient,
)
from fixtures.scenarios_contraindications import record
from fixtures.scenarios_prac import EX_SMOKER_LOINC, SMOKER, UNKNOWN_SMOKING, smoking
from tests.helpers.hooks import alerts, rule_of

UPA_RA = ("upadacitinib 15 mg prolonged-release tablet", 15)
AD = condition("24079001", "Atopic dermatitis")


def prac_cards(cards) -> list[dict]:
    return [c for c in cards if rule_of(c) == "prac-risk-groups"]


def the_prac_card(cards) -> dict:
    [card] = prac_cards(cards)
    assert card["indicator"] == "warning"
    return card


def suggested_dose(card) -> tuple[float, int] | None:
    if not card.get("suggestions"):
        return None
    resource = card["suggestions"][0]["actions"][0]["resource"]
    dosage = resource["dosageInstruction"][0]
    return dosage["doseAndRate"][0]["doseQuantity"]["value"], dosage["timing"]["repeat"]["frequency"]


# -- age ------------------------------------------------------------------------------------------------------------

def test_clean_45_year_old_never_smoker_gets_no_card(hook):
    assert alerts(hook(record(age=45, extra=[draft_order(*UPA_RA)]))) == []


def test_age_65_is_a_prac_factor_and_64_is_not(hook):
    card = the_prac_card(hook(record(age=65, extra=[draft_order(*UPA_RA)])))
    assert "age 65" in card["detail"] and "no suitable alternative" in card["summary"]
    assert ">65" in card["detail"]            # S003's boundary is mentioned
    assert prac_cards(hook(record(age=64, extra=[draft_order(*UPA_RA)]))) == []


def test_partial_birth_date_that_may_be_65_is_said_only_when_a_card_is_shown(hook):
    # born "1961": 64 or 65 on 2026-11-01 -> not counted as a factor; a smoker gets the card with the note
    person = patient(birth_date="1961")
    cards = hook([person, *record(drop=("72166-2",), extra=[smoking(SMOKER), draft_order(*UPA_RA)])[1:]])
    assert "may be 65" in the_prac_card(cards)["detail"]


# -- smoking --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    SMOKER,
    (SNOMED, "428041000124106", "Occasional tobacco smoker"),
    (SNOMED, "8517006", "Ex-smoker"),
    EX_SMOKER_LOINC,
    (LOINC, "LA18976-3", "Current every day smoker"),
])
def test_current_and_former_smokers_are_prac_factors(hook, answer):
    cards = hook(record(drop=("72166-2",), extra=[smoking(answer), draft_order(*UPA_RA)]))
    assert "smoker" in the_prac_card(cards)["summary"]


@pytest.mark.parametrize("answer", [(SNOMED, "266919005", "Never smoked tobacco"), (LOINC, "LA18978-9", "Never smoker"),
                                    UNKNOWN_SMOKING])
def test_never_or_unknown_smoking_is_not_a_factor(hook, answer):
    assert alerts(hook(record(drop=("72166-2",), extra=[smoking(answer), draft_order(*UPA_RA)]))) == []


def test_smoking_status_not_recorded_is_said_on_a_card_shown_for_another_factor(hook):
    card = the_prac_card(hook(record(age=70, drop=("72166-2",), extra=[draft_order(*UPA_RA)])))
    assert "smoking status: not recorded" in card["detail"]


def test_newest_smoking_status_wins(hook):
    cards = hook(record(drop=("72166-2",), extra=[smoking(SMOKER, 400),
                                                  smoking((SNOMED, "266919005", "Never smoked tobacco"), 5),
                                                  draft_order(*UPA_RA)]))
    assert alerts(cards) == []


# -- cardiovascular and malignancy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cv", [
    condition("22298006", "Myocardial infarction", status="resolved", onset_days_ago=3000, abated_days_ago=2900),
    condition("I63.9", "Cerebral infarction", system=ICD10, status="resolved", onset_days_ago=800),
    condition("38341003", "Hypertension"),
    condition("E11.9", "Type 2 diabetes mellitus", system=ICD10),
])
def test_cardiovascular_disease_and_risk_factors(hook, cv):
    assert the_prac_card(hook(record(sex="male", extra=[cv, draft_order(*UPA_RA)])))


def test_resolved_hypertension_is_not_a_current_risk_factor(hook):
    htn = condition("38341003", "Hypertension", status="resolved", abated_days_ago=100)
    assert alerts(hook(record(extra=[htn, draft_order(*UPA_RA)]))) == []


def test_cin3_in_the_last_5_years_is_a_malignancy_risk(hook):
    cin3 = condition("D06.9", "Carcinoma in situ of cervix uteri", system=ICD10, status="resolved",
                     onset_days_ago=900, abated_days_ago=800)
    card = the_prac_card(hook(record(extra=[cin3, draft_order(*UPA_RA)])))
    assert "malignancy risk" in card["summary"]


# -- VTE risk factors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [
    condition("59282003", "Pulmonary embolism", status="resolved", onset_days_ago=1000, abated_days_ago=900),
    condition("I80.2", "Deep vein thrombosis of leg", system=ICD10, status="resolved", onset_days_ago=600),
    condition("D68.5", "Primary thrombophilia", system=ICD10),
    condition("Z74.0", "Reduced mobility", system=ICD10),
    obs("39156-5", 30, "kg/m2", 30),
    medication_request("estradiol 2 mg tablet (HRT)", codings=[{"system": ATC, "code": "G03CA03"}]),
    medication_request("Microgynon (levonorgestrel/ethinylestradiol)"),
])
def test_vte_risk_factors_give_a_caution_card_about_clot_symptoms(hook, factor):
    card = the_prac_card(hook(record(extra=[factor, draft_order(*UPA_RA)])))
    assert "with caution" in card["summary"] and "clot" in card["detail"]
    # recent major surgery is read from Procedures now (finding 24): not said as unchecked when they were obtained
    assert "recent major surgery" not in card["detail"]


@pytest.mark.parametrize("factor", [
    obs("39156-5", 29.9, "kg/m2", 30),
    medication_request("Vagifem 10 microgram estradiol vaginal tablet", codings=[{"system": ATC, "code": "G03CA03"}]),
    medication_request("estradiol 2 mg tablet", codings=[{"system": ATC, "code": "G03CA03"}], status="stopped"),
])
def test_vte_near_misses(hook, factor):
    assert alerts(hook(record(extra=[factor, draft_order(*UPA_RA)]))) == []


def test_bmi_from_weight_and_height_in_other_units(hook):
    heavy = [obs("29463-7", 210, "[lb_av]", 20), obs("8302-2", 1.70, "m", 200)]     # 95.3 kg, 1.70 m -> 33.0
    light = [obs("29463-7", 190, "[lb_av]", 20), obs("8302-2", 68, "[in_i]", 200)]  # 86.2 kg, 1.727 m -> 28.9
    card = the_prac_card(hook(record(drop=("29463-7",), extra=[*heavy, draft_order(*UPA_RA)])))
    assert "BMI 33.0" in card["detail"]
    assert alerts(hook(record(drop=("29463-7",), extra=[*light, draft_order(*UPA_RA)]))) == []


def test_one_card_gathers_every_factor(hook):
    cards = hook(record(age=70, sex="male", drop=("72166-2",),
                        extra=[smoking(SMOKER), condition("22298006", "Myocardial infarction"),
                               obs("39156-5", 34, "kg/m2", 30), draft_order(*UPA_RA)]))
    card = the_prac_card(cards)
    for text in ("age 70", "Smokes tobacco daily", "Myocardial infarction", "BMI 34", "clot"):
        assert text in card["detail"]


# -- lower dose -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order, lower", [
    (draft_order("Olumiant 4 mg tablet", 4), (2, 1)),
    (draft_order("Jyseleca 200 mg", 200), (100, 1)),
    (draft_order("Cibinqo 200 mg", 200), (100, 1)),
])
def test_smoker_gets_the_lower_dose_as_an_edit_of_the_draft(hook, order, lower):
    card = the_prac_card(hook(record(drop=("72166-2",), extra=[smoking(SMOKER), order])))
    assert suggested_dose(card) == lower
    assert card["suggestions"][0]["actions"][0]["type"] == "update"
    assert card["suggestions"][0]["actions"][0]["resource"]["id"] == "draft-1"


def test_upadacitinib_ad_lower_dose_is_15_mg(hook):
    order = draft_order("Rinvoq 30 mg", 30, reason=(SNOMED, "24079001", "Atopic dermatitis"))
    cards = hook(record(drop=("72166-2",), extra=[AD, smoking(SMOKER), order]))
    assert suggested_dose(the_prac_card(cards)) == (15, 1)


def test_tofacitinib_uc_maintenance_10_bid_suggests_5_bid_but_induction_does_not(hook):
    uc = condition("64766004", "Ulcerative colitis")
    maintenance = draft_order("tofacitinib 10 mg tablet", 10, per_day=2, reason=(SNOMED, "64766004", "Ulcerative colitis"))
    maintenance["dosageInstruction"][0]["text"] = "tofacitinib 10 mg twice daily, maintenance"
    card = the_prac_card(hook(record(drop=("72166-2",), extra=[uc, smoking(SMOKER), maintenance])))
    assert suggested_dose(card) == (5, 2)
    induction = draft_order("tofacitinib 10 mg tablet", 10, per_day=2, reason=(SNOMED, "64766004", "Ulcerative colitis"))
    induction["dosageInstruction"][0]["text"] = "tofacitinib 10 mg twice daily, induction 8 weeks"
    card = the_prac_card(hook(record(drop=("72166-2",), extra=[uc, smoking(SMOKER), induction])))
    assert suggested_dose(card) is None


def test_order_already_at_the_lower_dose_gets_no_suggestion(hook):
    card = the_prac_card(hook(record(drop=("72166-2",), extra=[smoking(SMOKER), draft_order("Olumiant 2 mg", 2)])))
    assert suggested_dose(card) is None and "is the lower-risk dose for these risk factors" in card["detail"]


def test_dose_card_keeps_the_edit_and_the_prac_card_does_not_repeat_it(hook):
    cards = hook(record(age=70, extra=[draft_order("Olumiant 4 mg tablet", 4)]))
    dose = [c for c in alerts(cards) if rule_of(c) == "baricitinib-age-65"]
    assert dose and suggested_dose(dose[0]) == (2, 1)
    card = the_prac_card(cards)
    assert suggested_dose(card) is None and "2 mg once daily" in card["detail"]


def test_accepting_the_prac_suggestion_leaves_only_the_prac_advice_on_sign(hook):
    base = record(drop=("72166-2",), extra=[smoking(SMOKER)])
    cards = hook([*base, draft_order("Olumiant 4 mg tablet", 4)], "order-select")
    corrected = the_prac_card(cards)["suggestions"][0]["actions"][0]["resource"]
    again = hook(base, drafts=[corrected])
    assert [rule_of(c) for c in alerts(again)] == ["prac-risk-groups"]
    assert suggested_dose(the_prac_card(again)) is None


# -- the generic one-edit-per-draft rule in cards.py ------------------------------------------------------------------

def _finding(rule: str, indicator: str, resource_id: str) -> Finding:
    action = ProposedAction("update", "edit", {"resourceType": "MedicationRequest", "id": resource_id})
    return Finding(rule, f"{rule}:{resource_id}", indicator, rule, "", ["S001"],
                   suggestions=[ProposedSuggestion("edit", (action,))], order_id=resource_id)


def test_one_edit_per_draft_keeps_the_first_of_equal_severity_and_the_most_severe():
    first, second = _finding("dose", "warning", "d1"), _finding("prac", "warning", "d1")
    other = _finding("prac", "warning", "d2")
    out = one_edit_per_draft([first, second, other])
    assert [len(f.suggestions) for f in out] == [1, 0, 1]
    critical = _finding("stop", "critical", "d1")
    out = one_edit_per_draft([first, critical])
    assert [len(f.suggestions) for f in out] == [0, 1]


def test_indication_specific_lower_dose_is_text_only_when_the_indication_is_unknown(hook):
    base = record(drop=("72166-2",), extra=[smoking(SMOKER)])
    no_indication = [r for r in base if r.get("resourceType") != "Condition"]
    card = the_prac_card(hook([*no_indication, draft_order("Rinvoq 45 mg", 45)]))
    assert suggested_dose(card) is None
    assert "If the indication is AD" in card["detail"]


def test_deucravacitinib_and_ruxolitinib_cream_get_no_prac_card(hook):
    sotyktu = draft_order("Sotyktu 6 mg tablet (deucravacitinib)", 6)
    cream = draft_order("Opzelura 1.5% cream", None, per_day=2, route=("6064005", "Topical route"), rid="draft-2")
    cards = hook(record(age=75, drop=("72166-2",), extra=[smoking(SMOKER), sotyktu, cream]))
    assert prac_cards(cards) == []
