"""Knowledge review 2026-12 (issue 20): halving the dose that otherwise applies (decision 14), tofacitinib JIA and
juvenile PsA, upadacitinib in GCA, nr-axSpA and UC/Crohn's with severe renal impairment, boosted HIV regimens and
CYP inducers, the psoriatic-arthritis ICD-10 range.

What a clinician checks: the card's indicator, the dose the suggestion writes into the draft, and that accepting
the suggestion makes the same order pass on sign (no dose warning left).
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.knowledge.schemas.dose import (
    DoseHalving,
    DoseRule,
    DoseStep,
    DoseWhen,
    check,
    check_halving,
)
from fixtures.builders import ATC, ICD10, condition, draft_order, obs
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

PSA = condition("156370009", "Psoriatic arthritis")
GCA = condition("400130008", "Giant cell arteritis")
JIA = condition("M08.0", "Juvenile rheumatoid arthritis", system=ICD10)
DIALYSIS = condition("Z99.2", "Dependence on renal dialysis", system=ICD10)
KETOCONAZOLE = active_med("ketoconazole 200 mg tablet", {"system": ATC, "code": "J02AB02"})
FLUVOXAMINE = active_med("fluvoxamine 100 mg", {"system": ATC, "code": "N06AB08"})


def phased(text: str, dose: float, per_day: int = 1, phase: str | None = None, **kwargs) -> dict:
    order = draft_order(text, dose, per_day=per_day, **kwargs)
    if phase:
        order["dosageInstruction"][0]["text"] = f"{text} ({phase})"
    return order


def child(age: int, weight: float | None, extra=()):
    """A child with a usual creatinine for the age (0.4 mg/dL) and the given weight (None: not recorded)."""
    labs = [obs("2160-0", 0.4, "mg/dL")] + ([obs("29463-7", weight, "kg")] if weight is not None else [])
    return record(age=age, drop=["2160-0", "29463-7"], extra=[*labs, *extra])


def suggestion_doses(card) -> list[tuple[float, int, str]]:
    out = []
    for suggestion in card["suggestions"]:
        dosage = suggestion["actions"][0]["resource"]["dosageInstruction"][0]
        out.append((dosage["doseAndRate"][0]["doseQuantity"]["value"], dosage["timing"]["repeat"]["frequency"],
                    dosage["text"]))
    return out


def accept_each_and_resign(hook, resources, card) -> None:
    """Every suggestion of the card, accepted, makes the same order pass on sign."""
    for i in range(len(card["suggestions"])):
        chosen = dict(card, suggestions=[card["suggestions"][i]])
        assert accept_and_resign(hook, resources, chosen) == [], card["suggestions"][i]["label"]


# -- abrocitinib (finding 1) -------------------------------------------------------------------

def test_abrocitinib_age_70_egfr_45_100_mg_is_halved_to_50(hook):
    resources = record(age=70, extra=[egfr_obs(45), AD, draft_order("Cibinqo 100 mg", 100)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "abrocitinib-egfr-30-60" and suggested_dose(card) == (50, 1)
    assert "100 mg once daily (age 65 or older)" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_abrocitinib_egfr_45_without_risk_factor_halves_200_and_lets_100_pass(hook):
    assert dose_alerts(hook(record(extra=[egfr_obs(45), AD, draft_order("Cibinqo 100 mg", 100)]))) == []
    resources = record(extra=[egfr_obs(45), AD, draft_order("Cibinqo 200 mg", 200)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (100, 1)
    assert accept_and_resign(hook, resources, card) == []


@pytest.mark.parametrize("risk", [
    condition("128053003", "Deep venous thrombosis", status="resolved", onset_days_ago=900, abated_days_ago=800),
    condition("22298006", "Myocardial infarction", status="resolved", onset_days_ago=900, abated_days_ago=880),
])
def test_abrocitinib_prac_or_vte_risk_makes_100_mg_the_dose_that_is_halved(hook, risk):
    resources = record(extra=[egfr_obs(45), AD, risk, draft_order("Cibinqo 100 mg", 100)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (50, 1) and "higher VTE/MACE/malignancy risk" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_abrocitinib_renal_impairment_and_cyp2c19_inhibitor_halve_twice_and_say_so(hook):
    resources = record(extra=[egfr_obs(45), AD, FLUVOXAMINE, draft_order("Cibinqo 200 mg", 200)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (50, 1)
    assert "200 mg once daily → 100 mg once daily → 50 mg once daily" in card["detail"]
    assert "not addressed by the product information" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []
    # 100 mg is half of 200 mg but not of 200 mg halved twice
    assert suggested_dose(only_alert(hook(record(extra=[egfr_obs(45), AD, FLUVOXAMINE,
                                                        draft_order("Cibinqo 100 mg", 100)])))) == (50, 1)


def test_abrocitinib_adolescent_start_with_cyp2c19_inhibitor_is_50(hook):
    resources = record(age=14, weight=50, extra=[AD, FLUVOXAMINE, draft_order("Cibinqo 100 mg", 100)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "abrocitinib-strong-cyp2c19" and suggested_dose(card) == (50, 1)


def test_abrocitinib_cannot_be_halved_below_the_50_mg_tablet_and_says_so(hook):
    resources = record(extra=[egfr_obs(25), AD, FLUVOXAMINE, draft_order("Cibinqo 100 mg", 100)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (50, 1)
    assert "Nothing lower than 50 mg once daily is labelled" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_abrocitinib_risk_data_not_recorded_is_said_when_it_would_lower_the_dose(hook):
    resources = record(drop=["72166-2"], extra=[egfr_obs(45), AD, draft_order("Cibinqo 200 mg", 200)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (100, 1)
    assert "no lower-risk dose was assumed: smoking status: not recorded" in card["detail"]


# -- tofacitinib (findings 2, 23) ----------------------------------------------------------------

REASONS = {
    "renal": lambda extra: renal(25, extra=extra),
    "dialysis": lambda extra: record(extra=[DIALYSIS, *extra]),
    "child-pugh-b": lambda extra: record(extra=[child_pugh("B"), *extra]),
    "ketoconazole": lambda extra: record(extra=[KETOCONAZOLE, *extra]),
    "fluconazole": lambda extra: record(extra=[active_med("fluconazole 200 mg capsule"), *extra]),
    "cobicistat-combination": lambda extra: record(extra=[active_med("Symtuza tablet", {"system": ATC,
                                                                                        "code": "J05AR22"}), *extra]),
}


@pytest.mark.parametrize("reason", sorted(REASONS))
@pytest.mark.parametrize("indication, order, halved", [
    (RA, ("tofacitinib 5 mg", 5, 2, None), (5, 1)),
    (RA, ("Xeljanz 11 mg prolonged-release tablet", 11, 1, None), (5, 1)),
    (UC, ("tofacitinib 10 mg", 10, 2, "induction"), (5, 2)),
    (UC, ("tofacitinib 5 mg", 5, 2, "maintenance"), (5, 1)),
])
def test_tofacitinib_every_halving_reason_in_every_indication(hook, reason, indication, order, halved):
    text, dose, per_day, phase = order
    resources = REASONS[reason]([indication, phased(text, dose, per_day, phase)])
    card = only_alert(hook(resources))
    assert card["indicator"] == "warning" and suggested_dose(card) == halved
    corrected = card["suggestions"][0]["actions"][0]["resource"]
    assert "prolonged" not in corrected["dosageInstruction"][0]["text"]       # 5 mg once daily is a 5 mg tablet
    assert accept_and_resign(hook, resources, card) == []


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_tofacitinib_halved_uc_induction_dose_passes(hook, reason):
    """Finding 23: UC induction 5 mg twice daily is the halved 10 mg twice daily (dialysis included)."""
    assert dose_alerts(hook(REASONS[reason]([UC, phased("tofacitinib 5 mg", 5, 2, "induction")]))) == []


def test_tofacitinib_uc_without_phase_is_checked_against_the_halved_maintenance_dose(hook):
    resources = renal(25, extra=[UC, draft_order("tofacitinib 5 mg", 5, per_day=2)])
    card = only_alert(hook(resources))
    assert card["indicator"] == "warning"
    assert suggestion_doses(card) == [(5, 1, "tofacitinib 5 mg once daily (maintenance)"),
                                      (5, 2, "tofacitinib 5 mg twice daily (induction)")]
    assert "does not say induction or maintenance" in card["detail"] and "conservative" in card["detail"]
    accept_each_and_resign(hook, resources, card)
    # 10 mg twice daily looks like induction: that correction comes first
    resources = renal(25, extra=[UC, draft_order("tofacitinib 10 mg", 10, per_day=2)])
    card = only_alert(hook(resources))
    assert [d[:2] for d in suggestion_doses(card)] == [(5, 2), (5, 1)]
    accept_each_and_resign(hook, resources, card)


def test_tofacitinib_uc_maintenance_10_mg_twice_daily_is_halved_from_the_maintenance_dose(hook):
    """The service cannot see the loss-of-response exception, so it halves 5 mg twice daily (said on the card)."""
    card = only_alert(hook(record(extra=[KETOCONAZOLE, UC, phased("tofacitinib 10 mg", 10, 2, "maintenance")])))
    assert suggested_dose(card) == (5, 1) and "override with that reason" in card["detail"]


def test_tofacitinib_two_halving_reasons_stop_at_the_once_daily_dose(hook):
    resources = renal(25, extra=[RA, KETOCONAZOLE, draft_order("tofacitinib 5 mg", 5, per_day=2)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (5, 1)
    assert "Nothing lower than the once-daily dose is labelled" in card["detail"]
    assert "not addressed together by the product information" in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_two_reasons_of_one_group_halve_once(hook):
    """CrCl < 30 and dialysis are both renal: 10 mg twice daily -> 5 mg twice daily, not further."""
    resources = renal(25, extra=[UC, DIALYSIS, phased("tofacitinib 10 mg", 10, 2, "induction")])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (5, 2)


def test_tofacitinib_unknown_indication_halves_the_lowest_indication_dose(hook):
    card = only_alert(hook(renal(25, extra=[draft_order("tofacitinib 10 mg", 10, per_day=2)])))
    assert suggested_dose(card) == (5, 1)
    assert "lowest dose any indication allows is halved" in card["detail"]


def test_haemodialysis_text_is_the_eu_reading(hook):
    card = only_alert(hook(record(extra=[DIALYSIS, RA, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert "remains on the reduced dose after haemodialysis" in card["detail"]
    assert "US label's 'dose after the dialysis session' is not applied" in card["detail"]


# -- tofacitinib JIA and juvenile PsA (findings 3, 15) ---------------------------------------------

@pytest.mark.parametrize("weight, ordered, limit, rule", [
    (15, (5, 2), (3.2, 2), "tofacitinib-jia-10-20kg"),
    (25, (10, 2), (4, 2), "tofacitinib-jia-20-40kg"),
    (45, (10, 2), (5, 2), "tofacitinib-max-jia"),
])
def test_tofacitinib_jia_weight_bands(hook, weight, ordered, limit, rule):
    resources = child(9 if weight < 40 else 15, weight, [JIA, draft_order("tofacitinib", ordered[0],
                                                                          per_day=ordered[1])])
    card = only_alert(hook(resources))
    assert rule_of(card) == rule and suggested_dose(card) == limit
    assert accept_and_resign(hook, resources, card) == []
    assert dose_alerts(hook(child(9 if weight < 40 else 15, weight,
                                  [JIA, draft_order("tofacitinib", limit[0], per_day=limit[1])]))) == []


def test_tofacitinib_jia_without_weight_is_a_stated_gap_not_a_normal_weight(hook):
    cards = hook(child(9, None, [JIA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))
    assert dose_alerts(cards) == []
    assert "body weight for the weight-based dose" in said_out_loud(cards)


def test_tofacitinib_jia_under_10_kg_has_no_labelled_dose(hook):
    card = only_alert(hook(child(2, 8, [JIA, draft_order("tofacitinib oral solution", 2, per_day=2)])))
    assert rule_of(card) == "tofacitinib-jia-under-10kg" and card["suggestions"][0]["actions"][0]["type"] == "delete"


def test_tofacitinib_jia_dose_is_halved_to_the_same_dose_once_daily(hook):
    resources = child(6, 15, [JIA, DIALYSIS, draft_order("tofacitinib oral solution", 3.2, per_day=2)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (3.2, 1)
    assert accept_and_resign(hook, resources, card) == []


def test_a_childs_psoriatic_arthritis_is_juvenile_psa_not_an_adult_only_indication(hook):
    assert dose_cards(hook(child(14, 45, [PSA, draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []
    card = only_alert(hook(child(12, 30, [PSA, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-jia-20-40kg" and suggested_dose(card) == (4, 2)
    # RA, AS and UC stay adult-only
    card = only_alert(hook(child(14, 45, [RA, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-under-18-adult-indication"


def test_adult_renal_formula_in_a_child_is_said_on_the_card(hook):
    resources = record(age=9, weight=20, drop=["2160-0"],
                       extra=[obs("2160-0", 1.9, "mg/dL"), JIA, draft_order("tofacitinib", 4, per_day=2)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (4, 1)
    assert "adult formula in a patient under 18" in card["detail"]


# -- upadacitinib (findings 4, 5, 27) --------------------------------------------------------------

@pytest.mark.parametrize("reason", [GCA, condition("713777005", "Non-radiographic axial spondyloarthritis"),
                                    condition("M45.A1", "nr-axSpA, occipito-atlanto-axial", system=ICD10)])
def test_upadacitinib_gca_and_nr_axspa_are_15_mg(hook, reason):
    resources = record(age=60, extra=[reason, draft_order("Rinvoq 30 mg", 30)])
    card = only_alert(hook(resources))
    assert rule_of(card) == "upadacitinib-max-ra-psa-as" and suggested_dose(card) == (15, 1)
    assert accept_and_resign(hook, resources, card) == []


@pytest.mark.parametrize("indication", [UC, condition("34000006", "Crohn's disease")])
def test_upadacitinib_ibd_severe_renal_impairment_without_phase_offers_both_caps(hook, indication):
    resources = record(extra=[egfr_obs(25), indication, draft_order("Rinvoq 45 mg", 45)])
    card = only_alert(hook(resources))
    assert [d[:2] for d in suggestion_doses(card)] == [(30, 1), (15, 1)]      # 45 mg is an induction dose
    accept_each_and_resign(hook, resources, card)
    resources = record(extra=[egfr_obs(25), indication, draft_order("Rinvoq 30 mg", 30)])
    card = only_alert(hook(resources))
    assert [d[:2] for d in suggestion_doses(card)] == [(15, 1), (30, 1)]
    accept_each_and_resign(hook, resources, card)


def test_upadacitinib_15_mg_stays_15_mg_without_a_cannot_halve_warning(hook):
    """The label keeps 15 mg in severe renal impairment: not a halving that could not be applied."""
    resources = record(age=70, extra=[egfr_obs(25), AD, draft_order("Rinvoq 30 mg", 30)])
    card = only_alert(hook(resources))
    assert suggested_dose(card) == (15, 1) and "could not be applied" not in card["detail"]
    assert accept_and_resign(hook, resources, card) == []


def test_upadacitinib_strong_cyp3a4_steps_cite_their_real_sources(hook):
    card = only_alert(hook(record(extra=[UC, KETOCONAZOLE, phased("Rinvoq 45 mg", 45, 1, "induction")])))
    assert suggested_dose(card) == (30, 1)
    assert "WO2023137440" in card["detail"] and "US prescribing information" in card["detail"]
    assert "patentscope.wipo.int" in card["detail"] and "rxabbvie.com" in card["detail"]   # linked sources


# -- interacting medicines (findings 13, 18) --------------------------------------------------------

@pytest.mark.parametrize("medicine", [
    active_med("Genvoya tablet", {"system": ATC, "code": "J05AR18"}),
    active_med("HIV regimen", {"system": ATC, "code": "J05AR09"}),
    active_med("Evotaz 300/150 mg", {"system": ATC, "code": "J05AR15"}),
    active_med("Rezolsta 800/150 mg", {"system": ATC, "code": "J05AR14"}),
    active_med("indinavir 400 mg capsule"),
    active_med("Viracept", {"system": ATC, "code": "J05AE04"}),
])
def test_boosted_hiv_regimens_and_protease_inhibitors_are_strong_cyp3a4_inhibitors(hook, medicine):
    card = only_alert(hook(record(extra=[RA, medicine, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-strong-cyp3a4" and suggested_dose(card) == (5, 1)


@pytest.mark.parametrize("medicine", [active_med("Rifadin 300 mg capsule"),
                                      active_med("antiepileptic", {"system": ATC, "code": "N03AF01"}),
                                      active_med("St John's wort extract 300 mg")])
def test_tofacitinib_with_a_strong_cyp3a4_inducer_is_not_recommended(hook, medicine):
    card = only_alert(hook(record(extra=[RA, medicine, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-strong-cyp3a4-inducer" and "loss of" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["type"] == "delete"


def test_abrocitinib_with_a_cyp2c19_or_cyp2c9_inducer_is_not_recommended(hook):
    for medicine in (active_med("efavirenz 600 mg"), active_med("Xtandi", {"system": ATC, "code": "L02BB04"})):
        card = only_alert(hook(record(extra=[AD, medicine, draft_order("Cibinqo 100 mg", 100)])))
        assert rule_of(card) == "abrocitinib-cyp2c19-cyp2c9-inducer"


def test_upadacitinib_with_an_inducer_is_information_and_baricitinib_gets_nothing(hook):
    cards = hook(record(extra=[RA, active_med("phenytoin 100 mg"), draft_order("Rinvoq 15 mg", 15)]))
    assert dose_alerts(cards) == []
    [info] = dose_cards(cards)
    assert rule_of(info) == "upadacitinib-strong-cyp3a4-inducer" and "monitor disease activity" in info["detail"]
    assert dose_cards(hook(record(extra=[RA, active_med("rifampicin 600 mg"), draft_order("Olumiant 4 mg", 4)]))) == []


def test_moderate_inducer_and_an_inducer_ordered_together(hook):
    assert dose_alerts(hook(record(extra=[RA, active_med("rifabutin 150 mg"),
                                          draft_order("tofacitinib 5 mg", 5, per_day=2)]))) == []
    rifampicin = draft_order("rifampicin 600 mg capsule", 600, rid="draft-2", codings=[{"system": ATC,
                                                                                         "code": "J04AB02"}])
    card = only_alert(hook(record(extra=[RA, rifampicin, draft_order("tofacitinib 5 mg", 5, per_day=2)])))
    assert rule_of(card) == "tofacitinib-strong-cyp3a4-inducer" and "(ordered now)" in card["detail"]


# -- psoriatic arthritis ICD-10 (finding 22) ---------------------------------------------------------

@pytest.mark.parametrize("code, is_psa", [("M07.3", True), ("L40.50", True), ("M07.0", True),
                                          ("M07.4", False), ("M07.5", False), ("M07.60", False)])
def test_psoriatic_arthritis_icd10_range(hook, code, is_psa):
    order = phased("Rinvoq 30 mg", 30, 1, "maintenance", reason=(ICD10, code, "arthropathy"))
    cards = hook(record(extra=[condition("K50.9", "Crohn's disease", system=ICD10), order]))
    alerts = dose_alerts(cards)
    assert [rule_of(c) for c in alerts] == (["upadacitinib-max-ra-psa-as"] if is_psa else [])


# -- the knowledge is validated at load ---------------------------------------------------------------

def test_a_halving_has_a_group_and_no_fixed_dose():
    with pytest.raises(ValidationError):
        DoseRule(id="x", drug="tofacitinib", outcome="halve", reason="r", detail="d", sources=["EU-tofacitinib"])
    with pytest.raises(ValidationError):
        DoseRule(id="x", drug="tofacitinib", outcome="halve", halving_group="renal", max_mg=5, per_day=1,
                 reason="r", detail="d", sources=["EU-tofacitinib"])
    with pytest.raises(ValidationError):
        DoseRule(id="x", drug="tofacitinib", outcome="halve", halving_group="renal", reason="r", detail="d",
                 when=DoseWhen(phase="maintenance"), sources=["EU-tofacitinib"])
    with pytest.raises(ValidationError):
        DoseStep(from_mg=5, from_per_day=1, to_mg=5, to_per_day=2)


def test_cross_checks_find_a_halving_without_steps_and_an_undefined_indication(knowledge):
    orphan = DoseRule(id="x", drug="baricitinib", outcome="halve", halving_group="renal", reason="r", detail="d",
                      sources=["EU-baricitinib"])
    assert any("no [[dose_halving]] entry for 'baricitinib'" in p for p in check(knowledge, [orphan]))
    drugs = dict(knowledge.drugs)
    try:
        knowledge.drugs = {**drugs, "tofacitinib": drugs["tofacitinib"].model_copy(
            update={"indications": [*drugs["tofacitinib"].indications, "no-such-indication"]})}
        assert any("no-such-indication" in p for p in check(knowledge, []))
    finally:
        knowledge.drugs = drugs
    twice = DoseHalving(id="y", drug="tofacitinib", steps=[DoseStep(from_mg=1, from_per_day=1, to_mg=1, to_per_day=1)],
                        detail="d", combination="c", sources=["EU-tofacitinib"])
    assert any("two entries" in p for p in check_halving(knowledge, [twice, twice]))


def test_every_drug_indication_is_defined(knowledge):
    assert {i for d in knowledge.drugs.values() for i in d.indications} <= set(knowledge.indications)
    assert knowledge.icd10_to_indication["M45.A"] == "nr-axSpA"
