"""Records no one here wrote (fixtures/realworld: synthetic patients from Synthea's modules, see its README),
replayed through patient-view and order-sign of each systemic JAK inhibitor, with and without prefetch.

What must hold for any record: no 5xx; the same cards with and without prefetch; every lab result on record
within its window is read (no card calls it missing); no critical card without a reason on record. And what
these particular records teach: the codes they use reach the rules."""
from pathlib import Path

import pytest

from cds_service.cli.devtools.corpus import (
    Caller,
    Report,
    calls,
    check_patient,
    labs_in_window,
    load_patient,
    run,
)

SAMPLE = Path(__file__).parents[2] / "fixtures" / "realworld"


@pytest.fixture(scope="module")
def caller():
    return Caller()


@pytest.fixture(scope="module")
def report(caller):
    return run([str(SAMPLE)], caller)


def _cards(caller, name: str, label: str) -> list[dict]:
    patient = load_patient(SAMPLE / f"{name}.json")
    for call_label, hook, resources, drafts in calls(patient):
        if call_label == label:
            status, body = caller.call(hook, patient, resources, drafts, with_prefetch=True)
            assert status == 200, body
            return body["cards"]
    raise AssertionError(label)


def test_every_record_replays_with_nothing_that_must_not_happen(report):
    assert report.patients == 14 and report.calls == 14 * 11 * 2
    assert report.problems == []


def test_the_labs_these_records_carry_are_read(report):
    # Synthea's creatinine (38483-4) and eGFR (33914-3) are on record for most of these patients
    assert report.labs_read["creatinine"] >= 8 and report.labs_read["egfr"] >= 5
    assert report.labs_read["hb"] >= 5 and report.labs_read["total_cholesterol"] >= 8


def test_synthea_creatinine_feeds_the_renal_rules(caller):
    patient = load_patient(SAMPLE / "Cecilia_Tamayo_ff41fc14.json")
    assert "creatinine" in labs_in_window(caller.knowledge, patient)
    for card in _cards(caller, "Cecilia_Tamayo_ff41fc14", "order-sign baricitinib"):
        assert "no serum creatinine" not in card["detail"], card["summary"]


def test_chronic_hepatitis_c_on_record_is_critical_for_every_order(caller):
    for drug in ("tofacitinib", "baricitinib", "upadacitinib", "filgotinib", "abrocitinib"):
        cards = _cards(caller, "Tod_Cruickshank_e7745631", f"order-sign {drug}")
        assert any(c["indicator"] == "critical" and "hepatitis C" in c["summary"] for c in cards), drug


def test_adalimumab_on_record_is_a_biologic_combination(caller):
    cards = _cards(caller, "Darrin_Lebsack_e1a238dd", "order-sign upadacitinib")
    assert any(c["indicator"] == "critical" and "biologic DMARD" in c["summary"] for c in cards)


def test_carcinoma_in_situ_and_suspected_cancer_are_not_a_malignancy(caller):
    cards = _cards(caller, "Malcom_Cremin_19b59ee8", "order-sign upadacitinib")
    assert not any("alignancy" in c["summary"] for c in cards)


def test_a_check_that_fails_is_reported(caller):
    """The checks themselves can fail: a card calling an on-record creatinine missing is caught."""
    patient = load_patient(SAMPLE / "Cecilia_Tamayo_ff41fc14.json")
    report = Report()

    class Lying:
        knowledge = caller.knowledge

        def call(self, hook, patient, resources, drafts, with_prefetch):
            card = {"indicator": "critical", "summary": "made up", "source": {"topic": {"code": "x"}},
                    "detail": "- **serum creatinine**: no result in the last 90 days"}
            return 200, {"cards": [card]}

    check_patient(Lying(), patient, report)
    assert any("serum creatinine is on record" in p for p in report.problems)
    assert any("critical card without a reason on record: made up" in p for p in report.problems)
