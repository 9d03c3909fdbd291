"""In-process timing of hook calls next to the unavoidable floor.

Per case (hook, number of observations) and per repetition, interleaved so a
change in machine load hits every series alike:

- ``call``: what the service does for a hook call without HTTP: strict JSON
  decode of the request bytes (as ``api.read_json_body``), ``hooks.evaluate``,
  JSON encode of the response, and freeing the call's objects (also split into
  ``decode``/``evaluate``/``encode``/``release``); the floor frees its decoded
  body inside its timing too, so both sides pay for it;
- ``json_floor``: stdlib ``json.loads`` of the same request bytes + ``json.dumps``
  of the same response body;
- ``flask_noop``: Flask test client POST of the same bytes to the no-op route;
- ``flask_app``: Flask test client POST of the same bytes to the real app.

Wall-clock (``perf_counter``) and CPU time of the thread (``thread_time``,
insensitive to other processes on the machine) are both kept.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.noop_app import create_noop_app
from bench.workload import EVALUATION_DATE, SERVICE_FOR_HOOK, hook_request
from cds_service import hooks
from cds_service.cli.server import production_app
from cds_service.config import Settings
from cds_service.fhir import strict_json

SERIES = ("call", "decode", "evaluate", "encode", "release", "json_floor", "json_loads", "flask_noop", "flask_app")


def percentile(ordered: list[float], percent: int) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    n = len(ordered)
    return ordered[max(0, min(n - 1, -(-percent * n // 100) - 1))]


def summary(samples: list[float]) -> dict:
    """Milliseconds: median, p99 (nearest rank), min, mean, n."""
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1e3, 4),
        "p99_ms": round(percentile(ordered, 99) * 1e3, 4),
        "min_ms": round(ordered[0] * 1e3, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 4),
        "n": len(ordered),
    }


@dataclass
class Case:
    hook: str
    observations: int
    irrelevant: int = 0
    label: str = ""
    jak: bool = True  # False: an order of another drug, a patient on no JAK inhibitor
    interacting: bool = False  # with jak=False: the other drug could interact (the medication list is read)
    wall: dict = field(default_factory=lambda: {s: [] for s in SERIES})
    cpu: dict = field(default_factory=lambda: {s: [] for s in SERIES})

    @property
    def name(self) -> str:
        return self.label or f"{self.hook} {self.observations} obs" + (
            f" + {self.irrelevant} irrelevant" if self.irrelevant else ""
        )


class Bench:
    """The engine, the real app and the no-op app, built once."""

    def __init__(self, workdir: Path):
        self.settings = Settings(
            evaluation_date=EVALUATION_DATE, auth="off", database_url=f"sqlite:///{workdir / 'bench-inprocess.sqlite3'}"
        )
        # built as the production server builds it (database migrated, start-up objects frozen for the GC)
        self.app = production_app(self.settings, loopback=True)
        self.engine = self.app.extensions["jak_engine"]
        self.client = self.app.test_client()

    def call(self, service, raw: bytes) -> tuple[bytes, tuple[float, ...], tuple[float, ...]]:
        """One in-process hook call: (response bytes, wall and CPU seconds of decode, evaluate, encode, release).

        Release is freeing the decoded request and everything the pipeline built from it, which a server
        pays when the view returns (and the JSON floor pays inside its own timing)."""
        w0, c0 = time.perf_counter(), time.thread_time()
        body = strict_json.loads(raw)
        if strict_json.has_lone_surrogate(raw, body):  # as api.read_json_body checks every body
            raise ValueError("the benchmark request holds an unpaired surrogate")
        w1, c1 = time.perf_counter(), time.thread_time()
        result = hooks.evaluate(self.engine, service, body)
        w2, c2 = time.perf_counter(), time.thread_time()
        out = json.dumps(result.body).encode()
        w3, c3 = time.perf_counter(), time.thread_time()
        del body, result
        w4, c4 = time.perf_counter(), time.thread_time()
        return out, (w1 - w0, w2 - w1, w3 - w2, w4 - w3), (c1 - c0, c2 - c1, c3 - c2, c4 - c3)


def _timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def run_case(bench: Bench, case: Case, budget_s: float, min_reps: int, max_reps: int) -> dict:
    request = hook_request(case.hook, case.observations, case.irrelevant, case.jak, case.interacting)
    raw = json.dumps(request).encode()
    service = bench.engine.services[SERVICE_FOR_HOOK[case.hook]]
    path = f"/cds-services/{service.id}"
    response_bytes = bench.call(service, raw)[0]
    response = json.loads(response_bytes)
    noop = create_noop_app(bench.settings, response).test_client()
    probe = bench.client.post(path, data=raw, content_type="application/json")
    assert probe.status_code == 200, probe.get_data(as_text=True)[:500]
    assert noop.post(path, data=raw, content_type="application/json").status_code == 200

    def one_round() -> None:
        _, walls, cpus = bench.call(service, raw)
        for series, w, c in (
            *zip(("decode", "evaluate", "encode", "release"), walls, cpus, strict=True),
            ("call", sum(walls), sum(cpus)),
        ):
            case.wall[series].append(w)
            case.cpu[series].append(c)
        for series, fn in (
            ("json_floor", lambda: (json.loads(raw), json.dumps(response).encode())),
            ("json_loads", lambda: json.loads(raw)),
            ("flask_noop", lambda: noop.post(path, data=raw, content_type="application/json")),
            ("flask_app", lambda: bench.client.post(path, data=raw, content_type="application/json")),
        ):
            w, c = _timed(fn)
            case.wall[series].append(w)
            case.cpu[series].append(c)

    for _ in range(3):  # warm-up: caches, lazy imports
        one_round()
    case.wall = {s: [] for s in SERIES}
    case.cpu = {s: [] for s in SERIES}
    gc.collect()
    started = time.perf_counter()
    reps = 0
    while reps < max_reps and (reps < min_reps or time.perf_counter() - started < budget_s):
        one_round()
        reps += 1
    wall = {s: summary(v) for s, v in case.wall.items()}
    cpu = {s: summary(v) for s, v in case.cpu.items()}
    return {
        "name": case.name,
        "hook": case.hook,
        "observations": case.observations,
        "irrelevant": case.irrelevant,
        "jak": case.jak,
        "request_bytes": len(raw),
        "response_bytes": len(response_bytes),
        "cards": len(response["cards"]),
        "card_summaries": [c.get("summary") for c in response["cards"]],
        "reps": reps,
        "wall": wall,
        "cpu": cpu,
        "ratio_call_to_json_floor": _ratio(wall["call"]["median_ms"], wall["json_floor"]["median_ms"]),
        "ratio_call_to_json_floor_p99": _ratio(wall["call"]["p99_ms"], wall["json_floor"]["p99_ms"]),
        "ratio_flask_app_to_noop": _ratio(wall["flask_app"]["median_ms"], wall["flask_noop"]["median_ms"]),
        "cpu_ratio_call_to_json_floor": _ratio(cpu["call"]["median_ms"], cpu["json_floor"]["median_ms"]),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def run(
    sizes: list[int],
    hooks_: list[str],
    budget_s: float,
    min_reps: int,
    max_reps: int,
    target_obs: int = 200,
    irrelevant: int = 5000,
    progress=print,
    target_reps: int = 0,
) -> dict:
    """``target_reps``: at least this many repetitions of the target case (order-sign, ``target_obs``):
    its p99 is a target, and over the ~150 repetitions a 2 s budget gives it is the second-largest sample."""
    thresholds = gc.get_threshold()
    try:
        return _run(sizes, hooks_, budget_s, min_reps, max_reps, target_obs, irrelevant, progress, target_reps)
    finally:  # the server's GC settings were applied to this process: undo
        gc.unfreeze()
        gc.set_threshold(*thresholds)


QUIET = {"order-sign": "another drug", "order-select": "another drug", "patient-view": "no JAK inhibitor"}


def _run(sizes, hooks_, budget_s, min_reps, max_reps, target_obs, irrelevant, progress, target_reps) -> dict:
    with tempfile.TemporaryDirectory(prefix="jak-bench-") as tmp:
        bench = Bench(Path(tmp))
        cases = [Case(h, n) for h in hooks_ for n in sizes]
        if "order-sign" in hooks_ and target_obs not in sizes:
            cases.append(Case("order-sign", target_obs))
        # what an EHR sends most: calls we have nothing to say about
        cases += [Case(h, target_obs, jak=False, label=f"{h} {target_obs} obs, {QUIET[h]}") for h in hooks_]
        if "order-sign" in hooks_:  # decision 17: an order that could interact reads the medication list
            cases.append(
                Case(
                    "order-sign",
                    target_obs,
                    jak=False,
                    interacting=True,
                    label=f"order-sign {target_obs} obs, an interacting drug, no JAK inhibitor",
                )
            )
        base = Case("order-sign", target_obs, label=f"order-sign {target_obs} obs (irrelevant baseline)")
        noisy = Case("order-sign", target_obs, irrelevant)
        results = []
        for case in cases:
            progress(f"  in-process: {case.name} ...")
            if case.hook == "order-sign" and case.observations == target_obs and case.jak and target_reps > min_reps:
                results.append(run_case(bench, case, budget_s, target_reps, max(max_reps, target_reps)))
            else:
                results.append(run_case(bench, case, budget_s, min_reps, max_reps))
        progress(f"  in-process: {noisy.name} vs {base.name} ...")
        base_result = run_case(bench, base, budget_s, min_reps, max_reps)
        noisy_result = run_case(bench, noisy, budget_s, min_reps, max_reps)
        bench.app.extensions["jak_store"].dispose()
    return {"cases": results, "irrelevant": irrelevant_cost(base_result, noisy_result)}


def irrelevant_cost(base: dict, noisy: dict) -> dict:
    """What ``irrelevant`` extra observations add beyond decoding them, in units of their own decode time."""
    out = {"baseline": base, "with_irrelevant": noisy, "irrelevant_observations": noisy["irrelevant"]}
    for clock in ("wall", "cpu"):
        extra_call = noisy[clock]["call"]["median_ms"] - base[clock]["call"]["median_ms"]
        extra_decode = noisy[clock]["json_loads"]["median_ms"] - base[clock]["json_loads"]["median_ms"]
        extra_evaluate = noisy[clock]["evaluate"]["median_ms"] - base[clock]["evaluate"]["median_ms"]
        out[clock] = {
            "extra_call_ms": round(extra_call, 4),
            "extra_json_decode_ms": round(extra_decode, 4),
            "extra_evaluate_ms": round(extra_evaluate, 4),
            # beyond decoding the JSON: what the extra data costs, in units of its own decode time
            "beyond_decode_ratio": _ratio(extra_call - extra_decode, extra_decode),
            "evaluate_ratio": _ratio(extra_evaluate, extra_decode),
        }
    return out
