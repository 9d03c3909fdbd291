"""Prefetch completion: full, partial and no prefetch; fallback fetch with the bearer token and a budget."""
import time

import pytest
import responses

from fixtures.builders import (
    condition,
    draft_order,
    full_baseline,
    medication_request,
    obs,
    patient,
)
from fixtures.scenarios_monitoring import on_treatment
from tests.helpers.hooks import (
    FHIR_BASE,
    alerts,
    call_hook,
    cards_of,
    make_request,
    rule_of,
    serve_fhir,
)

RA = condition("69896004", "Rheumatoid arthritis")
AD = condition("24079001", "Atopic dermatitis")
OLD_AD = [patient(age=70), *full_baseline(age=70), AD]
ORDER = draft_order("Rinvoq 30 mg", 30)


@pytest.mark.parametrize("hook_name", ["order-select", "order-sign"])
@pytest.mark.parametrize("prefetch", [True, ["patient", "conditions"], False])
def test_order_hooks_give_the_same_card_with_full_partial_and_no_prefetch(client, hook_name, prefetch, templates):
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, OLD_AD, calls=calls)
        cards = cards_of(call_hook(client, [*OLD_AD, ORDER], hook_name, prefetch=prefetch, fhir_server=FHIR_BASE))
    assert [rule_of(c) for c in alerts(cards)] == ["upadacitinib-ad-age-65", "prac-risk-groups"]   # 70 y: PRAC group
    keys = len(templates)       # one fallback query per prefetch key not sent
    expected_calls = 0 if prefetch is True else keys if prefetch is False else keys - len(prefetch)
    assert len(calls) == expected_calls


@pytest.mark.parametrize("prefetch", [True, False])
def test_patient_view_with_and_without_prefetch_answers(client, prefetch):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, OLD_AD)
        response = call_hook(client, OLD_AD, "patient-view", prefetch=prefetch, fhir_server=FHIR_BASE)
    assert response.status_code == 200 and "cards" in response.get_json()


def test_fallback_fetch_carries_the_bearer_token(client):
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, OLD_AD, calls=calls)
        call_hook(client, [*OLD_AD, ORDER], prefetch=False, fhir_server=FHIR_BASE, token="tok-123")
    assert calls and all(c.headers["Authorization"] == "Bearer tok-123" for c in calls)
    assert any("/Patient/p1" in c.url for c in calls)
    assert any("Observation?patient=p1" in c.url for c in calls)


def test_null_prefetch_value_means_no_data_and_is_not_fetched(client):
    body = make_request([*OLD_AD, ORDER], fhir_server=FHIR_BASE)
    body["prefetch"]["haematology"] = None
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        calls = []
        serve_fhir(rsps, OLD_AD, calls=calls)
        cards = cards_of(client.post("/cds-services/jak-order-sign", json=body))
    assert calls == []
    # null = no such results: for a first JAK inhibitor the baseline checklist says so (else the could-not-check card)
    said = [c for c in cards if rule_of(c) in ("missing-data", "baseline-screening") and "neutrophil" in c["detail"]]
    assert said


def test_operation_outcome_in_prefetch_is_treated_as_missing_and_fetched(client):
    body = make_request([*OLD_AD, ORDER], fhir_server=FHIR_BASE)
    body["prefetch"]["patient"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, OLD_AD, calls=calls)
        cards = cards_of(client.post("/cds-services/jak-order-sign", json=body))
    assert [c.url.split("/fhir/")[1] for c in calls] == ["Patient/p1"]
    assert [rule_of(c) for c in alerts(cards)] == ["upadacitinib-ad-age-65", "prac-risk-groups"]   # 70 y: PRAC group


def test_slow_fhir_server_is_cut_off_by_the_total_budget(client, app):
    budget = app.extensions["jak_engine"].settings.fhir_timeout

    def slow(request):
        time.sleep(budget + 0.5)
        return 200, {}, "{}"

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        import re
        rsps.add_callback(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), callback=slow)
        body = make_request([*OLD_AD, ORDER], fhir_server=FHIR_BASE, prefetch=["patient", "conditions"])
        started = time.monotonic()
        response = client.post("/cds-services/jak-order-sign", json=body)
        elapsed = time.monotonic() - started
    assert elapsed < budget + 0.4
    cards = cards_of(response)
    gap = [c for c in cards if rule_of(c) == "missing-data"]
    assert gap and "did not answer" in gap[0]["detail"]


def test_fhir_server_outside_the_allowed_list_is_never_called(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        calls = []
        serve_fhir(rsps, OLD_AD, base="https://ehr.example.org/fhir", calls=calls)
        response = call_hook(client, [*OLD_AD, ORDER], prefetch=False, fhir_server="https://ehr.example.org/fhir")
    assert calls == []
    cards = cards_of(response)          # decision 18: a JAK order whose record cannot be read is never silent
    assert [(c["indicator"], rule_of(c)) for c in cards] == [("warning", "record-unreadable")]
    assert cards[0]["summary"].startswith("No safety check could be run for upadacitinib")
    assert "not on this service's allowed list" in cards[0]["detail"]


def test_partial_prefetch_with_an_unreachable_server_says_what_was_not_checked(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        import re
        rsps.add(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), status=503)
        cards = cards_of(call_hook(client, [*OLD_AD, ORDER], prefetch=["patient", "conditions"], fhir_server=FHIR_BASE))
    assert [rule_of(c) for c in alerts(cards)] == ["upadacitinib-ad-age-65", "prac-risk-groups", "missing-data"]
    gap = alerts(cards)[2]
    assert "HTTP 503" in gap["detail"] or "could not be obtained" in gap["detail"]


def test_low_anc_found_through_fallback_fetch(client):
    record = [patient(), *[o for o in full_baseline() if o["code"]["coding"][0]["code"] != "751-8"],
              obs("751-8", 0.7, "10*9/L"), RA]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, record)
        cards = cards_of(call_hook(client, [*record, draft_order("upadacitinib 15 mg", 15)], prefetch=False,
                                   fhir_server=FHIR_BASE))
    assert [rule_of(c) for c in alerts(cards)] == ["anc-below-1-start"]


def test_a_search_cut_off_after_the_page_limit_is_used_and_the_gap_is_said(client):
    """Condition search with endless next links: first pages are used, the rest is said to be unread."""
    import json as _json
    import re

    from cds_service.fhir.client import MAX_PAGES
    from cds_service.fhir.query import search

    tb = condition("56717001", "Tuberculosis")
    record = [*OLD_AD, tb]
    pages = []

    def handler(request):
        query = request.url[len(FHIR_BASE):].lstrip("/")
        if query.startswith("Condition"):
            pages.append(query)
            bundle = search(record, "Condition?patient=p1") if len(pages) == 1 else \
                {"resourceType": "Bundle", "type": "searchset", "entry": []}
            bundle["link"] = [{"relation": "next", "url": f"{FHIR_BASE}/Condition?patient=p1&page={len(pages) + 1}"}]
            return 200, {}, _json.dumps(bundle)
        return 200, {}, _json.dumps(search(record, query))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), callback=handler)
        body = make_request([*record, ORDER], fhir_server=FHIR_BASE)
        del body["prefetch"]["conditions"]
        cards = cards_of(client.post("/cds-services/jak-order-sign", json=body))
    assert len(pages) == MAX_PAGES
    rules = [rule_of(c) for c in cards]
    assert "active-tuberculosis" in rules                 # the pages read are used
    assert any(f"more than {MAX_PAGES} pages" in c["detail"] for c in cards)   # and the rest is said


def test_records_of_another_patient_are_left_out_and_said(client):
    """A FHIR server that ignores patient= must not put someone else's neutropenia on this patient."""
    someone_else = obs("751-8", 0.4, "10*9/L", pid="other-patient")
    record = [*OLD_AD]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        import json as _json
        import re

        from cds_service.fhir.query import search

        def ignores_patient_filter(request):
            query = request.url[len(FHIR_BASE):].lstrip("/")
            bundle = search(record + [someone_else], query.replace("patient=p1", "patient=other-patient")) \
                if query.startswith("Observation") else search(record, query)
            if query.startswith("Observation"):
                bundle["entry"] += search(record, query)["entry"]
            return 200, {}, _json.dumps(bundle)

        rsps.add_callback(responses.GET, re.compile(re.escape(FHIR_BASE) + r"/.*"), callback=ignores_patient_filter)
        cards = cards_of(call_hook(client, [*record, ORDER], prefetch=["patient", "conditions"], fhir_server=FHIR_BASE))
    rules = [rule_of(c) for c in cards]
    assert "anc-below-1-start" not in rules
    assert any("named a different patient" in c["detail"] for c in cards)


# -- what an EHR sends most: orders of other drugs, charts of patients on no JAK inhibitor ---------------

AMOXICILLIN = draft_order("amoxicillin 500 mg capsule", 500, 3)
MEDICATION_QUERIES = ("MedicationRequest?", "MedicationStatement?")


def _queries(calls) -> list[str]:
    return sorted(c.url.split("/fhir/", 1)[1] for c in calls)


@pytest.mark.parametrize("hook_name", ["order-select", "order-sign"])
def test_an_order_of_another_drug_reads_nothing_from_the_ehr(client, hook_name):
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, OLD_AD, calls=calls)
        cards = cards_of(call_hook(client, [*OLD_AD, AMOXICILLIN], hook_name, prefetch=False,
                                   fhir_server=FHIR_BASE))
    assert cards == []
    assert calls == []          # no rule reads the record for it: twelve queries to the EHR's server saved


def test_an_order_of_another_drug_without_any_patient_data_is_answered_not_refused(client):
    response = call_hook(client, [patient(), AMOXICILLIN], prefetch=False)
    assert cards_of(response) == []         # a 412 here would be an error in the EHR's log for every order


def test_near_miss_a_jak_inhibitor_next_to_another_drug_still_reads_the_record(client, templates):
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, OLD_AD, calls=calls)
        cards = cards_of(call_hook(client, [*OLD_AD], drafts=[AMOXICILLIN, {**ORDER, "id": "draft-2"}],
                                   prefetch=False, fhir_server=FHIR_BASE))
    assert [rule_of(c) for c in alerts(cards)] == ["upadacitinib-ad-age-65", "prac-risk-groups"]
    assert len(calls) == len(templates)


def test_patient_view_of_a_patient_on_no_jak_inhibitor_fetches_the_medications_only(client):
    methotrexate = medication_request("methotrexate 15 mg weekly", authored_days_ago=200)
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, [*OLD_AD, methotrexate], calls=calls)
        cards = cards_of(call_hook(client, [*OLD_AD, methotrexate], "patient-view", prefetch=False,
                                   fhir_server=FHIR_BASE))
    assert cards == []
    assert [q.split("?")[0] + "?" for q in _queries(calls)] == sorted(MEDICATION_QUERIES)


def test_patient_view_of_a_patient_on_a_jak_inhibitor_fetches_the_rest_and_answers_as_with_prefetch(client, templates):
    record = on_treatment(5, labs_days_ago=None)
    with_prefetch = cards_of(call_hook(client, record, "patient-view"))
    calls = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_fhir(rsps, record, calls=calls)
        fetched = cards_of(call_hook(client, record, "patient-view", prefetch=False, fhir_server=FHIR_BASE))
    assert sorted(rule_of(c) for c in fetched) == sorted(rule_of(c) for c in with_prefetch) != []
    assert len(calls) == len(templates)     # each key once: the medications first, then the rest


def test_patient_view_finds_a_jak_inhibitor_sent_under_another_prefetch_key(client):
    """The medications are looked for in everything the EHR sent, not only under the medication keys."""
    record = on_treatment(5, labs_days_ago=None)
    body = make_request(record, "patient-view")
    [jak] = [r for r in record if r["resourceType"] == "MedicationRequest"]
    body["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    body["prefetch"]["conditions"]["entry"].append({"resource": jak})
    cards = cards_of(client.post("/cds-services/jak-patient-view", json=body))
    assert "monitor-cbc" in " ".join(rule_of(c) for c in cards)
