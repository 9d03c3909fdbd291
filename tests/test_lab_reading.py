"""Lab reading (issue 20): the patient's results under the codes and units laboratories send -> the card and the
number a clinician checks.

LOINC coverage (decision 16; review "LOINC coverage", finding 20), each with a trigger and a near miss.
"""
from __future__ import annotations

import pytest

from cds_service.facts import build_facts
from cds_service.prefetch import Prefetched, query_type, what_a_query_reads
from fixtures.builders import TODAY, obs, patient
from fixtures.scenarios_labs import swap_code
from fixtures.scenarios_monitoring import on_treatment
from tests.conftest import rule_of


def facts_for(knowledge, *resources):
    return build_facts(knowledge, Prefetched(by_key={"all": list(resources)}), "p1", TODAY)


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
    assert found is not None and found.value == pytest.approx(canonical, rel=1e-3)


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
    assert "platelet count (LOINC 777-3): none since the start" in card_of(cards, "monitor-cbc")["detail"]


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
