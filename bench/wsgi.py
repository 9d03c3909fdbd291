"""The production app and the no-op app called at the WSGI level: ``python -m bench.wsgi``.

    python -m bench.wsgi --cold                  # what a busy server pays per request, without sockets
    python -m bench.wsgi --hook patient-view --observations 1000 --calls 300

Each call goes through the whole Flask app (body read, strict decode, hook pipeline, audit hand-over,
JSON response) with a prepared WSGI environ instead of a socket; the two apps alternate call by call.
CPU time of the calling thread per call, median and quartiles, and the service's extra over the no-op.
With ``--cold`` a buffer larger than the CPU caches is overwritten before every call: under HTTP load
the server's per-request CPU (``python -m bench``) follows these cold figures, not the warm ones, with
less noise than an HTTP run but still about +-0.15 ms from run to run on a shared VM: to compare two
checkouts, run it in each alternately, several times, and compare the medians of the extra. (The audit
writer thread's time is not in the calling thread's CPU.)
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.noop_app import create_noop_app
from bench.stages import cache_evictor, case_arguments
from bench.workload import SERVICE_FOR_HOOK, hook_request
from cds_service import hooks
from cds_service.fhir import strict_json


def _environ(path: str, raw: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": "application/json",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call_app(app, path: str, raw: bytes) -> None:
    status: list[str] = []
    b"".join(app(_environ(path, raw), lambda s, _headers, _exc=None: status.append(s)))
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"{path}: {status}")


def _quartiles(samples: list[int]) -> dict:
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "p25_ms": ordered[n // 4] / 1e6,
        "median_ms": statistics.median(ordered) / 1e6,
        "p75_ms": ordered[(3 * n) // 4] / 1e6,
    }


@contextmanager
def both_apps(hook: str, observations: int, jak: bool = True):
    """(requests, path, {"service": app, "noop": app}): the production app built as the server builds it and
    the no-op app answering what the service answers; a few distinct requests (hookInstance, card ids
    differ), as an EHR sends. The service's audit writer is flushed and its database closed on exit."""
    from bench.inprocess import Bench

    raws = [json.dumps(hook_request(hook, observations, jak=jak)).encode() for _ in range(4)]
    with tempfile.TemporaryDirectory(prefix="jak-wsgi-") as tmp:
        bench = Bench(Path(tmp))
        service = bench.engine.services[SERVICE_FOR_HOOK[hook]]
        answer = hooks.evaluate(bench.engine, service, strict_json.loads(raws[0])).body
        store = bench.app.extensions["jak_store"]
        try:
            yield (
                raws,
                f"/cds-services/{service.id}",
                {"service": bench.app, "noop": create_noop_app(bench.settings, answer)},
            )
        finally:
            store.flush()
            store.dispose()


def measure(hook: str, observations: int, calls: int, cold: bool = False, warmup: int = 20, jak: bool = True) -> dict:
    with both_apps(hook, observations, jak) as (raws, path, apps):
        evict = cache_evictor() if cold else (lambda: None)
        samples: dict[str, list[int]] = {"service": [], "noop": []}
        for i in range(warmup + calls):
            raw = raws[i % len(raws)]
            for name, app in apps.items():
                evict()
                t0 = time.thread_time_ns()
                call_app(app, path, raw)
                if i >= warmup:
                    samples[name].append(time.thread_time_ns() - t0)
    service_q, noop_q = _quartiles(samples["service"]), _quartiles(samples["noop"])
    return {
        "hook": hook,
        "observations": observations,
        "calls": calls,
        "cold": cold,
        "request_bytes": len(raws[0]),
        "service": service_q,
        "noop": noop_q,
        "extra_ms": service_q["median_ms"] - noop_q["median_ms"],
        "ratio": service_q["median_ms"] / noop_q["median_ms"],
    }


def table(result: dict) -> str:
    caches = "CPU caches overwritten before each call" if result["cold"] else "warm (back-to-back calls)"
    lines = [
        f"{result['hook']}, {result['observations']} observations ({result['request_bytes'] / 1024:.0f} KB), "
        f"{result['calls']} calls each, {caches}; CPU ms per call",
        f"{'app':<10} {'p25':>8} {'median':>8} {'p75':>8}",
    ]
    for name in ("service", "noop"):
        q = result[name]
        lines.append(f"{name:<10} {q['p25_ms']:>8.3f} {q['median_ms']:>8.3f} {q['p75_ms']:>8.3f}")
    lines.append(f"service - no-op: {result['extra_ms']:.3f} ms per call; service / no-op: {result['ratio']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = case_arguments("python -m bench.wsgi", __doc__, "calls", 200).parse_args(argv)
    print(table(measure(args.hook, args.observations, args.calls, args.cold, jak=args.jak)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
