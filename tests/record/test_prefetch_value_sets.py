"""Decision 16: the prefetch templates ask for every code the knowledge reads, within a URL budget.

The coded templates are filled from the value sets in cards/ at start-up, so a code added to an analyte (or
any rule table) is asked for by the prefetch and the fallback fetch without anyone editing services.toml.
"""
import tomllib

import pytest

from cds_service.record.services import (
    SERVICES_FILE,
    URL_BUDGET,
    DiscoveryError,
    coded_templates,
    load_services,
    rendered_length,
)
from cds_service.fhir.values import query_type
from cds_service.record.templates import what_a_query_reads
from fixtures.builders import condition, draft_order, obs, patient
from tests.helpers.hooks import rule_of

SPEC = tomllib.loads(SERVICES_FILE.read_text())["coded_prefetch"]


def _asked(templates: dict[str, str], kind: str) -> set[str]:
    return {item.split("|", 1)[1] for t in templates.values() if query_type(t) == kind
            for item in what_a_query_reads(t)}


def test_every_code_the_knowledge_reads_is_asked_for(knowledge, templates):
    for kind, codes in knowledge.codes_read.items():
        if kind == "Condition":
            assert "conditions" in templates and "code=" not in templates["conditions"]   # fetched whole
            continue
        assert codes <= _asked(templates, kind), kind


def test_synthetic_record_codes_are_asked_for(templates):
    """Synthea sends creatinine as 38483-4 and eGFR as 33914-3: both must be fetched for the renal rules."""
    chemistry = _asked(templates, "Observation")
    assert {"38483-4", "33914-3", "2160-0", "98979-8"} <= chemistry


def test_every_template_stays_within_the_url_budget(templates):
    for key, template in templates.items():
        assert rendered_length(template) <= URL_BUDGET, key


def test_a_template_over_the_budget_is_split_into_more_keys_that_ask_for_the_same_codes(knowledge):
    whole = coded_templates(SPEC, knowledge)
    split = coded_templates(SPEC, knowledge, budget=260)
    assert len(split) > len(whole)
    assert any(key.endswith("-2") for key in split)
    assert all(rendered_length(t) <= 260 for t in split.values())
    for kind in ("Observation", "DiagnosticReport", "Procedure"):
        assert _asked(split, kind) == _asked(whole, kind)


def test_a_split_key_keeps_its_own_page_size(knowledge):
    split = coded_templates(SPEC, knowledge, budget=200)
    haematology = [t for k, t in split.items() if k.startswith("haematology")]
    assert len(haematology) > 1 and all(t.endswith("&_count=100") for t in haematology)


def test_the_knowledge_reading_codes_no_template_asks_for_stops_start_up(knowledge):
    without_rest = {k: v for k, v in SPEC.items() if k != "screening"}
    with pytest.raises(DiscoveryError, match="no prefetch template asks for"):
        coded_templates(without_rest, knowledge)


def test_an_unknown_analyte_in_services_toml_stops_start_up(knowledge):
    spec = dict(SPEC, haematology={**SPEC["haematology"], "analytes": ["hb", "haemoglobin-typo"]})
    with pytest.raises(DiscoveryError, match="unknown analyte"):
        coded_templates(spec, knowledge)


def test_discovery_shows_the_filled_templates(client, knowledge):
    services = client.get("/cds-services").get_json()["services"]
    assert services[0]["prefetch"] == next(iter(load_services(knowledge).values())).prefetch
    assert "{codes}" not in str(services)


def test_synthea_shaped_creatinine_feeds_the_renal_dose_rule(hook):
    """A baricitinib order for a patient whose creatinine is only on record as LOINC 38483-4 (Synthea): the renal
    rule runs (CrCl ~ 44 mL/min -> 2 mg) instead of saying there is no creatinine."""
    record = [patient(age=60, sex="male"), condition("69896004", "Rheumatoid arthritis"),
              obs("38483-4", 1.7, "mg/dL", days_ago=7, display="Creatinine"),
              obs("29463-7", 75, "kg", days_ago=7, display="Body Weight")]
    cards = hook([*record, draft_order("baricitinib 4 mg tablet", 4)])
    dose = [c for c in cards if rule_of(c).startswith("baricitinib-crcl")]
    assert dose and dose[0]["summary"].startswith("Reduce baricitinib to 2 mg once daily")
    assert not any("serum creatinine" in c["detail"] and "no result" in c["detail"] for c in cards)
