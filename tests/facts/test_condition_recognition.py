"""Conditions recognised the way real records code them (decision 16): wide value sets, ICD-10 ranges, the display
text as the last resort (said on the card), and the Child-Pugh class read from Condition.stage.

Each test is what a clinician checks: this patient -> this card, with this evidence line; near misses stay silent.
"""
from __future__ import annotations

import pytest

from cds_service.knowledge.model import CodedConcept, expand_icd10
from fixtures.builders import ICD10, condition, draft_order
from fixtures.scenarios_contraindications import LOCAL, record, staged
from tests.helpers.hooks import alerts, rule_of

UPA = draft_order("upadacitinib 15 mg prolonged-release tablet", 15)
TOFA_5_BID = draft_order("tofacitinib 5 mg tablet", 5, per_day=2)


def fired(cards) -> list[str]:
    return sorted(rule_of(c) for c in alerts(cards))


def card_for(cards, rule: str) -> dict:
    [card] = [c for c in cards if rule_of(c) == rule]
    return card


# -- by code: the codes Synthea and EHRs use -----------------------------------------------------------------------

@pytest.mark.parametrize("evidence", [
    condition("72892002", "Normal pregnancy", onset_days_ago=70),
    condition("79586000", "Tubal pregnancy", onset_days_ago=10),
    condition("Z34.00", "Encounter for supervision of normal first pregnancy, unspecified trimester", system=ICD10),
    condition("Z3A.12", "12 weeks gestation of pregnancy", system=ICD10),
    condition("O09.893", "Supervision of other high risk pregnancies, third trimester", system=ICD10),
    condition("O24.410", "Gestational diabetes mellitus in pregnancy, diet controlled", system=ICD10),
])
def test_pregnancy_as_records_code_it_is_critical(hook, evidence):
    cards = hook(record(age=30, extra=[evidence, UPA]))
    assert fired(cards) == ["pregnancy"]
    assert card_for(cards, "pregnancy")["indicator"] == "critical"


@pytest.mark.parametrize("evidence", [
    condition("19169002", "Miscarriage in first trimester", onset_days_ago=20),
    condition("O24.430", "Gestational diabetes mellitus in the puerperium, diet controlled", system=ICD10),
    condition("O80", "Encounter for full-term uncomplicated delivery", system=ICD10),
    condition("O90.89", "Other complications of the puerperium, not elsewhere classified", system=ICD10),
    condition("72892002", "Normal pregnancy", status="resolved", onset_days_ago=400, abated_days_ago=130),
])
def test_puerperium_delivery_and_past_pregnancy_are_not_pregnancy(hook, evidence):
    assert alerts(hook(record(age=30, extra=[evidence, UPA]))) == []


@pytest.mark.parametrize("cancer", [
    condition("254637007", "Non-small cell lung cancer"),
    condition("254632001", "Small cell carcinoma of lung (disorder)"),
    condition("93761005", "Primary malignant neoplasm of colon"),
    condition("314994000", "Metastasis from malignant tumor of prostate (disorder)"),
    condition("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung", system=ICD10),
    condition("C4A.9", "Merkel cell carcinoma, unspecified", system=ICD10),
    condition("C7B.00", "Secondary carcinoid tumors, unspecified site", system=ICD10),
])
def test_specific_cancers_and_metastases_are_malignancy(hook, cancer):
    cards = hook(record(age=55, extra=[cancer, UPA]))
    assert fired(cards) == ["malignancy-last-5-years", "prac-risk-groups"]


@pytest.mark.parametrize("not_cancer", [
    condition("162573006", "Suspected lung cancer (situation)"),
    condition("92691004", "Carcinoma in situ of prostate (disorder)"),
    condition("126906006", "Neoplasm of prostate"),
    condition("254701007", "Basal cell carcinoma of skin"),
    condition("C44.91", "Basal cell carcinoma of skin, unspecified", system=ICD10),
    condition("D05.10", "Intraductal carcinoma in situ of unspecified breast", system=ICD10),
    condition("Z85.828", "Personal history of other malignant neoplasm of skin", system=ICD10, onset_days_ago=300),
])
def test_nmsc_in_situ_benign_and_suspected_are_not_malignancy(hook, not_cancer):
    assert alerts(hook(record(age=55, extra=[not_cancer, UPA]))) == []


def test_personal_history_code_is_history_counted_by_its_dates(hook):
    recent = condition("Z85.3", "Personal history of malignant neoplasm of breast", system=ICD10, onset_days_ago=700)
    card = card_for(hook(record(extra=[recent, UPA])), "malignancy-last-5-years")
    assert "Personal history of malignant neoplasm of breast (history, since" in card["detail"]
    old = condition("Z85.3", "Personal history of malignant neoplasm of breast", system=ICD10, onset_days_ago=3000)
    assert alerts(hook(record(extra=[old, UPA]))) == []


@pytest.mark.parametrize("factor", [
    condition("59621000", "Essential hypertension (disorder)"),
    condition("38341003", "Hypertension"),
    condition("I10", "Essential (primary) hypertension", system=ICD10),
    condition("368581000119106", "Neuropathy due to type 2 diabetes mellitus (disorder)"),
    condition("E11.9", "Type 2 diabetes mellitus without complications", system=ICD10),
    condition("302870006", "Hypertriglyceridemia (disorder)"),
    condition("399211009", "History of myocardial infarction (situation)", onset_days_ago=3000),
    condition("401303003", "Acute ST segment elevation myocardial infarction (disorder)", status="resolved",
              onset_days_ago=500, abated_days_ago=480),
    condition("706870000", "Acute pulmonary embolism (disorder)", status="resolved", onset_days_ago=900,
              abated_days_ago=800),
])
def test_cardiovascular_and_vte_factors_as_records_code_them(hook, factor):
    cards = hook(record(age=50, extra=[factor, UPA]))
    assert fired(cards) == ["prac-risk-groups"]


@pytest.mark.parametrize("not_a_factor", [
    condition("15777000", "Prediabetes"),
    condition("714628002", "Prediabetes (finding)"),
    condition("R73.03", "Prediabetes", system=ICD10),
    condition("70995007", "Pulmonary hypertension"),
    condition("G45.4", "Transient global amnesia", system=ICD10),
    condition("O24.419", "Gestational diabetes mellitus in pregnancy, unspecified control", system=ICD10,
              status="resolved", onset_days_ago=500, abated_days_ago=400),
])
def test_prediabetes_and_other_near_misses_are_not_factors(hook, not_a_factor):
    assert alerts(hook(record(age=50, extra=[not_a_factor, UPA]))) == []


# -- by name, the last resort -------------------------------------------------------------------------------------

def test_a_cancer_named_under_a_local_code_says_recognised_by_name(hook):
    nsclc = {**condition("ONC-9", "Non-small cell lung cancer", system=LOCAL), "onsetDateTime": "2019-03-01"}
    cards = hook(record(age=60, extra=[nsclc, UPA]))
    assert fired(cards) == ["malignancy-last-5-years", "prac-risk-groups"]
    assert "Non-small cell lung cancer (active, since 2019-03-01; recognised by name)" in \
        card_for(cards, "malignancy-last-5-years")["detail"]
    assert "recognised by name" in card_for(cards, "prac-risk-groups")["detail"]


def test_a_listed_code_is_not_said_to_be_recognised_by_name(hook):
    cards = hook(record(age=60, extra=[condition("254637007", "Non-small cell lung cancer"), UPA]))
    assert "recognised by name" not in card_for(cards, "malignancy-last-5-years")["detail"]


def test_an_unlisted_snomed_code_falls_back_to_its_display(hook):
    # a SNOMED CT code the value set does not list: the display still names the cancer
    cards = hook(record(age=60, extra=[condition("999999999", "Hepatocellular carcinoma"), UPA]))
    assert "Hepatocellular carcinoma (active, since" in card_for(cards, "malignancy-last-5-years")["detail"]


@pytest.mark.parametrize("text,rule", [
    ("Pregnant, 12 weeks", "pregnancy"),
    ("Intrauterine pregnancy", "pregnancy"),
    ("Breastfeeding mother", "breastfeeding"),
    ("Sepsis due to E. coli", "active-serious-infection"),
    ("Herpes zoster, thoracic", "active-serious-infection"),
    ("Decompensated cirrhosis", "severe-hepatic-impairment"),
    ("Pulmonary tuberculosis", "active-tuberculosis"),
])
def test_contraindications_named_under_a_local_code(hook, text, rule):
    cards = hook(record(age=30, extra=[condition("LOC-1", text, system=LOCAL, onset_days_ago=20), UPA]))
    assert fired(cards) == [rule]
    assert card_for(cards, rule)["indicator"] == "critical"
    assert "recognised by name" in card_for(cards, rule)["detail"]


@pytest.mark.parametrize("text", [
    "Family history of breast cancer", "FH of colon cancer", "Suspected lung cancer", "Lung cancer ruled out",
    "Screening for colon cancer", "Fear of cancer", "No evidence of malignancy", "Carcinoma in situ of prostate",
    "Basal cell carcinoma of nose", "Melanoma in situ", "Benign neoplasm of colon", "Metastatic calcification",
    "Pregnancy test negative", "Not pregnant", "Miscarriage", "Postpartum care after pregnancy",
    "History of pregnancy", "Prediabetes", "Pre-diabetes", "Diabetes insipidus", "Pulmonary hypertension",
    "Portal hypertension", "Gestational hypertension", "Risk of stroke", "Heat stroke", "DVT prophylaxis",
    "Superficial thrombophlebitis", "Postherpetic neuralgia", "Herpes zoster vaccination", "Latent tuberculosis",
    "Hepatitis B vaccination", "Hepatitis C antibody positive", "HIV negative", "History of hypertension",
])
def test_near_misses_by_name_stay_silent(hook, text):
    assert alerts(hook(record(age=50, extra=[condition("LOC-2", text, system=LOCAL, onset_days_ago=20), UPA]))) == []


def test_history_of_by_name_is_history_where_history_counts(hook):
    cards = hook(record(age=50, extra=[condition("LOC-3", "History of myocardial infarction", system=LOCAL), UPA]))
    assert fired(cards) == ["prac-risk-groups"]
    assert "History of myocardial infarction (history, since" in card_for(cards, "prac-risk-groups")["detail"]


def test_a_recognised_indication_code_does_not_fall_back_to_text(hook):
    # RA is an indication (recognised by code): its free text is not searched for other concepts
    ra = condition("69896004", "Rheumatoid arthritis with hypertension")
    assert alerts(hook(record(age=50, extra=[ra, UPA]))) == []


# -- Condition.stage: the Child-Pugh class -------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["Child-Pugh C", "Child Pugh class C", "CP-C", "C", "Child-Turcotte-Pugh C10"])
def test_cirrhosis_staged_child_pugh_c_is_critical(hook, stage):
    cards = hook(record(extra=[staged("19943007", "Cirrhosis of liver", stage), UPA]))
    assert fired(cards) == ["severe-hepatic-impairment"]
    card = card_for(cards, "severe-hepatic-impairment")
    assert card["indicator"] == "critical"
    assert "Child-Pugh class C" in card["detail"] and "Cirrhosis of liver" in card["detail"]


def test_cirrhosis_staged_child_pugh_b_reaches_the_tofacitinib_dose_rule(hook):
    cards = hook(record(extra=[staged("K74.60", "Unspecified cirrhosis of liver", "Child-Pugh B", system=ICD10),
                               TOFA_5_BID]))
    assert "tofacitinib-child-pugh-b" in fired(cards)
    assert "cirrhosis-check-child-pugh" not in fired(cards)     # the class is recorded now


@pytest.mark.parametrize("stage", ["Child-Pugh A", "Compensated", "Stage 2"])
def test_other_stages_are_not_child_pugh_c(hook, stage):
    cards = hook(record(extra=[staged("19943007", "Cirrhosis of liver", stage), UPA]))
    assert "severe-hepatic-impairment" not in fired(cards)


def test_cp_b_on_a_condition_that_is_not_liver_disease_is_not_read(hook):
    # "CP" could be cerebral palsy: a bare CP-C counts only on a liver Condition
    palsy = staged("128188000", "Cerebral palsy", "CP-C")
    assert alerts(hook(record(extra=[palsy, UPA]))) == []


def test_a_resolved_condition_stage_is_not_read(hook):
    old = staged("19943007", "Cirrhosis of liver", "Child-Pugh C", status="resolved", abated_days_ago=10)
    assert "severe-hepatic-impairment" not in fired(hook(record(extra=[old, UPA])))


# -- the knowledge: ranges validated at load ------------------------------------------------------------------------

def test_icd10_ranges_expand_to_categories():
    assert expand_icd10("C00-C03") == ["C00", "C01", "C02", "C03"]
    assert expand_icd10("K74.3-K74.6") == ["K74.3", "K74.4", "K74.5", "K74.6"]


@pytest.mark.parametrize("bad", ["C43-C00", "C00-D05", "K74.3-K75.1", "cancer", "C5"])
def test_malformed_icd10_entries_stop_loading(bad):
    with pytest.raises(ValueError):
        CodedConcept(display="x", icd10=[bad])


def test_malignancy_value_set_is_wide_and_leaves_nmsc_out(knowledge):
    assert len(knowledge.concepts["malignancy"].snomed) > 2500
    for nmsc in ("254701007", "254651007", "92691004", "162573006", "126906006"):
        assert "malignancy" not in knowledge.snomed_to_concepts.get(nmsc, [])
    assert "malignancy" not in knowledge.icd10_to_concepts.get("C44", [])


# -- decision 19: biologics for atopic disease; decision 20: oestrogen-containing hormones only --------------------

def test_active_dupilumab_is_a_warning_to_switch_not_the_critical_biologic_card(hook):
    from fixtures.builders import ATC, medication_request
    dupilumab = medication_request("Dupixent 300 mg pre-filled pen", codings=[{"system": ATC, "code": "D11AH05"}],
                                   authored_days_ago=60)
    cards = hook(record(extra=[dupilumab, UPA]))
    assert fired(cards) == ["atopic-biologic-combination"]
    card = card_for(cards, "atopic-biologic-combination")
    assert card["indicator"] == "warning" and "Dupixent 300 mg pre-filled pen" in card["detail"]
    assert "switch" in card["detail"]


@pytest.mark.parametrize("text", ["tralokinumab 150 mg", "Ebglyss (lebrikizumab) 250 mg", "Nemluvio 30 mg",
                                  "Xolair 150 mg"])
def test_other_atopic_biologics_by_name(hook, text):
    from fixtures.scenarios_contraindications import statement
    assert fired(hook(record(extra=[statement(text), UPA]))) == ["atopic-biologic-combination"]


@pytest.mark.parametrize("code,text", [
    ("748856", "Yaz 28 Day Pack"), ("751905", "Trinessa 28 Day Pack"), ("749762", "Seasonique 91 Day Pack"),
    ("1367439", "NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring"),
    ("1534809", "168 HR Ethinyl Estradiol 0.00146 MG/HR / norelgestromin 0.00625 MG/HR Transdermal System"),
    ("235389", "Mestranol / Norethynodrel [Enovid]"),
])
def test_oestrogen_containing_contraceptives_are_a_vte_factor(hook, code, text):
    from fixtures.builders import RXNORM, medication_request
    pill = medication_request(text, codings=[{"system": RXNORM, "code": code}], authored_days_ago=60)
    cards = hook(record(age=28, extra=[pill, UPA]))
    assert fired(cards) == ["prac-risk-groups"]
    assert text in card_for(cards, "prac-risk-groups")["detail"]


@pytest.mark.parametrize("code,text", [
    ("748962", "Camila 28 Day Pack"), ("757594", "Jolivette 28 Day Pack"), ("831533", "Errin 28 Day Pack"),
    ("807283", "Mirena 52 MG Intrauterine System"), ("1605257", "Liletta 52 MG Intrauterine System"),
    ("1856546", "Kyleena 19.5 MG Intrauterine System"), ("389221", "Etonogestrel 68 MG Drug Implant"),
    ("1000126", "1 ML medroxyprogesterone acetate 150 MG/ML Injection"),
])
def test_progestogen_only_methods_are_not_a_vte_factor(hook, code, text):
    from fixtures.builders import RXNORM, medication_request
    method = medication_request(text, codings=[{"system": RXNORM, "code": code}], authored_days_ago=60)
    assert alerts(hook(record(age=28, extra=[method, UPA]))) == []


def test_local_vaginal_oestrogen_is_not_a_vte_factor(hook):
    from fixtures.builders import medication_request
    cream = medication_request("Estradiol 0.1 MG/GM Vaginal Cream", authored_days_ago=60)
    assert alerts(hook(record(age=55, extra=[cream, UPA]))) == []


# -- recent major surgery (decision 7; finding 24) -------------------------------------------------------------------

def test_hip_replacement_30_days_ago_is_a_vte_factor_with_its_date(hook):
    from fixtures.builders import procedure
    cards = hook(record(age=58, extra=[procedure("52734007", "Total replacement of hip", 30), UPA]))
    card = card_for(cards, "prac-risk-groups")
    assert "recent major surgery" in card["summary"]
    assert "Total replacement of hip (SNOMED CT 52734007) on 2026-10-02, 30 days ago" in card["detail"]
    assert "procedures are not retrieved" not in card["detail"]        # no longer said to be unchecked


@pytest.mark.parametrize("code,text,days", [
    ("52734007", "Total replacement of hip", 200),        # too long ago
    ("65575008", "Biopsy of prostate", 1),                # minor
    ("76601001", "Intramuscular injection", 1),           # not surgery
])
def test_old_or_minor_procedures_are_not_a_vte_factor(hook, code, text, days):
    from fixtures.builders import procedure
    assert alerts(hook(record(age=58, extra=[procedure(code, text, days), UPA]))) == []


def test_a_procedure_list_that_could_not_be_obtained_is_said(hook):
    from cds_service.record.services import default_templates
    keys = [k for k in default_templates() if not k.startswith("procedures")]
    cards = hook(record(age=45, extra=[UPA]), prefetch=keys)       # no procedures key and no fhirServer
    [gap] = [c for c in alerts(cards) if rule_of(c) == "missing-data"]
    assert "recent major surgery" in gap["detail"]
    # with another factor on record, the PRAC card says it
    cards = hook(record(age=70, extra=[UPA]), prefetch=keys)
    assert "recent major surgery (last 90 days): the procedure list could not be obtained" in \
        card_for(cards, "prac-risk-groups")["detail"]
