"""Smoke run of the benchmark code paths: very few repetitions, structure only, no timing assertions."""
from __future__ import annotations

import json

import orjson
import pytest

from bench import __main__ as bench_main
from bench import http_load, inprocess, workload
from bench.noop_app import create_noop_app
from cds_service.fhir.values import resources_of


def test_generated_requests_are_realistic_and_sized():
    body = workload.hook_request("order-sign", 100)
    observations = [r for key in ("haematology", "chemistry", "screening", "vitals")
                    for r in resources_of(body["prefetch"][key])]
    assert len(observations) == 100
    codes = {o["code"]["coding"][0]["code"] for o in observations}
    assert {"718-7", "751-8", "2160-0", "29463-7", workload.HR} <= codes
    assert len(resources_of(body["prefetch"]["conditions"])) >= 3
    assert len(resources_of(body["prefetch"]["medications"])) >= 3
    assert body["context"]["draftOrders"]["entry"][0]["resource"]["status"] == "draft"
    noisy = workload.hook_request("order-sign", 100, 300)
    assert len(resources_of(noisy["prefetch"]["vitals"])) == len(resources_of(body["prefetch"]["vitals"])) + 300
    view = workload.hook_request("patient-view", 10)
    assert "draftOrders" not in view["context"]
    jak_texts = [m["medicationCodeableConcept"]["text"] for m in resources_of(view["prefetch"]["medications"])]
    assert any("upadacitinib" in t for t in jak_texts)
    quiet_view = workload.hook_request("patient-view", 10, jak=False)
    assert len(resources_of(quiet_view["prefetch"]["medications"])) == len(jak_texts) - 1
    quiet_order = workload.hook_request("order-sign", 10, jak=False)
    assert "amoxicillin" in quiet_order["context"]["draftOrders"]["entry"][0]["resource"][
        "medicationCodeableConcept"]["text"]


def test_noop_route_decodes_and_answers_the_given_body():
    client = create_noop_app(response_body={"cards": [{"summary": "x"}]}).test_client()
    answer = client.post("/cds-services/jak-order-sign", json={"hook": "order-sign"})
    assert answer.status_code == 200 and answer.get_json() == {"cards": [{"summary": "x"}]}
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert client.post("/cds-services/x", data=b"{not json", content_type="application/json").status_code >= 400


def test_in_process_run_writes_the_expected_structure(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert bench_main.main(["--sizes", "10", "--hooks", "order-sign,patient-view", "--budget", "0",
                            "--min-reps", "2", "--max-reps", "2", "--target-reps", "3", "--irrelevant", "30", "--no-http",
                            "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"machine", "settings", "inprocess", "targets", "created"}
    cases = result["inprocess"]["cases"]
    assert {(c["hook"], c["observations"], c["jak"]) for c in cases} == {
        ("order-sign", 10, True), ("patient-view", 10, True), ("order-sign", 200, True),
        ("order-sign", 200, False), ("patient-view", 200, False)}        # the last two: nothing to say
    assert all((case["cards"] == 0) == (not case["jak"]) for case in cases)
    for case in cases:
        assert case["reps"] == (3 if (case["hook"], case["observations"], case["jak"]) == ("order-sign", 200, True)
                                else 2)
        for series in inprocess.SERIES:
            assert set(case["wall"][series]) == {"median_ms", "p99_ms", "min_ms", "mean_ms", "n"}
            assert case["wall"][series]["n"] == case["cpu"][series]["n"] == case["reps"]
        assert case["request_bytes"] > 0 and case["response_bytes"] > 0
        # the call is all of its parts, freeing its objects included (the JSON floor frees its body too)
        parts = ("decode", "evaluate", "encode", "release")
        assert case["cpu"]["call"]["mean_ms"] == pytest.approx(sum(case["cpu"][p]["mean_ms"] for p in parts), abs=1e-3)
        assert isinstance(case["ratio_call_to_json_floor"], float)
    irrelevant = result["inprocess"]["irrelevant"]
    assert irrelevant["irrelevant_observations"] == 30
    assert set(irrelevant["wall"]) >= {"extra_call_ms", "extra_json_decode_ms", "beyond_decode_ratio"}
    assert [t["target"].split(":")[0] for t in result["targets"]] == [
        "order-sign 200 obs", "order-sign 200 obs", "order-sign 200 obs", "order-sign 200 obs", "30 irrelevant obs"]
    assert all(set(t) == {"target", "value", "limit", "met"} for t in result["targets"])
    assert result["steadiness"]["case"] == "order-sign 200 obs"
    assert "cpu_stolen_share" in result["machine"]
    assert result["auth"]["verify"]["n"] == result["auth"]["replay_record"]["n"] == 2   # as many as the cases
    assert result["no_prefetch"]["calls"] == 2 and result["no_prefetch"]["median_ms"] > 0    # same answer read
    printed = capsys.readouterr().out
    assert "order-sign 10 obs" in printed and "Targets" in printed and "Machine steadiness during" in printed
    assert "Authentication per call in production" in printed and "Without prefetch (order-sign" in printed
    # the service decodes faster than the stdlib floor the target is set against: both are said
    assert f"the service's own decode (orjson {orjson.__version__}" in printed and "json.loads" in printed
    assert bench_main.main(["--from-json", str(out), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "| order-sign 10 obs | " in printed and "| target | measured | limit | met |" in printed


def _series(median: float, p99: float) -> dict:
    return {"median_ms": median, "p99_ms": p99, "min_ms": median / 2, "mean_ms": median, "n": 100}


def test_steadiness_puts_the_floor_spread_beside_the_call_spread():
    """A p99 miss is read beside how widely the JSON floor alone (none of our code) spread in the same run."""
    case = {"name": "order-sign 200 obs", "hook": "order-sign", "observations": 200, "irrelevant": 0, "jak": True,
            "wall": {"json_floor": _series(1.0, 2.4), "call": _series(3.0, 6.6)}}
    quiet = dict(case, name="order-sign 200 obs, another drug", jak=False,
                 wall={"json_floor": _series(1.0, 1.0), "call": _series(1.0, 1.0)})
    result = {"inprocess": {"cases": [quiet, case]}}
    assert bench_main.steadiness(result) == {"case": "order-sign 200 obs", "json_floor_p99_over_median": 2.4,
                                             "call_p99_over_median": 2.2}
    assert "JSON floor alone (no code of ours) 2.40, of the hook call 2.20" in bench_main.steadiness_line(result)
    assert bench_main.steadiness({"inprocess": {"cases": [quiet]}}) is None


def test_stolen_cpu_time_is_read_from_two_proc_stat_snapshots():
    """A VM whose hypervisor runs other guests on its CPUs says so in /proc/stat (steal, the 8th number)."""
    before = bench_main.cpu_counters("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n")
    after = bench_main.cpu_counters("cpu  200 0 100 1500 0 0 0 200 0 0\ncpu0 1 2 3\n")
    assert before == (50, 1000) and after == (200, 2000)
    assert bench_main.stolen_share(before, after) == 0.15
    assert bench_main.stolen_share(None, after) is None and bench_main.stolen_share(after, after) is None
    assert "stolen by the hypervisor during the run 15.0 %" in bench_main.stolen_line({"cpu_stolen_share": 0.15})
    assert bench_main.stolen_line({}) == ""


def test_http_run_starts_and_stops_both_servers():
    result = http_load.run(workers=1, concurrency=2, requests_total=6, max_seconds=10, observations=10,
                           hooks_=["order-sign"], progress=lambda _msg: None)
    (run,) = result["runs"]
    for side in ("service", "noop"):
        assert run[side]["ok"] == 6 and run[side]["errors"] == 0
        assert run[side]["requests_per_s"] > 0
        assert set(run[side]["latency"]) >= {"median_ms", "p99_ms"}
        assert run[side]["server_cpu_ms_per_request"] > 0       # the server's CPU, read from /proc
    assert run["throughput_ratio"] > 0
    assert len(run["round_ratios"]) == 3 and all(r > 0 for r in run["round_ratios"])   # 3 rounds by default
    # the service with authentication on: every request carried its own signed token and was accepted
    assert run["authenticated"]["ok"] == 6 and run["authenticated"]["errors"] == 0
    assert run["authenticated"]["statuses"] == {"200": 6}
    assert run["authenticated_ratio"] > 0
    assert run["response_bytes"] > 0


def test_stage_breakdown_times_every_step_of_the_call_and_puts_the_pipeline_back():
    from bench import stages
    from cds_service import hooks, orders
    from cds_service.hooks import steps as hook_steps
    from cds_service.record.completion import Completion

    before = (hook_steps.build_facts, hooks.parse_request, orders.validate_r4, hook_steps.read_record, Completion.fill)
    result = stages.measure("order-sign", 10, reps=3)
    steps = result["steps"]
    for label in ("whole evaluate", "parse request", "prefetch completion", "patient facts",
                  "draft orders recognised (incl. FHIR R4 validation)", "  of which FHIR R4 validation",
                  "draft orders read (dose, indication, phase)", "rules: dose",
                  "rules: screening", "cards", "wire format"):
        assert steps[label]["best_us"] > 0, label
    assert "rules: monitoring" not in steps                 # a patient-view family: not run on order-sign
    assert "medications, read first (patient-view)" not in steps
    assert steps["whole evaluate"]["best_us"] >= steps["patient facts"]["best_us"]
    assert (hook_steps.build_facts, hooks.parse_request, orders.validate_r4, hook_steps.read_record,
            Completion.fill) == before
    assert "% of evaluate" in stages.table(result)


def test_a_call_with_nothing_to_say_reads_no_more_than_it_needs():
    """Another drug's order: the drafts only; a patient on no JAK inhibitor: the medications only."""
    from bench import stages

    order = stages.measure("order-sign", 10, reps=2, jak=False)["steps"]
    assert "draft orders recognised (incl. FHIR R4 validation)" in order
    assert not {"prefetch completion", "patient facts", "rules: dose"} & set(order)
    view = stages.measure("patient-view", 10, reps=2, jak=False)
    assert "medications, read first (patient-view)" in view["steps"]
    assert not {"record index (unread results dropped)", "patient facts",
                "rules: monitoring"} & set(view["steps"])
    assert "nothing to say" in stages.table(view)


def test_stage_breakdown_with_cold_caches_says_so_and_times_the_same_steps():
    from bench import stages

    result = stages.measure("order-sign", 10, reps=2, cold=True)
    assert result["cold"] is True
    assert result["steps"]["whole evaluate"]["best_us"] > 0 and result["steps"]["rules: dose"]["best_us"] > 0
    assert "CPU caches overwritten before each call" in stages.table(result)
    assert "overwritten" not in stages.table(stages.measure("order-sign", 10, reps=1))


def test_wsgi_level_run_calls_both_apps_and_reports_the_extra():
    from bench import wsgi

    result = wsgi.measure("order-sign", 10, calls=3, cold=True, warmup=1)
    for app in ("service", "noop"):
        assert 0 < result[app]["p25_ms"] <= result[app]["median_ms"] <= result[app]["p75_ms"]
    assert result["extra_ms"] == result["service"]["median_ms"] - result["noop"]["median_ms"]
    assert "CPU caches overwritten" in wsgi.table(result) and "service - no-op" in wsgi.table(result)


def test_percentiles_are_nearest_rank():
    ordered = [float(i) for i in range(1, 101)]          # 1..100
    assert inprocess.percentile(ordered, 99) == 99.0 and inprocess.percentile(ordered, 90) == 90.0
    assert inprocess.percentile([5.0], 99) == 5.0
    assert inprocess.percentile([1.0, 2.0, 3.0], 90) == 3.0      # rank ceil(2.7) = 3


def test_instruction_count_runs_both_apps_and_reads_callgrinds_total():
    """The part that runs under valgrind calls each app for real (a failing call raises), and the total is
    read from callgrind's own exit line; a run that reports none is an error, not a zero."""
    from bench import instructions

    for app in instructions.APPS:
        instructions.run_calls(app, "order-sign", 10, calls=2, warmup=1)
    assert instructions.collected("==6943== Events    : Ir\n==6943== Collected : 4430615125\n") == 4430615125
    with pytest.raises(RuntimeError, match="no instruction count"):
        instructions.collected("valgrind: command not found")
    result = {"hook": "order-sign", "observations": 200, "calls": [20, 60],
              "per_request": {"service": 14_000_000, "noop": 7_000_000}, "noop_over_service": 0.5}
    assert "no-op / service: 0.500" in instructions.table(result)
