"""Screening results read before a JAK inhibitor starts (decisions 5, 15, 21; review findings 6, 7, 19, 21).

What a clinician checks: this patient -> this card, with the result, its date and what to do; near misses stay
silent; a result that cannot be read is said, never taken as negative.
"""
from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from cds_service.knowledge.schemas.infections import TreatmentClass
from cds_service.knowledge.schemas.results import QuantityReading
from fixtures import scenarios_infections as scenarios
from fixtures.builders import ICD10, condition
from fixtures.scenarios_infections import (
    DETECTED,
    INDETERMINATE,
    ISONIAZID,
    NEGATIVE,
    NOT_DETECTED,
    POSITIVE,
    record,
)
from tests.helpers.hooks import alerts, rule_of

IGRA, QFT, TST = "71773-6", "46217-6", "1648-5"
HBSAG, ANTI_HBC, HBV_DNA = "5196-1", "16933-4", "42595-9"
HCV_AB, HCV_RNA = "16128-1", "11011-4"
HIV_SCREEN, HIV_RNA = "56888-1", "20447-9"


_own = itertools.count(1)


def own(resource: dict) -> dict:
    """The resource with an id of its own: test parameters are built at collection time, and the fixture generator
    restarts the builders' id counter, so a shared id could make the prefetch index drop one of two resources."""
    return {**resource, "id": f"test-inf-{next(_own)}"}


def coded(*args, **kwargs):
    return own(scenarios.coded(*args, **kwargs))


def number(*args, **kwargs):
    return own(scenarios.number(*args, **kwargs))


def text(*args, **kwargs):
    return own(scenarios.text(*args, **kwargs))


def statement(*args, **kwargs):
    return own(scenarios.statement(*args, **kwargs))


def prescription(*args, **kwargs):
    return own(scenarios.prescription(*args, **kwargs))


UPA, BARI = scenarios.UPA, scenarios.BARI          # the draft orders ("draft-1": the draft of every call)
HIV, BIKTARVY, PAST_JAKI = own(scenarios.HIV), own(scenarios.BIKTARVY), own(scenarios.PAST_JAKI)


def fired(cards) -> list[str]:
    return sorted(rule_of(c) for c in alerts(cards))


def card(cards, rule: str) -> dict:
    [found] = [c for c in cards if rule_of(c) == rule]
    return found


# -- latent tuberculosis -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("result", [
    coded(IGRA, POSITIVE, 30),
    text(IGRA, "Positive", 30),
    text(IGRA, "see report", 30, interpretation="POS"),
    coded(IGRA, ("http://loinc.org", "LA6576-8", "Positive"), 30),
    number(QFT, 1.4, "[IU]/mL", 30, interpretation="POS"),
    number(TST, 12, "mm", 30),
    number(TST, 0.6, "cm", 30),
    text(TST, "8 mm", 30),
])
def test_a_positive_igra_or_skin_test_without_preventive_treatment_is_latent_tb(hook, result):
    cards = hook(record(drop=[IGRA], extra=[result, UPA]))
    assert fired(cards) == ["latent-tuberculosis"]
    found = card(cards, "latent-tuberculosis")
    assert found["indicator"] == "warning"
    assert found["summary"] == "Latent tuberculosis: treat before starting upadacitinib"
    assert result["effectiveDateTime"][:10] in found["detail"]
    assert "No TB preventive treatment (isoniazid, rifapentine, rifampicin) on record." in found["detail"]


@pytest.mark.parametrize("result", [coded(IGRA, NEGATIVE, 30), number(TST, 4, "mm", 30), text(TST, "0 mm", 30),
                                    number(QFT, 0.05, "[IU]/mL", 30, interpretation="NEG")])
def test_a_negative_current_igra_or_skin_test_gives_no_card(hook, result):
    assert hook(record(drop=[IGRA], extra=[result, UPA])) == []


def test_completed_preventive_treatment_after_the_positive_test_silences_the_warning(hook):
    positive = coded(IGRA, POSITIVE, 400)
    for treatment in (prescription(ISONIAZID, atc="J04AC01", status="completed", days_ago=380),
                      statement("Rifinah 300/150 (rifampicin + isoniazid)", status="completed", start_days_ago=390,
                                end_days_ago=300),
                      statement("rifapentine + isoniazid weekly (3HP)", atc="J04AB05", status="completed",
                                start_days_ago=395, end_days_ago=310)):
        assert hook(record(drop=[IGRA], extra=[positive, treatment, UPA])) == []


@pytest.mark.parametrize("treatment, said", [
    (prescription(ISONIAZID, atc="J04AC01", status="stopped", days_ago=100), "'stopped' means halted"),
    (statement("isoniazid 300 mg", start_days_ago=20), "preventive treatment in progress"),
    (prescription(ISONIAZID, atc="J04AC01", status="completed", days_ago=2000), "completed before the positive result"),
])
def test_treatment_that_is_not_a_completed_course_after_the_test_keeps_the_warning_and_says_why(hook, treatment, said):
    cards = hook(record(drop=[IGRA], extra=[coded(IGRA, POSITIVE, 120), treatment, UPA]))
    assert fired(cards) == ["latent-tuberculosis"]
    assert said in card(cards, "latent-tuberculosis")["detail"]


def test_a_positive_igra_is_not_undone_by_a_later_negative_but_a_skin_test_confirmed_negative_is(hook):
    cards = hook(record(drop=[IGRA], extra=[coded(IGRA, POSITIVE, 300), coded(IGRA, NEGATIVE, 10), UPA]))
    assert fired(cards) == ["latent-tuberculosis"]
    assert "does not undo a positive IGRA" in card(cards, "latent-tuberculosis")["detail"]
    assert hook(record(drop=[IGRA], extra=[number(TST, 11, "mm", 200), coded(IGRA, NEGATIVE, 20), UPA])) == []


def test_treatment_counts_from_the_first_positive_of_a_run(hook):
    """TST positive in 2023, isoniazid completed after it, IGRA positive again now: treated, no card."""
    resources = [number(TST, 15, "mm", 1200), prescription(ISONIAZID, atc="J04AC01", status="completed",
                                                           days_ago=1150), coded(IGRA, POSITIVE, 30), UPA]
    assert hook(record(drop=[IGRA], extra=resources)) == []


def test_a_latent_tb_diagnosis_counts_and_a_resolved_one_after_the_positive_test_means_treated(hook):
    latent = condition("Z22.7", "Latent tuberculosis", system=ICD10, onset_days_ago=200)
    cards = hook(record(extra=[latent, UPA]))
    assert fired(cards) == ["latent-tuberculosis"]
    assert "Latent tuberculosis (diagnosis, active" in card(cards, "latent-tuberculosis")["detail"]
    resolved = condition("Z22.7", "Latent tuberculosis", system=ICD10, status="resolved", onset_days_ago=400,
                         abated_days_ago=100)
    assert hook(record(drop=[IGRA], extra=[coded(IGRA, POSITIVE, 400), resolved, UPA])) == []


def test_active_tuberculosis_shows_only_the_critical_card(hook):
    active = condition("A15.0", "Tuberculosis of lung", system=ICD10, onset_days_ago=10)
    assert fired(hook(record(drop=[IGRA], extra=[active, coded(IGRA, POSITIVE, 15), UPA]))) == ["active-tuberculosis"]


def test_latent_tb_is_said_on_a_repeat_order_too(hook):
    assert fired(hook(record(drop=[IGRA], extra=[coded(IGRA, POSITIVE, 100), PAST_JAKI, UPA]))) == [
        "latent-tuberculosis"]


def test_an_indeterminate_igra_asks_for_a_repeat_while_it_is_current(hook):
    cards = hook(record(drop=[IGRA], extra=[coded(IGRA, INDETERMINATE, 20), UPA]))
    assert fired(cards) == ["tb-screen-indeterminate"]
    assert card(cards, "tb-screen-indeterminate")["summary"] == \
        "Indeterminate TB screening test: repeat it before starting upadacitinib"
    old = hook(record(drop=[IGRA], extra=[coded(IGRA, INDETERMINATE, 200), UPA]))
    assert fired(old) == ["baseline-screening"]          # now simply out of date: the checklist orders an IGRA


@pytest.mark.parametrize("result, said", [
    (text(IGRA, "see report", 10), "'see report'"),
    (number(QFT, 0.2, "[IU]/mL", 10), "without an interpretation"),
    (number(TST, 12, "furlong", 10), "not a recognised unit"),
])
def test_a_tb_result_that_cannot_be_read_is_said_never_negative(hook, result, said):
    cards = hook(record(drop=[IGRA], extra=[result, UPA]))
    assert fired(cards) == ["missing-data"]
    assert said in card(cards, "missing-data")["detail"]


def test_a_quantiferon_report_with_its_interpretation_and_bare_numbers_is_read_from_the_interpretation(hook):
    same_day = [coded(IGRA, NEGATIVE, 10), number(QFT, 0.03, "[IU]/mL", 10)]
    assert hook(record(drop=[IGRA], extra=[*same_day, UPA])) == []


def test_an_igra_panel_that_only_lists_its_members_is_not_an_unreadable_result(hook):
    panel = {**text("71775-1", "x", 5)}          # newer than the member results of the baseline (10 days)
    del panel["valueString"]
    panel["hasMember"] = [{"reference": "Observation/member"}]
    assert hook(record(extra=[panel, UPA])) == []


def test_unobtainable_medications_are_said_on_the_latent_tb_card(hook, templates):
    keys = [k for k in templates if k not in ("medications", "statements")]
    cards = hook(record(drop=[IGRA], extra=[coded(IGRA, POSITIVE, 30), UPA]), prefetch=keys)
    assert "The medication list could not be obtained" in card(cards, "latent-tuberculosis")["detail"]


# -- hepatitis B core antibody -------------------------------------------------------------------------------------

def test_anti_hbc_positive_with_hbsag_negative_asks_for_hbv_dna(hook):
    cards = hook(record(drop=[ANTI_HBC], extra=[coded(ANTI_HBC, POSITIVE, 10), BARI]))
    assert fired(cards) == ["hbv-core-antibody"]
    found = card(cards, "hbv-core-antibody")
    assert found["summary"] == "Hepatitis B core antibody positive: check HBV DNA before starting baricitinib"
    for said in ("hepatitis B surface antigen (HBsAg): Negative", "No readable HBV DNA result on record.",
                 "baricitinib SmPC: monitor HBV DNA", "consult a liver specialist"):
        assert said in found["detail"]


def test_anti_hbc_positive_without_an_hbsag_result_says_so(hook):
    cards = hook(record(drop=[ANTI_HBC, HBSAG], extra=[coded(ANTI_HBC, POSITIVE, 10), UPA]))
    assert "HBsAg: no readable result on record: check HBsAg too" in card(cards, "hbv-core-antibody")["detail"]


@pytest.mark.parametrize("dna", [number(HBV_DNA, 10, "[IU]/mL", 30, comparator="<"),
                                 coded("29610-3", NOT_DETECTED, 30), text(HBV_DNA, "Not detected", 30),
                                 text(HBV_DNA, "<20 IU/mL", 30)])
def test_hbv_dna_not_detected_keeps_a_monitoring_warning(hook, dna):
    cards = hook(record(drop=[ANTI_HBC], extra=[coded(ANTI_HBC, POSITIVE, 40), dna, UPA]))
    assert fired(cards) == ["hbv-core-antibody-dna-not-detected"]
    found = card(cards, "hbv-core-antibody-dna-not-detected")
    assert found["indicator"] == "warning" and "monitor HBV DNA during treatment" in found["detail"]


@pytest.mark.parametrize("dna", [number(HBV_DNA, 850, "[IU]/mL", 20), coded("29610-3", DETECTED, 20),
                                 number(HBV_DNA, 2.5, "log[IU]/mL", 20)])
def test_detectable_hbv_dna_is_active_hepatitis_b_critical(hook, dna):
    cards = hook(record(drop=[ANTI_HBC], extra=[coded(ANTI_HBC, POSITIVE, 40), dna, UPA]))
    assert fired(cards) == ["hepatitis-b"]
    assert card(cards, "hepatitis-b")["indicator"] == "critical"


def test_hbsag_positive_stays_critical_and_replaces_the_core_antibody_warning(hook):
    cards = hook(record(drop=[HBSAG, ANTI_HBC], extra=[coded(HBSAG, POSITIVE, 10), coded(ANTI_HBC, POSITIVE, 10), UPA]))
    assert fired(cards) == ["hepatitis-b"]


def test_hbv_dna_in_copies_is_said_not_read(hook):
    dna = number("29615-2", 300, "{copies}/mL", 20)
    cards = hook(record(drop=[ANTI_HBC], extra=[coded(ANTI_HBC, POSITIVE, 40), dna, UPA]))
    assert fired(cards) == ["hbv-core-antibody"]
    assert "could not be read" in card(cards, "hbv-core-antibody")["detail"]


def test_an_old_hbv_dna_is_repeated(hook):
    cards = hook(record(drop=[ANTI_HBC], extra=[coded(ANTI_HBC, POSITIVE, 320), coded("29610-3", NOT_DETECTED, 300),
                                               UPA]))
    assert "older than 182 days, repeat it before starting" in card(cards, "hbv-core-antibody")["detail"]


# -- hepatitis C -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rna", [number(HCV_RNA, 120000, "[IU]/mL", 20), coded("11259-9", DETECTED, 20),
                                 number("38180-6", 5.1, "log[IU]/mL", 20)])
def test_hcv_rna_detected_is_active_hepatitis_c_critical(hook, rna):
    cards = hook(record(drop=[HCV_AB], extra=[coded(HCV_AB, POSITIVE, 40), rna, UPA]))
    assert fired(cards) == ["hepatitis-c"]


@pytest.mark.parametrize("rna", [coded("11259-9", NOT_DETECTED, 150), number(HCV_RNA, 15, "[IU]/mL", 150, comparator="<"),
                                 text(HCV_RNA, "Target not detected", 150)])
def test_hcv_rna_not_detected_after_the_antibody_means_cleared_no_card(hook, rna):
    assert hook(record(drop=[HCV_AB], extra=[coded(HCV_AB, POSITIVE, 200), rna, UPA])) == []


def test_hcv_rna_from_before_the_positive_antibody_does_not_count(hook):
    cards = hook(record(drop=[HCV_AB], extra=[coded("11259-9", NOT_DETECTED, 400), coded(HCV_AB, POSITIVE, 20), UPA]))
    assert fired(cards) == ["hcv-antibody-positive"]
    assert "before the positive antibody" in card(cards, "hcv-antibody-positive")["detail"]


def test_an_unreadable_hcv_rna_is_said_on_the_warning_not_on_a_second_card(hook):
    cards = hook(record(drop=[HCV_AB], extra=[coded(HCV_AB, POSITIVE, 60), text(HCV_RNA, "pending", 20), UPA]))
    assert fired(cards) == ["hcv-antibody-positive"]
    assert "could not be read (pending" in card(cards, "hcv-antibody-positive")["detail"]


# -- HIV (decision 21) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("load", [
    number(HIV_RNA, 20, "{copies}/mL", 60, comparator="<"),
    number(HIV_RNA, 40, "copies/mL", 60, comparator="<", ucum=False),
    number(HIV_RNA, 23, "{copies}/mL", 60),
    number(HIV_RNA, 0, "{copies}/mL", 60),
    text(HIV_RNA, "Not detected", 60),
    text(HIV_RNA, "<20 copies/mL", 60),
    text(HIV_RNA, "see comment", 60, interpretation="ND"),
    coded(HIV_RNA, NOT_DETECTED, 60),
    number("29541-0", 1.2, "{Log_copies}/mL", 60),
])
def test_treated_hiv_with_a_suppressed_load_is_a_warning_not_critical(hook, load):
    cards = hook(record(extra=[HIV, BIKTARVY, load, UPA]))
    assert fired(cards) == ["hiv-treated-suppressed"]
    found = card(cards, "hiv-treated-suppressed")
    assert found["indicator"] == "warning" and "Biktarvy" in found["detail"]


@pytest.mark.parametrize("load", [number(HIV_RNA, 75, "{copies}/mL", 30), number(HIV_RNA, 1200, "{copies}/mL", 30),
                                  number("29541-0", 3.0, "{Log_copies}/mL", 30), coded(HIV_RNA, DETECTED, 30),
                                  number(HIV_RNA, 1000000, "{copies}/mL", 30, comparator=">")])
def test_treated_hiv_with_a_detectable_load_is_critical(hook, load):
    cards = hook(record(extra=[HIV, BIKTARVY, load, UPA]))
    assert fired(cards) == ["hiv-viral-load-detectable"]
    assert card(cards, "hiv-viral-load-detectable")["indicator"] == "critical"


@pytest.mark.parametrize("load, said", [
    (None, "No HIV-1 RNA (viral load) in the last 182 days on record."),
    (number(HIV_RNA, 20, "{copies}/mL", 400, comparator="<"), "(latest: HIV-1 RNA (viral load): <20 copies/mL"),
    (number(HIV_RNA, 200, "{copies}/mL", 30, comparator="<"), "not readable as suppressed or detectable"),
    (number(HIV_RNA, 30, "[IU]/mL", 30), "could not be read"),
])
def test_treated_hiv_without_a_current_readable_load_is_a_warning_that_says_why(hook, load, said):
    cards = hook(record(extra=[HIV, BIKTARVY, *([load] if load else []), UPA]))
    assert fired(cards) == ["hiv-viral-load-not-checked"]
    found = card(cards, "hiv-viral-load-not-checked")
    assert found["summary"] == ("Treated HIV: no HIV viral load in the last 182 days, control not checked before "
                                "upadacitinib")
    assert said in found["detail"]


@pytest.mark.parametrize("art", [
    None,
    prescription("Biktarvy 50/200/25 mg tablet", atc="J05AR20", status="stopped", days_ago=400),
    prescription("Paxlovid (nirmatrelvir/ritonavir)", atc="J05AE30", days_ago=3),
    prescription("Vemlidy 25 mg (tenofovir alafenamide) for hepatitis B", days_ago=300),
])
def test_hiv_without_active_antiretroviral_therapy_is_critical_even_with_a_suppressed_load(hook, art):
    load = number(HIV_RNA, 20, "{copies}/mL", 30, comparator="<")
    cards = hook(record(extra=[HIV, *([art] if art else []), load, UPA]))
    assert fired(cards) == ["hiv"]
    assert "No active antiretroviral therapy on record." in card(cards, "hiv")["detail"]


@pytest.mark.parametrize("art", [statement("Triumeq (dolutegravir/abacavir/lamivudine)"),
                                 prescription("ART regimen", atc="J05AJ03"),
                                 prescription("darunavir 800 mg + ritonavir 100 mg")])
def test_antiretrovirals_are_recognised_by_atc_or_name(hook, art):
    load = number(HIV_RNA, 20, "{copies}/mL", 30, comparator="<")
    assert fired(hook(record(extra=[HIV, art, load, UPA]))) == ["hiv-treated-suppressed"]


def test_a_detectable_load_without_a_diagnosis_is_hiv_infection(hook):
    cards = hook(record(extra=[number(HIV_RNA, 5000, "{copies}/mL", 20), UPA]))
    assert fired(cards) == ["hiv"]
    assert "HIV infection shown by a detectable viral load" in card(cards, "hiv")["detail"]


def test_unobtainable_medications_leave_hiv_critical_and_say_so(hook, templates):
    keys = [k for k in templates if k not in ("medications", "statements")]
    cards = hook(record(extra=[HIV, BIKTARVY, number(HIV_RNA, 20, "{copies}/mL", 30, comparator="<"), UPA]),
                 prefetch=keys)
    assert "hiv" in fired(cards)
    assert "The medication list could not be obtained" in card(cards, "hiv")["detail"]


def test_a_reactive_screen_asks_for_confirmation_unless_hiv_is_known(hook):
    screen = coded(HIV_SCREEN, POSITIVE, 10)
    assert fired(hook(record(drop=[HIV_SCREEN], extra=[screen, UPA]))) == ["hiv-screen-positive"]
    known = hook(record(drop=[HIV_SCREEN], extra=[HIV, BIKTARVY, screen, text(HIV_RNA, "Not detected", 10), UPA]))
    assert fired(known) == ["hiv-treated-suppressed"]


def test_a_patient_without_hiv_gets_no_hiv_card_whatever_the_medicines(hook):
    prep = prescription("Truvada 200/245 mg (PrEP)", atc="J05AR03", days_ago=100)
    assert hook(record(extra=[prep, UPA])) == []


# -- knowledge -----------------------------------------------------------------------------------------------

def test_the_prefetch_asks_for_every_new_code(templates):
    asked = " ".join(templates.values())
    for code in ("1648-5", "46217-6", "71775-1", "28163009", "51914-0", "42595-9", "11259-9", "38180-6",
                 "20447-9", "29541-0", "19080-1", "83086-9", "2112-1"):
        assert code in asked, code


def test_a_quantity_reading_needs_exactly_one_positive_limit_and_known_units():
    with pytest.raises(ValidationError):
        QuantityReading(canonical_unit="mm", units={"mm": 1.0})
    with pytest.raises(ValidationError):
        QuantityReading(canonical_unit="mm", units={"mm": 1.0}, positive_at_least=5, positive_above=0)
    with pytest.raises(ValidationError):
        QuantityReading(canonical_unit="mm", units={"cm": 10.0}, positive_at_least=5)
    reading = QuantityReading(canonical_unit="mm", units={"mm": 1.0}, positive_at_least=25, indeterminate_from=5,
                              below_limit_at_most=5)
    assert [reading.category(v, c) for v, c in [(3, None), (5, None), (25, None), (5, "<"), (10, "<"), (30, ">")]] == \
        ["negative", "indeterminate", "positive", "negative", "indeterminate", "positive"]


def test_a_treatment_class_exception_wins_over_its_prefix():
    art = TreatmentClass(display="art", atc=["J05AE"], atc_not=["J05AE30"], names=["ritonavir"],
                         exclude_words=["paxlovid"], sources=["x"])
    assert art.contains("darunavir", (("atc", "J05AE10"),))
    assert not art.contains("Paxlovid", (("atc", "J05AE30"),))
    assert not art.contains("nirmatrelvir/ritonavir", (("atc", "J05AE30"),))
    assert art.contains("ritonavir 100 mg", ())


def test_tb_preventive_treatment_is_recognised_by_name_not_by_a_lookalike(knowledge):
    tb = knowledge.rules.treatment_class["tb_preventive"]
    assert tb.contains(ISONIAZID, ()) and tb.contains("Priftin 150 mg", ())
    assert not tb.contains("rifaximin 550 mg", (("atc", "A07AA11"),))


def test_tb_results_that_could_not_be_obtained_are_said_once_per_cause(hook, templates):
    keys = [k for k in templates if not k.startswith("screening")]
    cards = hook(record(extra=[PAST_JAKI, UPA]), prefetch=keys)       # a repeat order: no checklist
    missing = card(cards, "missing-data")["detail"]
    assert "IGRA (interferon-gamma release assay) / tuberculin skin test (TST)**: results could not be obtained" \
        in missing
