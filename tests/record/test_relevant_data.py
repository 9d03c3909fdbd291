"""Only the data a rule reads is processed: Observations no knowledge entry names are dropped once.

Clinical behaviour must not change: the same patient gets the same cards with
or without thousands of over-sent vital signs, an analyte sent under an
alternative LOINC code (not one our prefetch asks for) is still read, and
anything not known to be unread (other code systems, no system, no code)
is kept.
"""
from __future__ import annotations

from cds_service.record.services import load_services
from cds_service.record.index import PatientRecord
from cds_service.record.templates import what_a_query_reads
from fixtures.builders import (
    LOINC,
    SNOMED,
    condition,
    draft_order,
    full_baseline,
    obs,
    patient,
)
from tests.helpers.hooks import alerts, cards_of, make_request, rule_of

RA = condition("69896004", "Rheumatoid arthritis")
VITAL_CODES = ("8867-4", "85354-9", "8310-5")    # heart rate, BP panel, temperature: no rule reads them


def vitals(count: int) -> list[dict]:
    return [obs(VITAL_CODES[i % 3], 60 + i % 40, "/min", 1 + i // 50) for i in range(count)]


def without(code: str) -> list[dict]:
    return [o for o in full_baseline() if o["code"]["coding"][0]["code"] != code]


def test_every_analyte_and_prefetch_code_is_kept(knowledge):
    for analyte in knowledge.analytes.values():
        assert set(analyte.loinc) <= knowledge.observation_codes, analyte.display
    templates = next(iter(load_services(knowledge).values())).prefetch
    asked: set[str] = set()
    for template in templates.values():
        if template.startswith("Observation?"):
            codes = {item.split("|", 1)[1] for item in what_a_query_reads(template)}
            asked |= codes
            loinc_shaped = {c for c in codes if "-" in c}
            assert loinc_shaped <= knowledge.observation_codes, template     # what is fetched is not dropped
    assert knowledge.codes_read["Observation"] <= asked                      # what is read is fetched
    assert not set(VITAL_CODES) & knowledge.observation_codes


def _record(*resources, keep=None) -> PatientRecord:
    return PatientRecord({"vitals": list(resources)}, keep=keep)


def test_keep_observations_drops_only_loinc_coded_results_nobody_reads(knowledge):
    hb = obs("718-7", 13.0, "g/dL")
    hr = obs("8867-4", 70, "/min")
    hr_spaced = obs("8867-4", 71, "/min")
    anc_padded = obs("751-8", 3.0, "10*9/L")
    anc_padded["code"]["coding"][0]["code"] = " 751-8 "
    snomed_coded = obs("8867-4", 72, "/min")
    snomed_coded["code"]["coding"].append({"system": SNOMED, "code": "364075005"})
    no_system = obs("8867-4", 73, "/min")
    del no_system["code"]["coding"][0]["system"]
    text_only = obs("8867-4", 74, "/min")
    text_only["code"] = {"text": "pulse"}
    single_coding = obs("718-7", 12.0, "g/dL")
    single_coding["code"]["coding"] = {"system": LOINC, "code": "718-7"}
    hostile = obs("8867-4", 75, "/min")
    hostile["code"]["coding"][0]["code"] = ["not", "a", "string"]
    condition_ = RA
    pre = _record(hb, hr, hr_spaced, anc_padded, snomed_coded, no_system, text_only, single_coding,
                  hostile, condition_, keep=knowledge.observation_codes)
    assert pre.dropped == 2
    kept = pre.resources("Observation") + pre.resources("Condition")
    assert hr not in kept and hr_spaced not in kept
    for resource in (hb, anc_padded, snomed_coded, no_system, text_only, single_coding, hostile, condition_):
        assert resource in kept


def test_resources_are_indexed_once_and_deduplicated():
    a, b = obs("718-7", 13.0, "g/dL"), obs("751-8", 3.0, "10*9/L")
    pre = PatientRecord({"haematology": [a, b], "other": [dict(a), RA]})
    assert pre.resources("Observation") == [a, b]           # same id in two keys: first one only
    assert pre.resources("Condition") == [RA]
    assert pre.resources("MedicationRequest") == []
    assert pre.by_id("Condition", RA["id"]) is RA and pre.by_id("Condition", "no-such-id") is None
    by_key = {"haematology": [a, b], "other": [dict(a), RA], "extra": [obs("2160-0", 0.9, "mg/dL")]}
    assert len(PatientRecord(by_key).resources("Observation")) == 3           # every key is read
    kept = PatientRecord(by_key, keep=frozenset({"718-7"}))
    assert kept.dropped == 2                                                   # b and the creatinine, in any key
    assert kept.resources("Observation") == [a]
    assert kept.with_codes("Observation", {"718-7", "751-8"}) == [a]


def test_thousands_of_over_sent_vital_signs_change_no_card(hook):
    record = [patient(), *without("718-7"), obs("718-7", 7.4, "g/dL"), RA, draft_order("upadacitinib 15 mg", 15)]
    plain = hook(record)
    noisy = hook(record + vitals(3000))
    assert [rule_of(c) for c in alerts(noisy)] == [rule_of(c) for c in alerts(plain)]
    assert "hb-below-8-start" in [rule_of(c) for c in alerts(noisy)]


def test_clean_patient_with_over_sent_vital_signs_gets_no_alert(hook):
    record = [patient(), *full_baseline(), RA, draft_order("upadacitinib 15 mg", 15)]
    assert alerts(hook(record + vitals(500))) == []


def _over_sent(client, record: list[dict], extra: list[dict]) -> list[dict]:
    """order-sign with ``extra`` appended to the vitals prefetch Bundle, as an EHR that over-sends would."""
    body = make_request(record)
    body["prefetch"]["vitals"]["entry"] += [{"resource": r} for r in extra]
    return cards_of(client.post("/cds-services/jak-order-sign", json=body))


def test_analyte_under_an_alternative_loinc_code_is_still_read(client):
    # 26499-4 (neutrophils, blood count) is not a code our prefetch asks for; the EHR sends it anyway
    base = [patient(), *without("751-8"), RA, draft_order("upadacitinib 15 mg", 15)]
    low = _over_sent(client, base, [obs("26499-4", 0.7, "10*9/L"), *vitals(50)])
    assert "anc-below-1-start" in [rule_of(c) for c in alerts(low)]
    near_miss = _over_sent(client, base, [obs("26499-4", 1.1, "10*9/L"), *vitals(50)])
    assert "anc-below-1-start" not in [rule_of(c) for c in alerts(near_miss)]
    assert "anc-below-1-start" not in [rule_of(c) for c in alerts(_over_sent(client, base, vitals(50)))]


# -- one coding rule for lab results, whether the coding stands alone or behind another one ----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st

from cds_service.facts import build_facts  # noqa: E402
from fixtures.builders import TODAY  # noqa: E402

_SYSTEMS = st.sampled_from([None, "", "http://loinc.org", "LOINC", "urn:oid:loinc-ish", "http://snomed.info/sct",
                            "http://example.org/local", 5])
_CODES = st.sampled_from(["751-8", " 751-8 ", "751-8\n", "7518", 7518, None, "26499-4"])


def _neutrophils_read(knowledge, coding_list) -> bool:
    result = obs("751-8", 1.9, "10*9/L", 3)
    result["code"] = {"coding": coding_list}
    facts = build_facts(knowledge, PatientRecord({"k": [result]}), "p1", TODAY)
    return facts.latest("anc") is not None


@settings(max_examples=150, deadline=None)
@given(system=_SYSTEMS, code=_CODES, other_first=st.booleans())
def test_a_neutrophil_count_is_read_under_the_same_rule_whatever_the_coding_shape(knowledge, system, code,
                                                                                    other_first):
    """Read when a coding carries an ANC LOINC code (trimmed) with a LOINC system or none at all; the
    one-coding shape and the same coding behind an unrelated one must agree."""
    coding = {"code": code} if system is None else {"system": system, "code": code}
    codes = [coding]
    if other_first:
        codes.insert(0, {"system": "http://example.org/local", "code": "ANC-LOCAL"})
    expected = (isinstance(code, str) and code.strip() in ("751-8", "26499-4", "753-4")
                and (not system or "loinc" in str(system).lower()))
    assert _neutrophils_read(knowledge, codes) is expected


def test_the_record_is_read_from_the_prefetch_as_completion_left_it():
    """Completion grows a key by its next pages and adds keys in turns; the record is read once, after it,
    from every key in key order (a key's pages in the order read)."""
    a, b, c = obs("718-7", 13.0, "g/dL"), obs("751-8", 3.0, "10*9/L"), obs("2160-0", 0.9, "mg/dL")
    by_key = {"haematology": [a]}
    by_key["haematology"] = by_key["haematology"] + [b]          # a next page read later
    by_key["chemistry"] = [c]
    assert PatientRecord(by_key).resources("Observation") == [a, b, c]
    assert PatientRecord({"other": [RA]}).resources("Condition") == [RA]
    assert PatientRecord({}).resources("Observation") == []
    medications = PatientRecord.of_types({"x": [a, RA], "y": [c]}, ("Condition",))
    assert medications.resources("Condition") == [RA] and medications.resources("Observation") == []


_UNREAD_LOINC = {"system": LOINC, "code": "8867-4"}      # heart rate: a LOINC code no rule reads


def _dropped(coding_list) -> bool:
    result = obs("8867-4", 70, "/min")
    result["code"] = {"coding": coding_list}
    return PatientRecord({"k": [result]}, keep=frozenset({"751-8"})).dropped == 1


@settings(max_examples=200, deadline=None)
@given(system=_SYSTEMS, code=_CODES, behind=st.booleans())
def test_a_result_is_left_out_only_when_every_coding_is_loinc_and_unread(system, code, behind):
    """One rule, whether the coding stands alone (the usual shape, settled without a call) or next to an
    unread LOINC coding: left out only if its system names LOINC and its code (trimmed) is a string no
    rule reads. No system, another system or a code that is not a string: kept."""
    coding = {"code": code} if system is None else {"system": system, "code": code}
    expected = (isinstance(system, str) and "loinc" in system.lower()
                and isinstance(code, str) and code.strip() != "751-8")
    assert _dropped([coding]) is expected
    assert _dropped([_UNREAD_LOINC, coding] if behind else [coding, _UNREAD_LOINC]) is expected


def test_a_result_is_dated_by_issued_or_its_period_when_effective_date_time_is_absent_or_unreadable(hook):
    """Most results carry effectiveDateTime, read first; one without it (or with a broken one) is still dated
    from effectivePeriod or issued, and so still read."""
    def low_hb(**dates):
        result = obs("718-7", 7.4, "g/dL")
        del result["effectiveDateTime"]
        result.update(dates)
        return result

    base = [patient(), *without("718-7"), RA, draft_order("upadacitinib 15 mg", 15)]
    for dated in (low_hb(issued=f"{TODAY.isoformat()}T08:00:00Z"),
                  low_hb(effectivePeriod={"start": TODAY.isoformat()}),
                  low_hb(effectiveDateTime="not a date", issued=TODAY.isoformat())):
        assert "hb-below-8-start" in [rule_of(c) for c in alerts(hook(base + [dated]))], dated
    undated = low_hb()
    assert "hb-below-8-start" not in [rule_of(c) for c in alerts(hook(base + [undated]))]
