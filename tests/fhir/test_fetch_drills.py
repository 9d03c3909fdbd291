"""Fault drills of the fallback fetch against a real (loopback) FHIR server that fails on purpose.

``cds_service.devtools.fault_fhir_server`` hangs, answers 500, sends invalid JSON, 50 MB, an
OperationOutcome, resets the connection, or drips its answer a byte at a time, for every query or for
the Observation queries only. Each drill: 200 with the right cards within the budget (+ MARGIN), and no
read still running once the call has answered. The drip sends a byte every 0.2 s: faster than the
per-read timeout, which it therefore never trips (what made the drip poison a worker).
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from cds_service.web.app import create_app
from cds_service.cli.devtools.fault_fhir_server import FAULTS, FaultFhirServer
from cds_service.config import Settings
from cds_service.fhir import reads
from cds_service.fhir.client import FhirClient
from cds_service.wire import FhirAuthorization
from fixtures.builders import TODAY, draft_order, medication_request
from tests.helpers.hooks import make_request, rule_of
from tests.helpers.records import RA, record

BUDGET = 1.0
MARGIN = 0.5          # what a call may take past its budget: the cut connections' threads end within ms
DRIP = 0.2            # seconds between the drip server's bytes
SIGN = "/cds-services/jak-order-sign"
RECORD = record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])
REASON = {
    "hang": f"did not answer within {BUDGET:g} s",
    "drip": f"did not answer within {BUDGET:g} s",
    "500": "answered HTTP 500",
    "invalid-json": "not JSON",
    "huge": "too large or too slow",
    "outcome": "an error or an unexpected resource",
    "reset": "could not be reached",
}


@pytest.fixture
def app(tmp_path, knowledge):
    settings = Settings(evaluation_date=TODAY.isoformat(), database_url=f"sqlite:///{tmp_path / 't.sqlite3'}",
                        auth="off", fhir_timeout=BUDGET, fhir_connect_timeout=0.5)
    return create_app(settings, knowledge=knowledge)


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fhir-fetch")]


def _ours() -> set[threading.Thread]:
    """The threads of this process but the fault servers' own and the store's audit writer (started with the
    first card a store records, it lives as long as the store)."""
    return {t for t in threading.enumerate() if not t.name.startswith(("fault-fhir", "jak-audit-writer"))}


def call(app, server: str) -> tuple[int, list[dict], float]:
    body = make_request(RECORD, prefetch=False, fhir_server=server, token="drill-token")
    start = time.monotonic()
    response = app.test_client().post(SIGN, json=body)
    elapsed = time.monotonic() - start
    return response.status_code, (response.get_json() or {}).get("cards", []), elapsed


def assert_nothing_left(app, before: set[threading.Thread]) -> None:
    """Once the call has answered no read of it is still going on: none running, no place taken under the
    server's limit, and the only threads it added are read threads now idle, kept for the next call."""
    assert reads.reads_running() == 0
    assert app.extensions["jak_engine"].fhir_client.in_flight() == 0
    added = _ours() - before
    assert {t.name for t in added} <= {"fhir-fetch"}, f"threads left running: {[t.name for t in added]}"
    assert len(_fetch_threads()) <= reads.MAX_IDLE


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_alone_gets_the_no_check_warning_within_the_budget(app, fault):
    before = _ours()
    with FaultFhirServer(RECORD, mode=fault, drip_interval=DRIP) as fhir:
        status, cards, elapsed = call(app, fhir.url)
        assert_nothing_left(app, before)
    assert status == 200
    assert [(c["indicator"], rule_of(c)) for c in cards] == [("warning", "record-unreadable")]
    assert REASON[fault] in cards[0]["detail"], cards[0]["detail"]
    assert elapsed < BUDGET + MARGIN, f"{fault}: {elapsed:.2f} s with a budget of {BUDGET} s"
    assert fhir.stats["requests"] == fhir.stats[fault] >= 12        # every query sent, in one wave


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_with_the_rest_of_the_record_readable_says_what_was_not_checked(app, fault):
    before = _ours()
    with FaultFhirServer(RECORD, mode="ok", modes={"Observation": fault}, drip_interval=DRIP) as fhir:
        status, cards, elapsed = call(app, fhir.url)
        assert_nothing_left(app, before)
    assert status == 200
    rules = [rule_of(c) for c in cards]
    assert "record-unreadable" not in rules                       # the patient, conditions ... were read
    gaps = [c for c in cards if rule_of(c) == "missing-data"]
    assert gaps, rules
    assert REASON[fault] in gaps[0]["detail"], gaps[0]["detail"]
    assert elapsed < BUDGET + MARGIN, f"{fault}: {elapsed:.2f} s with a budget of {BUDGET} s"
    assert fhir.stats["ok"] >= 1 and fhir.stats[fault] >= 1


@pytest.mark.parametrize("fault", FAULTS)
def test_patient_view_of_a_patient_on_a_jak_inhibitor_under_each_fault(app, fault):
    """patient-view reads the medications first, then the rest: with the labs unreadable it says what it could
    not check; with nothing readable it cannot know the patient takes a JAK inhibitor, so it answers 412 with
    the reasons (no card to attach them to), within the budget either way, never a 500."""
    on_jaki = record(extra=[RA, medication_request("upadacitinib 15 mg", dose_mg=15, authored_days_ago=200)])
    before = _ours()
    for modes, mode in (({"Observation": fault}, "ok"), ({}, fault)):
        with FaultFhirServer(on_jaki, mode=mode, modes=modes, drip_interval=DRIP) as fhir:
            body = make_request(on_jaki, "patient-view", prefetch=False, fhir_server=fhir.url)
            start = time.monotonic()
            response = app.test_client().post("/cds-services/jak-patient-view", json=body)
            elapsed = time.monotonic() - start
            assert_nothing_left(app, before)
        assert elapsed < BUDGET + MARGIN, f"{fault}: {elapsed:.2f} s with a budget of {BUDGET} s"
        if modes:
            assert response.status_code == 200
            gaps = [c for c in response.get_json()["cards"] if rule_of(c) == "missing-data"]
            assert gaps and REASON[fault] in gaps[0]["detail"], gaps
        else:
            assert response.status_code == 412
            diagnostics = response.get_json()["issue"][0]["diagnostics"]
            assert REASON[fault] in diagnostics or "were used up" in diagnostics, diagnostics


def test_a_healthy_call_during_and_after_drip_calls_reads_its_whole_record(app):
    """The fault that poisoned a worker: calls to a dripping server held the shared fetch threads past their
    budget, and a call to another EHR's healthy server then sent none of its queries (412, and 5 s later
    still). Here three drip calls run at once; a healthy call meanwhile, and one after, read everything."""
    with FaultFhirServer(RECORD, mode="drip", drip_interval=DRIP) as drip, FaultFhirServer(RECORD) as healthy:
        drips: list[tuple] = []
        threads = [threading.Thread(target=lambda: drips.append(call(app, drip.url))) for _ in range(3)]
        for thread in threads:
            thread.start()
        assert drip.wait_in_flight(24)
        status, cards, during = call(app, healthy.url)
        assert drip.in_flight >= 12, "the drip calls were over before the healthy call: not a drill"
        assert status == 200 and cards == [], [c["summary"] for c in cards]
        assert healthy.stats["ok"] == 12 and during < BUDGET
        for thread in threads:
            thread.join(BUDGET + 2 * MARGIN)
        assert [(s, [rule_of(c) for c in cs]) for s, cs, _ in drips] == [(200, ["record-unreadable"])] * 3
        assert max(elapsed for _, _, elapsed in drips) < BUDGET + MARGIN
        status, cards, after = call(app, healthy.url)
        assert status == 200 and cards == [] and healthy.stats["ok"] == 24 and after < BUDGET
        assert drip.stats["max_in_flight"] <= 24                   # JAK_CDS_FHIR_MAX_PER_SERVER
    assert reads.reads_running() == 0


def test_read_threads_are_reused_not_piled_up(app):
    """Calls to a dripping server one after another: each cut at its deadline frees its threads for the
    next call: the number of read threads does not grow from call to call."""
    counts = []
    with FaultFhirServer(RECORD, mode="drip", drip_interval=DRIP) as drip:
        for _ in range(3):
            status, cards, elapsed = call(app, drip.url)
            assert status == 200 and elapsed < BUDGET + MARGIN
            assert reads.reads_running() == 0
            time.sleep(0.05)                         # the last threads park
            counts.append(len(_fetch_threads()))
    assert counts[0] >= 12 and counts[1] <= counts[0] and counts[2] <= counts[0], counts


def test_a_hostile_server_gets_no_more_than_its_limit_and_another_server_still_gets_read():
    client = FhirClient(("http://127.0.0.1",), total_budget=BUDGET, per_server=4)
    queries = {f"q{i}": f"Condition?patient=p{i}" for i in range(12)}
    with FaultFhirServer(RECORD, mode="hang") as hostile, FaultFhirServer(RECORD) as healthy:
        hostile_results: list[dict] = []
        hostile_calls = [threading.Thread(target=lambda: hostile_results.append(
            client.fetch_all(hostile.url, None, queries))) for _ in range(2)]
        for thread in hostile_calls:
            thread.start()
        assert hostile.wait_in_flight(4)
        start = time.monotonic()
        other = client.fetch_all(healthy.url, None, {f"q{i}": f"Condition?patient=p{i}" for i in range(3)})
        assert time.monotonic() - start < BUDGET / 2
        assert all(resources is not None and why is None for resources, why in other.values())
        assert healthy.stats["max_in_flight"] <= 3
        time.sleep(0.2)
        assert hostile.in_flight == 4
        for thread in hostile_calls:
            thread.join(BUDGET + MARGIN)
        assert hostile.stats["max_in_flight"] == 4     # a place freed at the first call's deadline may be reused
    reasons = {why for results in hostile_results for _, why in results.values()}
    assert any("its limit" in why for why in reasons), reasons      # the reads that never got a place say so
    assert client.in_flight() == 0 and reads.reads_running() == 0


def test_the_per_server_limit_is_a_setting(tmp_path, knowledge, monkeypatch):
    monkeypatch.setenv("JAK_CDS_FHIR_MAX_PER_SERVER", "3")
    settings = Settings.from_env(knowledge_dir=Settings().knowledge_dir, auth="off",
                                 database_url=f"sqlite:///{tmp_path / 't.sqlite3'}")
    assert settings.fhir_max_per_server == 3
    assert create_app(settings, knowledge=knowledge).extensions["jak_engine"].fhir_client.per_server == 3


def test_a_kept_alive_connection_that_starts_dripping_is_cut_too():
    """The second read goes out on the connection the first one left in the pool (no new connect)."""
    client = FhirClient(("http://127.0.0.1",), total_budget=BUDGET)
    with FaultFhirServer(RECORD, mode="ok", modes={"Condition": "drip"}, drip_interval=DRIP) as fhir:
        [(patient, why)] = client.fetch_all(fhir.url, None, {"patient": "Patient/p1"}).values()
        assert patient and why is None
        start = time.monotonic()
        [(resources, why)] = client.fetch_all(fhir.url, None, {"conditions": "Condition?patient=p1"}).values()
        elapsed = time.monotonic() - start
        assert fhir.stats["connections"] == 1
    assert resources is None and "did not answer" in why
    assert elapsed < BUDGET + MARGIN and reads.reads_running() == 0


def test_shutdown_cuts_reads_in_flight_after_the_grace_and_refuses_new_ones():
    client = FhirClient(("http://127.0.0.1",), total_budget=30.0)
    results: dict = {}
    with FaultFhirServer(RECORD, mode="ok", modes={"Observation": "drip"}, drip_interval=DRIP) as fhir:
        reading = threading.Thread(target=lambda: results.update(client.fetch_all(
            fhir.url, FhirAuthorization(access_token="t"),
            {"patient": "Patient/p1", "labs": "Observation?patient=p1&code=718-7"})))
        reading.start()
        assert fhir.wait_in_flight(1)
        start = time.monotonic()
        client.shutdown(grace=0.3)
        reading.join(5)
        elapsed = time.monotonic() - start
        assert not reading.is_alive() and 0.25 < elapsed < 0.3 + MARGIN
        assert results["patient"][0] and results["labs"] == (None, "not read: the service was stopping")
        assert client.fetch_all(fhir.url, None, {"p": "Patient/p1"}) == {"p": (None, "not read: the service "
                                                                               "was stopping")}
    assert reads.reads_running() == 0


def test_a_call_that_arrives_while_stopping_still_reads_within_the_grace():
    """After SIGTERM gunicorn still answers requests on kept-alive connections for a moment: their reads get
    what is left of the grace, not a refusal."""
    client = FhirClient(("http://127.0.0.1",), total_budget=30.0)
    with FaultFhirServer(RECORD, mode="ok", modes={"Observation": "drip"}, drip_interval=DRIP) as fhir:
        client.shutdown(grace=0.5)
        start = time.monotonic()
        results = client.fetch_all(fhir.url, None, {"patient": "Patient/p1", "labs": "Observation?patient=p1"})
        assert time.monotonic() - start < 0.5 + MARGIN
    assert results["patient"][0] and results["labs"] == (None, "not read: the service was stopping")


def test_the_token_goes_to_the_fault_server_and_is_never_logged(caplog):
    """The drills' server gets the bearer token; nothing logged carries it, whatever fails."""
    caplog.set_level(logging.DEBUG)
    client = FhirClient(("http://127.0.0.1",), total_budget=0.5)
    for fault in FAULTS:
        with FaultFhirServer(RECORD, mode=fault, drip_interval=DRIP) as fhir:
            client.fetch_all(fhir.url, FhirAuthorization(access_token="tok-drill-secret"), {"p": "Patient/p1"})
        assert fhir.authorizations == {"Bearer tok-drill-secret"}, fault
    assert "tok-drill-secret" not in "\n".join(r.getMessage() for r in caplog.records)


def test_a_cut_in_the_middle_of_the_headers_logs_no_patient_id(caplog):
    """urllib3 warns "Failed to parse headers (url=...)" when the connection is cut while they arrive; the
    URL of a FHIR query names the patient, so only the server's origin may be logged."""
    caplog.set_level(logging.DEBUG)
    client = FhirClient(("http://127.0.0.1",), total_budget=0.5)
    with FaultFhirServer(RECORD, mode="drip", drip_interval=0.01) as fhir:     # ~40 bytes: into the headers
        [(resources, why)] = client.fetch_all(fhir.url, None, {"k": "Condition?patient=patient-4711"}).values()
    assert resources is None and "did not answer" in why
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "patient-4711" not in logged


def test_a_read_that_cannot_get_a_thread_is_a_gap_not_a_500(monkeypatch):
    client = FhirClient(("http://127.0.0.1",), total_budget=BUDGET)
    monkeypatch.setattr(reads, "workers", reads.ReadThreads())     # no idle thread yet

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    with FaultFhirServer(RECORD) as fhir:
        [(patient, _)] = client.fetch_all(fhir.url, None, {"patient": "Patient/p1"}).values()   # one idle thread
        monkeypatch.setattr(threading.Thread, "start", no_thread)
        results = client.fetch_all(fhir.url, None, {"patient": "Patient/p1", "conditions": "Condition?patient=p1"})
    assert patient
    assert sorted(why or "" for _, why in results.values()) == ["", "not read: the service could not start a "
                                                                     "thread for it"]


def test_the_fault_server_command_serves_loopback_only(capsys):
    from cds_service.cli import main
    assert main(["fault-fhir-server", "--mode", "hang", "--host", "0.0.0.0"]) == 2
    assert "loopback only" in capsys.readouterr().err


def test_the_fault_server_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="unknown fault mode"):
        FaultFhirServer(RECORD, modes={"Observation": "slow"})
