"""A hook call without prefetch, as from an EHR that sends none: ``python -m bench.no_prefetch``.

    python -m bench.no_prefetch --latency 50 --calls 30

The service then reads the record from the EHR's FHIR server itself: one query per prefetch key (twelve
for order-sign), all at once. A local FHIR server stands in for the EHR's, answering each query after
``--latency`` milliseconds over the generated patient (200 observations). Wall time per hook call,
in-process (no HTTP in front of the service): what the clinician waits for beyond that latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.inprocess import percentile
from bench.workload import SERVICE_FOR_HOOK, hook_request
from cds_service import hooks
from cds_service.fhir.query import search
from cds_service.fhir.values import resources_of


class _FhirServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # twelve connections arrive at once


def _handler(resources: list[dict], latency_s: float, prefix: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def do_GET(self):  # noqa: N802 - http.server's name
            time.sleep(latency_s)
            body = json.dumps(search(resources, self.path[len(prefix) :].lstrip("/"))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    return Handler


def _serve(record: list[dict], latency_s: float, ports) -> None:
    """The stand-in FHIR server, in its own process so that its work is not in the measured call's."""
    server = _FhirServer(("127.0.0.1", 0), _handler(record, latency_s, "/fhir"))
    ports.send(server.server_port)
    server.serve_forever()


def measure(hook: str = "order-sign", observations: int = 200, latency_ms: float = 50.0, calls: int = 20) -> dict:
    import multiprocessing

    from bench.inprocess import Bench

    request = hook_request(hook, observations)
    prefetched = json.loads(json.dumps(request))
    record = [r for value in request.pop("prefetch").values() for r in resources_of(value) or []]
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.get_context("fork").Process(
        target=_serve, args=(record, latency_ms / 1000, send), daemon=True
    )
    server.start()
    try:
        if not receive.poll(30):
            raise RuntimeError("the stand-in FHIR server did not start")
        request["fhirServer"] = f"http://127.0.0.1:{receive.recv()}/fhir"
        request["fhirAuthorization"] = {
            "access_token": "bench-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "jak-cds",
        }
        walls: list[float] = []
        with tempfile.TemporaryDirectory(prefix="jak-bench-noprefetch-") as tmp:
            bench = Bench(Path(tmp))
            service = bench.engine.services[SERVICE_FOR_HOOK[hook]]
            expected = [c.card.summary for c in hooks.evaluate(bench.engine, service, prefetched).cards]
            for i in range(calls + 2):  # the first two open the connections
                t0 = time.perf_counter()
                result = hooks.evaluate(bench.engine, service, json.loads(json.dumps(request)))
                if i >= 2:
                    walls.append(time.perf_counter() - t0)
                got = [c.card.summary for c in result.cards]
                if got != expected:
                    raise RuntimeError(f"without prefetch the cards differ: {got}")
            bench.app.extensions["jak_store"].dispose()
    finally:
        server.terminate()
        server.join(5)
    ordered = sorted(walls)
    return {
        "hook": hook,
        "observations": observations,
        "fhir_latency_ms": latency_ms,
        "calls": len(walls),
        "median_ms": round(statistics.median(ordered) * 1e3, 2),
        "p90_ms": round(percentile(ordered, 90) * 1e3, 2),
    }


def line(result: dict) -> str:
    return (
        f"Without prefetch ({result['hook']}, {result['observations']} observations read from a FHIR server "
        f"answering each query in {result['fhir_latency_ms']:g} ms): {result['median_ms']:.1f} ms per call "
        f"(p90 {result['p90_ms']:.1f}, {result['calls']} calls, in-process)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.no_prefetch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hook", choices=sorted(SERVICE_FOR_HOOK), default="order-sign")
    parser.add_argument("--observations", type=int, default=200)
    parser.add_argument("--latency", type=float, default=50.0, help="ms before the FHIR server answers a query")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    print(line(measure(args.hook, args.observations, args.latency, args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
