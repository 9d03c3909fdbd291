"""Where the time of one hook call goes: ``python -m bench.stages``.

    python -m bench.stages                              # order-sign, 200 observations, 500 calls
    python -m bench.stages --hook patient-view --observations 1000 --reps 300

Runs ``hooks.evaluate`` on the benchmark's generated request and times each step it calls
(request parsing, prefetch completion and indexing, patient facts, draft orders, each rule family,
cards, wire format) by wrapping those functions where ``hooks`` looks them up, so the pipeline
itself is not copied here and cannot drift from it. Prints best and median per step (microseconds)
and each step's share of the median call; the JSON decode of the request is shown for scale.
Best-of is the stable number on a machine whose speed drifts; medians move with it.

``--cold`` overwrites a buffer larger than the CPU caches before each call, as a server's caches are
between requests (other requests, the load, the network stack ran in between). Calls back to back
find the knowledge, the code and the just-decoded request in cache and flatter the memory-bound
steps; under HTTP load a call costs about what ``--cold`` shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.workload import SERVICE_FOR_HOOK, hook_request
from cds_service import hooks
from cds_service.fhir import strict_json


# (label, object holding the name hooks.evaluate (or a step it takes) calls, attribute)
def _steps() -> list[tuple[str, object, str]]:
    from cds_service import cards, orders, rules
    from cds_service.facts import coded_records, conditions, hepatic, labs, medications, safety
    from cds_service.hooks import steps as hook_steps
    from cds_service.record import completion

    steps = [
        ("parse request", hooks, "parse_request"),
        ("prefetch completion", completion.Completion, "fill"),
        ("record index (unread results dropped)", hook_steps, "read_record"),
        ("patient facts", hook_steps, "build_facts"),
        ("  of which lab results by analyte", labs, "read_labs"),
        ("  of which conditions", conditions, "read_conditions"),
        ("  of which medications", medications, "read_medications"),
        ("  of which Child-Pugh", hepatic, "read_child_pugh"),
        ("  of which coded records", coded_records, "read_records"),
        ("  of which coded results (serology, TB ...)", safety, "read_coded_results"),
        ("  of which vaccinations", safety, "read_immunizations"),
        ("  of which allergies", safety, "read_allergies"),
        ("medications, read first (patient-view)", hook_steps, "read_medications"),
        ("draft orders recognised (incl. FHIR R4 validation)", orders, "recognise_drafts"),
        ("  of which FHIR R4 validation", orders, "validate_r4"),
        ("draft orders read (dose, indication, phase)", orders, "read_orders"),
    ]
    families = dict.fromkeys(rules.ORDER_RULES + rules.PATIENT_VIEW_RULES + rules.NOTICE_RULES)
    steps += [
        (f"rules: {getattr(family, '__name__', '?').rsplit('.', 1)[-1]}", family, "evaluate") for family in families
    ]
    steps += [("cards", cards, "build_cards"), ("wire format", hook_steps, "cards_response")]
    return steps


@contextmanager
def timed_steps(samples: dict[str, list[float]]):
    """Wrap each step so that every call adds its wall time to ``samples[label]`` (rule families are
    generators: their time is that of draining them)."""
    originals = []
    for label, owner, name in _steps():
        original = getattr(owner, name)
        originals.append((owner, name, original))
        setattr(owner, name, _wrap(original, samples.setdefault(label, []), label.startswith("rules:")))
    try:
        yield
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _wrap(function, sink: list[float], drain: bool):
    if drain:

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            items = list(function(*args, **kwargs))
            sink.append(time.perf_counter() - t0)
            return iter(items)
    else:

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sink.append(time.perf_counter() - t0)

    return wrapper


def cache_evictor():
    """A function that overwrites 64 MiB (or twice the last-level cache, if larger): nothing of the
    previous call stays in any CPU cache."""
    size = 64 << 20
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
        size = max(size, 2 * int(text.rstrip("KkMm")) << (20 if text[-1] in "Mm" else 10))
    except (OSError, ValueError, IndexError):
        pass
    buffer, zeros = bytearray(size), bytes(size)

    def evict() -> None:
        buffer[:] = zeros

    return evict


def measure(hook: str, observations: int, reps: int, cold: bool = False, jak: bool = True) -> dict:
    from bench.inprocess import Bench

    raw = json.dumps(hook_request(hook, observations, jak=jak)).encode()
    with tempfile.TemporaryDirectory(prefix="jak-stages-") as tmp:
        bench = Bench(Path(tmp))
        service = bench.engine.services[SERVICE_FOR_HOOK[hook]]
        for _ in range(20):  # warm-up: caches, lazy imports
            hooks.evaluate(bench.engine, service, strict_json.loads(raw))
        samples: dict[str, list[float]] = {"JSON decode of the request (for scale)": [], "whole evaluate": []}
        evict = cache_evictor() if cold else (lambda: None)
        with timed_steps(samples):
            for _ in range(reps):
                evict()
                t0 = time.perf_counter()
                body = strict_json.loads(raw)
                t1 = time.perf_counter()
                hooks.evaluate(bench.engine, service, body)
                t2 = time.perf_counter()
                samples["JSON decode of the request (for scale)"].append(t1 - t0)
                samples["whole evaluate"].append(t2 - t1)
        bench.app.extensions["jak_store"].dispose()
    per_call = {label: _per_call(values, reps) for label, values in samples.items() if values}
    return {
        "hook": hook,
        "observations": observations,
        "reps": reps,
        "cold": cold,
        "jak": jak,
        "request_bytes": len(raw),
        "steps": per_call,
    }


def _per_call(values: list[float], reps: int) -> dict:
    """A step called k times per hook call (e.g. a family for two orders) is summed per call."""
    k = max(1, round(len(values) / reps))
    per_call = [sum(values[i : i + k]) for i in range(0, len(values) - k + 1, k)]
    return {
        "calls_per_hook_call": k,
        "best_us": round(min(per_call) * 1e6, 1),
        "median_us": round(statistics.median(per_call) * 1e6, 1),
    }


def table(result: dict) -> str:
    whole = result["steps"]["whole evaluate"]["median_us"]
    notes = ", CPU caches overwritten before each call" if result.get("cold") else ""
    notes += "" if result.get("jak", True) else ", nothing to say (another drug / no JAK inhibitor)"
    lines = [
        f"{result['hook']}, {result['observations']} observations ({result['request_bytes'] / 1024:.0f} KB), "
        f"{result['reps']} calls{notes}; microseconds per hook call",
        f"{'step':<44} {'best':>8} {'median':>8} {'% of evaluate':>14}",
    ]
    lines.append("-" * len(lines[-1]))
    for label, row in result["steps"].items():
        share = "" if label.startswith("JSON") or label == "whole evaluate" else f"{100 * row['median_us'] / whole:.0f}"
        lines.append(f"{label:<44} {row['best_us']:>8.1f} {row['median_us']:>8.1f} {share:>14}")
    return "\n".join(lines)


def case_arguments(prog: str, doc: str, count: str, count_default: int) -> argparse.ArgumentParser:
    """The options of the per-call tools (this one, ``bench.wsgi``): hook, observations, how many calls, cold."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--hook", default="order-sign", choices=sorted(SERVICE_FOR_HOOK))
    parser.add_argument("--observations", type=int, default=200)
    parser.add_argument(f"--{count}", type=int, default=count_default)
    parser.add_argument("--cold", action="store_true", help="overwrite the CPU caches before each call")
    parser.add_argument(
        "--no-jak",
        dest="jak",
        action="store_false",
        help="a call with nothing to say: an order of another drug, a patient on no JAK inhibitor",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = case_arguments("python -m bench.stages", __doc__, "reps", 500).parse_args(argv)
    print(table(measure(args.hook, args.observations, args.reps, args.cold, args.jak)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
