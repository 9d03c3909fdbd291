"""The quick validity proof for plain draft orders never calls valid what fhir.resources would refuse.

`r4_draft_check.plainly_valid` lets a draft skip fhir.resources only when every element passes checks
stricter than the library's. Checked here against the library itself: every draft in the fixtures and
the test builders, and random mutations of plain drafts (odd values, missing and extra elements, lists
where objects belong and the reverse). It must also be the path the usual drafts take.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.workload import hook_request
from cds_service.fhir.r4_check import plainly_valid
from cds_service.fhir.tolerant import normalise
from fixtures.builders import ATC, RXNORM, SNOMED, draft_order
from tests.helpers.sandbox import sandbox_order

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"


def library_accepts(resource: dict) -> bool:
    from fhir.resources.R4B.medicationrequest import MedicationRequest
    try:
        MedicationRequest.model_validate(copy.deepcopy(resource))
        return True
    except Exception:  # noqa: BLE001 - any refusal counts
        return False


def fixture_drafts() -> list[dict]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        bundle = json.loads(path.read_text())
        for entry in bundle.get("entry", []):
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "MedicationRequest":
                out.append(normalise(resource))
    return out


PLAIN = [
    normalise(draft_order("upadacitinib 15 mg prolonged-release tablet", 15, codings=[{"system": ATC, "code": "L04AF03"}],
                          reason=(SNOMED, "69896004", "Rheumatoid arthritis"))),
    normalise(draft_order("baricitinib 2 mg tablet", 2, codings=[{"system": RXNORM, "code": "2047232"}])),
    normalise(draft_order("tofacitinib 5 mg", 5, per_day=2)),
    normalise(hook_request("order-sign", 10)["context"]["draftOrders"]["entry"][0]["resource"]),
    normalise(sandbox_order(pills=1, per_day=2, reason={"code": [{"coding": [
        {"system": SNOMED, "code": "69896004", "display": "Rheumatoid arthritis"}]}]})),   # the CDS Hooks sandbox's
]


def test_every_fixture_draft_the_quick_check_accepts_is_accepted_by_the_library():
    drafts = fixture_drafts()
    assert len(drafts) > 100
    quick = [d for d in drafts if plainly_valid(d)]
    for draft in quick:
        assert library_accepts(draft), json.dumps(draft)[:400]
    assert len(quick) >= 0.9 * len(drafts)          # the usual drafts do take the quick path


def test_plain_drafts_take_the_quick_path():
    for draft in PLAIN:
        assert plainly_valid(draft) and library_accepts(draft)


@pytest.mark.parametrize("change, why", [
    (lambda d: d.pop("status"), "status is required"),
    (lambda d: d.pop("subject"), "subject is required"),
    (lambda d: d.pop("medicationCodeableConcept"), "medication[x] is required"),
    (lambda d: d.update(authoredOn="last tuesday"), "not a dateTime"),
    (lambda d: d.update(authoredOn="2026-02-30"), "no such day"),
    (lambda d: d.update(authoredOn="2026-11-01T08:00:00"), "a time needs a time zone"),
    (lambda d: d["medicationCodeableConcept"].update(text=""), "empty string"),
    (lambda d: d.update(id="draft 1"), "space in an id"),
    (lambda d: d.update(note="x"), "an element the quick check does not take"),
    (lambda d: d["dosageInstruction"][0]["timing"]["repeat"].update(frequency=0), "frequency is a positiveInt"),
    (lambda d: d["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(value=True), "boolean dose"),
    (lambda d: d["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(value="15"), "dose as text"),
    (lambda d: d.update(status="bogus"), "status outside its value set"),
    (lambda d: d["medicationCodeableConcept"].update(coding=[None]), "null in a list"),
    (lambda d: d.update(_status={"extension": []}), "primitive extension"),
    (lambda d: d.update(dispenseRequest={"numberOfRepeatsAllowed": -1}), "unsignedInt below zero"),
    (lambda d: d.update(dispenseRequest={"validityPeriod": {"start": "2026-11-01"}}), "an element not taken"),
    (lambda d: d.update(category={"text": "community"}), "an object where R4 wants a list"),
])
def test_anything_unusual_goes_to_the_library(change, why):
    draft = copy.deepcopy(PLAIN[0])
    change(draft)
    assert not plainly_valid(draft), why


_ODD_VALUES = st.sampled_from([None, "", " ", "x y", "\u00a0", "2026-02-30", "2026-11-01", "2026-11-01T08:00:00Z",
                               "bogus", "draft", "order", "d", "mg", 0, -1, 1, 2, 1.5, 1e-7, 1e300, True, [], {},
                               [None], ["x"], {"text": "x"}, {"coding": []}, {"reference": "Patient/p1"},
                               "http://x y", "L04 AF03", "a" * 70])


def _paths(value, prefix=()):
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _mutate(draft: dict, path: tuple, how: str, odd) -> dict:
    out = copy.deepcopy(draft)
    if not path:
        return out
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = odd
    elif how == "delete":
        del parent[last]
    elif how == "wrap":
        parent[last] = [parent[last]]
    elif how == "unwrap" and isinstance(parent[last], list) and parent[last]:
        parent[last] = parent[last][0]
    elif how == "extra" and isinstance(parent[last], dict):
        parent[last]["extra"] = odd
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(PLAIN))), pick=st.integers(min_value=0, max_value=10_000),
       how=st.sampled_from(["replace", "replace", "delete", "wrap", "unwrap", "extra"]), odd=_ODD_VALUES,
       twice=st.booleans(), pick2=st.integers(min_value=0, max_value=10_000), odd2=_ODD_VALUES)
def test_a_mutated_draft_is_quick_valid_only_if_the_library_accepts_it(base, pick, how, odd, twice, pick2, odd2):
    draft = PLAIN[base]
    paths = list(_paths(draft))
    mutated = _mutate(draft, paths[pick % len(paths)], how, odd)
    if twice:
        paths = list(_paths(mutated))
        mutated = _mutate(mutated, paths[pick2 % len(paths)], "replace", odd2)
    if plainly_valid(mutated):
        assert library_accepts(mutated), json.dumps(mutated, default=str)[:600]


def test_a_library_without_an_element_taken_turns_the_quick_check_off_not_the_service(monkeypatch, caplog):
    from cds_service.fhir import r4_check as r4_draft_check

    monkeypatch.setattr(r4_draft_check, "_value_sets", None)
    monkeypatch.setattr(r4_draft_check, "_CODING", r4_draft_check._CODING | {"renamedByANewRelease"})
    assert not plainly_valid(PLAIN[0])                       # every draft now goes to the library
    assert "quick R4 check of draft orders is off" in caplog.text
    monkeypatch.setattr(r4_draft_check, "_value_sets", None)  # put back for the other tests
