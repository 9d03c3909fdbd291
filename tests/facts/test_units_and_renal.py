"""Unit normalisation, Cockcroft-Gault and CKD-EPI 2021: the numbers a clinician would check."""
import pytest

from cds_service.facts import build_facts, creatinine_clearance, egfr
from cds_service.knowledge.units import resolve_unit
from cds_service.record.index import PatientRecord
from cds_service.facts.renal import ckd_epi_2021, cockcroft_gault
from fixtures.builders import TODAY, obs, patient


@pytest.mark.parametrize("analyte,unit,value,canonical", [
    ("hb", "g/dL", 12.0, 12.0),
    ("hb", "g/L", 120, 12.0),
    ("hb", "mmol/L", 5.0, 8.057),            # 5 mmol/L = 8.06 g/dL (knowledge file F)
    ("creatinine", "umol/L", 88.42, 1.0),
    ("creatinine", "µmol/L", 176.84, 2.0),
    ("creatinine", "mg/dL", 1.3, 1.3),
    ("anc", "10*9/L", 1.5, 1.5),
    ("anc", "10*3/uL", 1.5, 1.5),
    ("anc", "/uL", 1500, 1.5),
    ("anc", "cells/µL", 800, 0.8),
    ("weight", "[lb_av]", 154, 69.85),
])
def test_unit_conversion_to_canonical(knowledge, analyte, unit, value, canonical):
    resolved = resolve_unit(knowledge.analytes[analyte], unit)
    assert resolved is not None
    assert value * resolved[1] == pytest.approx(canonical, rel=1e-3)


@pytest.mark.parametrize("analyte,unit", [("hb", "mg/dL"), ("anc", "%"), ("creatinine", "g/L"), ("weight", "stone")])
def test_unknown_units_are_not_guessed(knowledge, analyte, unit):
    assert resolve_unit(knowledge.analytes[analyte], unit) is None


def test_cockcroft_gault_reference_values():
    # (140-60) x 72 / (72 x 1.0) = 80; female x 0.85 = 68
    assert cockcroft_gault(60, 72, 1.0, female=False) == pytest.approx(80.0)
    assert cockcroft_gault(60, 72, 1.0, female=True) == pytest.approx(68.0)


def test_ckd_epi_2021_reference_values():
    # 142 x 0.9938^50 = 104.06 at Scr = kappa; x 1.012 female -> 105.3; male Scr 1.0 -> x (1.0/0.9)^-1.2 -> 91.7
    assert ckd_epi_2021(50, 1.0, female=False) == pytest.approx(91.7, abs=0.5)
    assert ckd_epi_2021(50, 0.7, female=True) == pytest.approx(105.3, abs=0.2)


def facts_for(knowledge, *resources):
    prefetched = PatientRecord({"all": list(resources)})
    return build_facts(knowledge, prefetched, "p1", TODAY)


def test_crcl_from_creatinine_in_micromoles(knowledge):
    facts = facts_for(knowledge, patient(age=60, sex="male"), obs("14682-9", 88.42, "umol/L"), obs("29463-7", 72, "kg"))
    crcl = creatinine_clearance(facts, knowledge)
    assert crcl.value == pytest.approx(80.0, rel=1e-3)
    assert "Cockcroft-Gault" in crcl.method


def test_measured_crcl_wins_over_the_estimate(knowledge):
    facts = facts_for(knowledge, patient(age=60, sex="male"), obs("2160-0", 1.0, "mg/dL"), obs("29463-7", 72, "kg"),
                      obs("2164-2", 55, "mL/min"))
    assert creatinine_clearance(facts, knowledge).value == 55


def test_crcl_says_what_is_missing(knowledge):
    facts = facts_for(knowledge, patient(age=60), obs("2160-0", 1.0, "mg/dL", days_ago=200))
    crcl = creatinine_clearance(facts, knowledge)
    assert crcl.value is None
    assert "no serum creatinine in the last 90 days" in crcl.missing and "no body weight" in crcl.missing


def test_egfr_is_computed_when_not_reported(knowledge):
    facts = facts_for(knowledge, patient(age=50, sex="male"), obs("2160-0", 1.0, "mg/dL"))
    assert egfr(facts, knowledge).value == pytest.approx(91.7, abs=0.5)


def test_latest_lab_wins_and_old_ones_are_kept_in_order(knowledge):
    facts = facts_for(knowledge, patient(), obs("718-7", 11.0, "g/dL", days_ago=40), obs("718-7", 12.5, "g/dL", days_ago=5),
                      obs("59260-0", 7.0, "mmol/L", days_ago=20))
    assert [v.reported_value for v in facts.labs["hb"]] == [12.5, 7.0, 11.0]


def test_entered_in_error_observations_are_ignored(knowledge):
    facts = facts_for(knowledge, patient(), obs("718-7", 6.0, "g/dL", days_ago=1, status="entered-in-error"),
                      obs("718-7", 12.0, "g/dL", days_ago=5))
    assert facts.latest("hb").reported_value == 12.0


def test_partial_birth_date_near_the_age_boundary_is_not_guessed(knowledge):
    facts = facts_for(knowledge, {"resourceType": "Patient", "id": "p1", "birthDate": str(TODAY.year - 65),
                                  "gender": "female"})
    assert facts.age == 64 and facts.age_max == 65
