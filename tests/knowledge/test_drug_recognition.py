"""Drug recognition per code system and dose reading (cds_service/drugs.py, cards/drugs.toml)."""
import pytest

from cds_service.knowledge import drugs as drugmod
from fixtures.builders import (
    ATC,
    RXNORM,
    SNOMED,
    UCUM,
    condition,
    draft_order,
    full_baseline,
    patient,
)

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"


def concept(text=None, *codings):
    c = {}
    if text:
        c["text"] = text
    if codings:
        c["coding"] = [{"system": s, "code": code} for s, code in codings]
    return c


def recognise(knowledge, med_concept, medication=None, route=None):
    return drugmod.recognise(knowledge, med_concept, medication, route)


# -- recognition ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code,drug,strength,modified", [
    ("2048566", "tofacitinib", 10, False),           # tofacitinib 10 MG Oral Tablet (VSAC)
    ("1741046", "tofacitinib", 11, True),            # 24 HR tofacitinib 11 MG ER
    ("1193339", "ruxolitinib-oral", 5, False),
    ("2196894", "upadacitinib", None, False),        # Rinvoq product, strength unknown
    ("2591487", "abrocitinib", None, False),         # Cibinqo openFDA record, strength not stated per code
    ("2641601", "ritlecitinib", 50, False),          # Litfulo, the only strength
])
def test_rxnorm_codes(knowledge, code, drug, strength, modified):
    match = recognise(knowledge, concept(None, (RXNORM, code)))
    assert (match.drug_id, match.matched_by, match.strength_mg, match.modified_release) == \
        (drug, "rxnorm", strength, modified)


@pytest.mark.parametrize("code,drug", [
    ("L04AF01", "tofacitinib"), ("L04AA29", "tofacitinib"), ("L04AF02", "baricitinib"), ("L04AA37", "baricitinib"),
    ("L04AF03", "upadacitinib"), ("l04aa44", "upadacitinib"), ("L04AF04", "filgotinib"), ("L04AA45", "filgotinib"),
    ("D11AH08", "abrocitinib"), ("L04AF07", "deucravacitinib"), ("L04AF08", "ritlecitinib"),
    ("L01EJ01", "ruxolitinib-oral"), ("L01XE18", "ruxolitinib-oral"), ("D11AH09", "ruxolitinib-topical"),
])
def test_atc_codes_new_and_old(knowledge, code, drug):
    match = recognise(knowledge, concept(None, (ATC, code)))
    assert (match.drug_id, match.matched_by) == (drug, "atc")


def test_snomed_ruxolitinib_product_is_oral_unless_the_route_or_text_says_cream(knowledge):
    oral = recognise(knowledge, concept(None, (SNOMED, "703779004")))
    cream = recognise(knowledge, concept(None, (SNOMED, "703779004")), route="topical")
    cream_text = recognise(knowledge, concept("ruxolitinib 1.5% cream", (SNOMED, "703779004")))
    assert (oral.drug_id, oral.matched_by, oral.category) == ("ruxolitinib-oral", "snomed", "out_of_scope")
    assert cream.drug_id == cream_text.drug_id == "ruxolitinib-topical"


def test_a_code_from_another_system_is_not_read_as_rxnorm(knowledge):
    # 2048566 is tofacitinib in RxNorm; under an unknown system it must not match by code
    assert recognise(knowledge, concept(None, ("http://example.org/local", "2048566"))) is None


@pytest.mark.parametrize("text,drug,strength", [
    ("Olumiant 4 mg film-coated tablet", "baricitinib", 4),
    ("UPADACITINIB 30MG PR TAB", "upadacitinib", 30),
    ("Cibinqo 100 mg", "abrocitinib", 100),
    ("Jyseleca 200 mg", "filgotinib", 200),
    ("Xeljanz 5 mg", "tofacitinib", 5),
    ("Litfulo 50 mg capsule", "ritlecitinib", 50),
    ("Sotyktu 6 mg", "deucravacitinib", 6),
    ("Jakavi 10 mg tablet", "ruxolitinib-oral", 10),
    ("Opzelura 15 mg/g cream", "ruxolitinib-topical", None),
])
def test_ingredient_or_brand_text_without_any_code(knowledge, text, drug, strength):
    match = recognise(knowledge, concept(text))
    assert (match.drug_id, match.matched_by, match.strength_mg) == (drug, "text", strength)


def test_a_strength_that_the_drug_does_not_come_in_is_not_taken_from_text(knowledge):
    assert recognise(knowledge, concept("baricitinib 3 mg compounded")).strength_mg is None


def test_non_jak_medicines_are_not_recognised(knowledge):
    assert recognise(knowledge, concept("methotrexate 15 mg", (ATC, "L04AX03"))) is None
    assert recognise(knowledge, concept("apremilast 30 mg")) is None


def test_categories_decide_which_drugs_get_rules(knowledge):
    assert {d for d, e in knowledge.drugs.items() if e.category == "systemic"} == \
        {"tofacitinib", "baricitinib", "upadacitinib", "filgotinib", "abrocitinib"}
    assert knowledge.drugs["deucravacitinib"].category == "not_class"
    assert knowledge.drugs["ritlecitinib"].category == "unsupported"
    assert knowledge.drugs["ruxolitinib-topical"].category == "topical"


# -- dose ----------------------------------------------------------------------------------------------------

def order_with(dosage, med_concept=None, contained=None):
    resource = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
                "medicationCodeableConcept": med_concept or concept("baricitinib"), "dosageInstruction": [dosage]}
    if contained is not None:
        resource.pop("medicationCodeableConcept")
        resource["contained"] = [contained]
        resource["medicationReference"] = {"reference": f"#{contained['id']}"}
    return resource


def dose_of(knowledge, resource):
    from cds_service.knowledge.drugs import contained_medication
    match = recognise(knowledge, resource.get("medicationCodeableConcept"), contained_medication(resource),
                      drugmod.route_hint(resource))
    return match, drugmod.ordered_dose(resource, match)


def mg(value, code="mg"):
    return [{"doseQuantity": {"value": value, "unit": code, "system": UCUM, "code": code}}]


def daily(n):
    return {"repeat": {"frequency": n, "period": 1, "periodUnit": "d"}}


def test_dose_from_an_mg_quantity_and_timing_repeat(knowledge):
    _, dose = dose_of(knowledge, order_with({"doseAndRate": mg(4), "timing": daily(1)}))
    assert (dose.dose_mg, dose.per_day, dose.daily_mg, dose.problem) == (4, 1, 4, None)


def test_dose_in_grams_is_converted(knowledge):
    _, dose = dose_of(knowledge, order_with({"doseAndRate": mg(0.2, "g"), "timing": daily(1)},
                                           concept("Jyseleca")))
    assert dose.dose_mg == 200


def test_tablets_times_the_rxnorm_product_strength(knowledge):
    med = concept("tofacitinib", (RXNORM, "2048566"))
    _, dose = dose_of(knowledge, order_with({"doseAndRate": mg(1, "{tbl}"), "timing": daily(2)}, med))
    assert (dose.dose_mg, dose.daily_mg) == (10, 20)


def test_tablets_times_the_contained_medication_ingredient_strength(knowledge):
    medication = {"resourceType": "Medication", "id": "med1", "code": {"text": "Olumiant"},
                  "ingredient": [{"itemCodeableConcept": {"text": "baricitinib"},
                                  "strength": {"numerator": {"value": 2, "unit": "mg", "system": UCUM, "code": "mg"},
                                               "denominator": {"value": 1, "unit": "tablet"}}}]}
    match, dose = dose_of(knowledge, order_with({"doseAndRate": mg(2, "tablet"), "timing": daily(1)},
                                                contained=medication))
    assert match.drug_id == "baricitinib" and match.strength_mg == 2
    assert dose.dose_mg == 4


def test_a_concentration_in_the_contained_medication_is_not_a_tablet_strength(knowledge):
    medication = {"resourceType": "Medication", "id": "sol", "code": {"text": "tofacitinib oral solution"},
                  "ingredient": [{"itemCodeableConcept": {"text": "tofacitinib"},
                                  "strength": {"numerator": {"value": 1, "unit": "mg", "code": "mg"},
                                               "denominator": {"value": 1, "unit": "mL", "code": "mL"}}}]}
    match, dose = dose_of(knowledge, order_with({"doseAndRate": mg(5, "1"), "timing": daily(2)}, contained=medication))
    assert match.drug_id == "tofacitinib" and match.strength_mg is None
    assert dose.dose_mg is None and "strength is not stated" in dose.problem


def test_tablets_times_the_strength_in_the_text(knowledge):
    _, dose = dose_of(knowledge, order_with({"doseAndRate": mg(2, "tablet"), "timing": daily(1)},
                                           concept("Olumiant 2 mg tablet")))
    assert dose.dose_mg == 4


def test_tablets_without_a_known_strength_are_not_guessed(knowledge):
    match, dose = dose_of(knowledge, order_with({"doseAndRate": mg(2, "tablet"), "timing": daily(1)},
                                                concept("Rinvoq", (RXNORM, "2196894"))))
    assert match.drug_id == "upadacitinib" and match.strength_mg is None
    assert dose.dose_mg is None and dose.daily_mg is None
    assert "tablet strength is not stated" in dose.problem


def test_unknown_dose_unit_is_said(knowledge):
    _, dose = dose_of(knowledge, order_with({"doseAndRate": mg(5, "mL"), "timing": daily(1)}))
    assert dose.dose_mg is None and "could not be interpreted" in dose.problem


@pytest.mark.parametrize("timing,text,per_day", [
    ({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, None, 2),
    ({"repeat": {"frequency": 1, "period": 12, "periodUnit": "h"}}, None, 2),
    ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}, None, 1 / 7),
    ({"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": "BID"}]}},
     None, 2),
    ({"code": {"coding": [{"code": "QD"}]}}, None, 1),
    (None, "5 mg twice daily", 2),            # regression: "twice daily" contains "daily"
    (None, "15 mg once daily", 1),
    (None, "1 tablet bid", 2),
    (None, "1 tablett x 2 daglig", 2),
])
def test_frequency_from_repeat_code_or_text(knowledge, timing, text, per_day):
    dosage = {"doseAndRate": mg(5)}
    if timing:
        dosage["timing"] = timing
    if text:
        dosage["text"] = text
    _, dose = dose_of(knowledge, order_with(dosage, concept("tofacitinib")))
    assert dose.per_day == pytest.approx(per_day)


def test_missing_frequency_is_said_not_assumed(knowledge):
    _, dose = dose_of(knowledge, order_with({"doseAndRate": mg(5), "text": "tofacitinib 5 mg"}, concept("tofacitinib")))
    assert dose.per_day is None and dose.daily_mg is None
    assert "how often" in dose.problem


# -- through the service --------------------------------------------------------------------------------------

def record(extra=()):
    return [patient(), *full_baseline(), *extra]


def test_deucravacitinib_is_recognised_but_gets_no_class_cards(hook):
    order = draft_order("Sotyktu 6 mg", 6, codings=[{"system": ATC, "code": "L04AF07"}])
    assert hook(record([condition("9014002", "Psoriasis"), order])) == []


def test_ritlecitinib_gets_an_info_card_saying_it_is_not_checked(hook):
    [card] = hook(record([condition("68225006", "Alopecia areata"), draft_order("Litfulo 50 mg", 50)]))
    assert card["indicator"] == "info" and card["source"]["topic"]["code"] == "jaki-not-checked"
    assert card["summary"] == "Ritlecitinib is not checked by this service"
    assert "does **not** check" in card["detail"] and "platelets < 100" in card["detail"]
    assert "litfulo" in card["source"]["url"]


def test_the_not_checked_notice_does_not_add_an_age_gap_card(hook):
    born_badly = patient(birth_date="1890-01-01")
    cards = hook([born_badly, *full_baseline(), draft_order("Litfulo 50 mg", 50)])
    assert [c["source"]["topic"]["code"] for c in cards] == ["jaki-not-checked"]


def test_deucravacitinib_and_oral_ruxolitinib_get_no_not_checked_notice(knowledge):
    [notice] = knowledge.rules.unsupported_notice
    assert knowledge.drugs["deucravacitinib"].category not in notice.categories
    assert knowledge.drugs["ruxolitinib-oral"].category not in notice.categories


def test_oral_ruxolitinib_is_out_of_scope(hook):
    order = draft_order("Jakavi 20 mg", 20, per_day=2, codings=[{"system": RXNORM, "code": "1193347"}])
    assert hook(record([order])) == []


def test_twice_daily_in_text_only_is_read_as_twice_daily_by_the_dose_rules(hook):
    # 65-year-old with AD: upadacitinib is capped at 15 mg daily; "15 mg twice daily" (30 mg) must be caught
    order = draft_order("upadacitinib 15 mg", 15, per_day=None)
    order["dosageInstruction"][0]["text"] = "15 mg twice daily"
    cards = hook([patient(age=65), *full_baseline(age=65), condition("24079001", "Atopic dermatitis"), order])
    assert any(c["indicator"] == "warning" and "15 mg once daily" in c["summary"] for c in cards), \
        [c["summary"] for c in cards]
