"""Off-label use (decision 13) and positioning (S000 condition 5): this patient -> this info card."""
from fixtures.builders import (
    ICD10,
    SNOMED,
    condition,
    draft_order,
    full_baseline,
    medication_request,
    patient,
)
from fixtures.scenarios_offlabel import medication_statement
from tests.helpers.hooks import rule_of

OFFLABEL = "offlabel-indication"
POSITIONING = "ad-no-prior-conventional-systemic"
DM = condition("396230008", "Dermatomyositis")
RA = condition("69896004", "Rheumatoid arthritis")
AD = condition("24079001", "Atopic dermatitis")


def record(age=45, sex="female", extra=()):
    return [patient(age=age, sex=sex), *full_baseline(sex=sex, age=age), *extra]


def cards_for(hook, rule_id, resources, **kwargs):
    return [c for c in hook(resources, **kwargs) if rule_of(c) == rule_id]


# -- off-label -------------------------------------------------------------------------------------------------

def test_baricitinib_for_dermatomyositis_on_record_is_an_off_label_info_card_with_the_s003_evidence(hook):
    [card] = cards_for(hook, OFFLABEL, record(extra=[DM, draft_order("baricitinib 4 mg", 4)]))
    assert card["indicator"] == "info"
    assert "overrideReasons" not in card           # information, nothing to override
    assert card["summary"] == "Baricitinib for dermatomyositis is off-label"
    assert "open-label study (n=12)" in card["detail"] and "2 mg twice daily" in card["detail"]
    assert "No order reason given" in card["detail"]
    assert "rheumatoid arthritis, atopic dermatitis, alopecia areata" in card["detail"]   # approved (EU)
    assert any("pubmed" in link["url"] for link in card["links"])                      # S003 cited


def test_an_approved_indication_on_record_means_no_off_label_card(hook):
    assert cards_for(hook, OFFLABEL, record(extra=[RA, DM, draft_order("baricitinib 4 mg", 4)])) == []


def test_upadacitinib_for_hidradenitis_by_snomed_reason(hook):
    order = draft_order("upadacitinib 15 mg", 15, reason=(SNOMED, "59393003", "Hidradenitis suppurativa"))
    [card] = cards_for(hook, OFFLABEL, record(extra=[order]))
    assert "hidradenitis suppurativa" in card["summary"]
    assert "retrospective study (n=20)" in card["detail"] and "15 mg daily" in card["detail"]
    assert "HiSCR50 in 100% at week 12" in card["detail"]
    assert "**Ordered:** 15 mg once daily" in card["detail"]
    assert "**Order reason:**" in card["detail"]


def test_the_same_reason_in_icd10_gives_the_same_card(hook):
    order = draft_order("upadacitinib 15 mg", 15, reason=(ICD10, "L73.2", "Hidradenitis suppurativa"))
    [card] = cards_for(hook, OFFLABEL, record(extra=[order]))
    assert "retrospective study (n=20)" in card["detail"]


def test_upadacitinib_for_dermatomyositis_by_reason_reference_cites_s002(hook):
    dm = condition("396230008", "Dermatomyositis")
    order = draft_order("Rinvoq 15 mg", 15)
    order["reasonReference"] = [{"reference": f"Condition/{dm['id']}"}]
    [card] = cards_for(hook, OFFLABEL, record(extra=[dm, order]))
    assert "n=10" in card["detail"] and "9 of 10 remained on upadacitinib" in card["detail"]
    assert "3 had prior tofacitinib" in card["detail"]
    assert any("rmdopen-2023-003837" in link["url"] for link in card["links"])       # S002


def test_a_reason_reference_to_a_condition_entered_in_error_names_no_indication(hook):
    dm = condition("396230008", "Dermatomyositis")
    dm["verificationStatus"]["coding"][0]["code"] = "entered-in-error"
    order = draft_order("Rinvoq 15 mg", 15)
    order["reasonReference"] = [{"reference": f"Condition/{dm['id']}"}]
    assert cards_for(hook, OFFLABEL, record(extra=[dm, order])) == []       # not "for dermatomyositis"


def test_a_malformed_reason_reference_is_passed_over_not_a_server_error(hook):
    dm = condition("396230008", "Dermatomyositis")
    order = draft_order("Rinvoq 15 mg", 15)
    order["reasonReference"] = ["Condition/x", {"reference": f"Condition/{dm['id']}"}]
    [card] = cards_for(hook, OFFLABEL, record(extra=[dm, order]))
    assert "dermatomyositis" in card["summary"].lower()


def test_an_approved_order_reason_wins_over_an_off_label_condition_on_record(hook):
    order = draft_order("upadacitinib 15 mg", 15, reason=(SNOMED, "24079001", "Atopic dermatitis"))
    assert cards_for(hook, OFFLABEL, record(extra=[DM, order])) == []


def test_off_label_reason_without_evidence_entry_still_says_off_label(hook):
    order = draft_order("tofacitinib 5 mg", 5, per_day=2, reason=(ICD10, "L80", "Vitiligo"))
    [card] = cards_for(hook, OFFLABEL, record(extra=[order]))
    assert card["summary"] == "Tofacitinib for vitiligo is off-label"
    assert "No evidence summary for this use in our sources" in card["detail"]


def test_without_a_reason_a_condition_without_evidence_is_not_called_off_label(hook):
    # the patient may have an approved indication that is not coded; only an evidence entry justifies the note
    vitiligo = condition("56727007", "Vitiligo")
    assert cards_for(hook, OFFLABEL, record(extra=[vitiligo, draft_order("tofacitinib 5 mg", 5, per_day=2)])) == []


def test_an_unrecognised_reason_says_nothing(hook):
    order = draft_order("baricitinib 4 mg", 4, reason=(SNOMED, "200000001", "Some other condition"))
    assert cards_for(hook, OFFLABEL, record(extra=[DM, order])) == []


def test_a_resolved_condition_is_not_used(hook):
    resolved = condition("396230008", "Dermatomyositis", status="resolved", abated_days_ago=300)
    assert cards_for(hook, OFFLABEL, record(extra=[resolved, draft_order("baricitinib 4 mg", 4)])) == []


def test_two_off_label_reasons_give_one_card_listing_both(hook):
    order = draft_order("baricitinib 4 mg", 4, reason=(SNOMED, "396230008", "Dermatomyositis"))
    order["reasonCode"].append({"coding": [{"system": SNOMED, "code": "9014002", "display": "Psoriasis"}]})
    [card] = cards_for(hook, OFFLABEL, record(extra=[order]))
    assert "dermatomyositis / psoriasis" in card["summary"]
    assert "phase 2b randomised controlled trial" in card["detail"] and "open-label study (n=12)" in card["detail"]


def test_topical_ruxolitinib_gets_no_off_label_card(hook):
    order = draft_order("Opzelura 1.5% cream", None, per_day=2, route=("6064005", "Topical route"),
                        reason=(SNOMED, "9014002", "Psoriasis"))
    assert hook(record(extra=[order])) == []


def test_every_off_label_evidence_entry_names_a_source_and_an_unapproved_indication(knowledge):
    for entry in knowledge.rules.offlabel_evidence:
        assert entry.indication not in knowledge.drugs[entry.drug].indications, entry.id
        assert entry.sources and entry.evidence
    dm_upa = [e for e in knowledge.rules.offlabel_evidence if e.id == "offlabel-upadacitinib-dermatomyositis"]
    assert dm_upa and dm_upa[0].sources == ["S002"] and dm_upa[0].n == 10


# -- positioning ---------------------------------------------------------------------------------------------

def test_adult_ad_without_prior_conventional_systemic_therapy_gets_the_positioning_note(hook):
    [card] = cards_for(hook, POSITIONING, record(extra=[AD, draft_order("upadacitinib 15 mg", 15)]))
    assert card["indicator"] == "info"
    assert "no ciclosporin, azathioprine, methotrexate" in card["detail"]
    assert "at least 4 months" in card["detail"]
    assert "nvdv" in card["source"]["url"]


def test_completed_methotrexate_statement_counts_as_prior_therapy(hook):
    mtx = medication_statement("methotrexate 15 mg weekly", atc="L04AX03")
    assert cards_for(hook, POSITIONING, record(extra=[AD, mtx, draft_order("upadacitinib 15 mg", 15)])) == []


def test_methotrexate_by_the_antineoplastic_atc_code_and_no_text_counts(hook):
    mtx = medication_statement("MTX", atc="L01BA01")
    assert cards_for(hook, POSITIONING, record(extra=[AD, mtx, draft_order("upadacitinib 15 mg", 15)])) == []


def test_stopped_ciclosporin_order_by_name_counts(hook):
    csa = medication_request("Neoral (ciclosporin) 100 mg capsule", dose_mg=150, per_day=2, status="stopped",
                             authored_days_ago=600, rid="mr-csa")
    assert cards_for(hook, POSITIONING, record(extra=[AD, csa, draft_order("baricitinib 4 mg", 4)])) == []


def test_ciclosporin_eye_drops_are_not_systemic_therapy(hook):
    drops = medication_statement("ciclosporin 0.1% eye drops", atc="S01XA18", status="active", end_days_ago=None)
    assert len(cards_for(hook, POSITIONING, record(extra=[AD, drops, draft_order("Cibinqo 100 mg", 100)]))) == 1


def test_abrocitinib_note_says_it_is_included_by_analogy(hook):
    [card] = cards_for(hook, POSITIONING, record(extra=[AD, draft_order("Cibinqo 100 mg", 100)]))
    assert "by analogy" in card["detail"]


def test_age_17_is_a_near_miss_and_18_triggers(hook):
    order = draft_order("upadacitinib 15 mg", 15)
    assert cards_for(hook, POSITIONING, record(age=17, extra=[AD, order])) == []
    assert len(cards_for(hook, POSITIONING, record(age=18, extra=[AD, order]))) == 1


def test_other_indication_gets_no_positioning_note(hook):
    assert cards_for(hook, POSITIONING, record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])) == []


def test_unobtainable_medication_history_is_said_not_read_as_no_prior_therapy(hook):
    keys = ["patient", "haematology", "chemistry", "screening", "vitals", "conditions", "immunizations", "allergies"]
    [card] = cards_for(hook, POSITIONING, record(extra=[AD, draft_order("upadacitinib 15 mg", 15)]), prefetch=keys)
    assert "Medication history could not be obtained" in card["detail"]
    assert "no ciclosporin" not in card["detail"]


def test_a_renewal_for_a_patient_already_on_the_drug_gets_no_positioning_note(hook):
    current = medication_request("upadacitinib 15 mg", dose_mg=15, status="active", authored_days_ago=200,
                                 rid="mr-current")
    assert cards_for(hook, POSITIONING, record(extra=[AD, current, draft_order("upadacitinib 15 mg", 15)])) == []
    # a stopped earlier JAK inhibitor is not "already on": the note still applies
    stopped = medication_request("upadacitinib 15 mg", dose_mg=15, status="stopped", authored_days_ago=400,
                                 rid="mr-old")
    assert len(cards_for(hook, POSITIONING, record(extra=[AD, stopped, draft_order("upadacitinib 15 mg", 15)]))) == 1


def test_tofacitinib_for_dermatomyositis_says_the_studies_are_only_cited(hook):
    order = draft_order("tofacitinib 5 mg", 5, per_day=2, reason=(SNOMED, "396230008", "Dermatomyositis"))
    [card] = cards_for(hook, OFFLABEL, record(extra=[order]))
    assert "open-label pilot study of 10 patients" in card["detail"]
    assert "not summarised in our sources" in card["detail"]
    assert "**Ordered:** 5 mg twice daily" in card["detail"]


def test_a_single_reason_object_instead_of_a_list_is_read(hook):
    order = draft_order("upadacitinib 15 mg", 15)
    order["reasonCode"] = {"coding": [{"system": SNOMED, "code": "59393003", "display": "Hidradenitis suppurativa"}]}
    [card] = cards_for(hook, OFFLABEL, record(extra=[order]))
    assert "hidradenitis suppurativa" in card["summary"]
