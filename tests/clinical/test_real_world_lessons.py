"""What the synthetic real-world records (fixtures/realworld, and the public Synthea set replayed with
`jak-cds corpus`) taught, each as the patient a clinician would recognise."""
from fixtures.builders import (
    ATC,
    SNOMED,
    condition,
    draft_order,
    medication_request,
    obs,
)
from fixtures.scenarios_contraindications import record
from tests.helpers.hooks import alerts, rule_of

RA = condition("69896004", "Rheumatoid arthritis")


def _adalimumab(days_ago: int, rid: str) -> dict:
    # Synthea re-orders adalimumab every year and leaves each order active
    return medication_request("0.4 ML adalimumab 100 MG/ML Prefilled Syringe", status="active", rid=rid,
                              authored_days_ago=days_ago, codings=[{"system": ATC, "code": "L04AB04"}])


def test_a_biologic_reordered_every_year_is_one_line_with_its_first_start(hook):
    resources = record(extra=[RA, _adalimumab(1100, "ada-1"), _adalimumab(735, "ada-2"), _adalimumab(370, "ada-3"),
                              draft_order("upadacitinib 15 mg", 15)])
    card = next(c for c in hook(resources) if rule_of(c) == "jak-biologic-combination")
    lines = [line for line in card["detail"].splitlines() if "adalimumab" in line]
    assert len(lines) == 1 and "3 active records" in lines[0] and "since 2023-10-28" in lines[0]


def test_obesity_recorded_as_a_problem_is_a_vte_factor_when_no_recent_bmi_says_it(hook):
    obese = condition("162864005", "Body mass index 30+ - obesity (finding)", onset_days_ago=900)
    cards = hook(record(drop=("29463-7",), extra=[RA, obese, draft_order("upadacitinib 15 mg", 15)]))
    prac = next(c for c in cards if rule_of(c) == "prac-risk-groups")
    assert "Body mass index 30+ - obesity (finding) (active" in prac["detail"]


def test_a_recent_normal_bmi_outweighs_an_old_obesity_problem(hook):
    obese = condition("162864005", "Body mass index 30+ - obesity (finding)", onset_days_ago=900)
    cards = hook(record(extra=[RA, obese, obs("39156-5", 24.8, "kg/m2", days_ago=20),
                               draft_order("upadacitinib 15 mg", 15)]))
    assert "prac-risk-groups" not in [rule_of(c) for c in alerts(cards)]


def test_an_acute_infection_left_active_for_years_still_counts_and_the_card_asks_to_confirm(hook):
    sepsis = condition("91302008", "Sepsis (disorder)", onset_days_ago=9000)
    cards = hook(record(extra=[RA, sepsis, draft_order("upadacitinib 15 mg", 15)]))
    card = next(c for c in cards if rule_of(c) == "active-serious-infection")
    assert card["indicator"] == "critical"
    assert "still recorded as active 24 years after its onset: confirm it has resolved" in card["detail"]


def test_a_recent_infection_is_not_called_stale(hook):
    pneumonia = condition("233604007", "Pneumonia", onset_days_ago=10)
    card = next(c for c in hook(record(extra=[RA, pneumonia, draft_order("upadacitinib 15 mg", 15)]))
                if rule_of(c) == "active-serious-infection")
    assert "still recorded as active" not in card["detail"]


def test_synthea_records_carry_smoking_as_a_snomed_answer(hook):
    smoker = obs("72166-2", None, None, days_ago=30,
                 value_code=(SNOMED, "449868002", "Smokes tobacco daily (finding)"))
    cards = hook(record(drop=("72166-2",), extra=[RA, smoker, draft_order("upadacitinib 15 mg", 15)]))
    prac = next(c for c in cards if rule_of(c) == "prac-risk-groups")
    assert "Smokes tobacco daily" in prac["detail"]
