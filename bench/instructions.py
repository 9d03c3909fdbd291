"""Instructions per request, counted by callgrind: ``python -m bench.instructions`` (needs valgrind).

This VM's speed drifts by up to 2x within minutes, so timings cannot tell two versions of the code
apart when they differ by a few per cent; an instruction count can. Callgrind counts the instructions
a process executes: the same for the same code and input, whatever else the machine is doing. Each
app (the service, and the no-op route that only decodes and answers) is called at the WSGI level as in
``bench.wsgi``, once with ``--calls`` N1 and once with N2 requests, each run under valgrind; the
difference over N2 - N1 is what one request costs, start-up and warm-up left out. Memory stalls are
not counted, so the ratio here is a floor for the one timed over HTTP, not that ratio: interpreted
Python loses more to cold caches than the no-op's C decoder does.

    python -m bench.instructions                      # order-sign, 200 observations, 20 and 60 calls
    python -m bench.instructions --calls 10 30        # about a minute per run either way (start-up)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS = ("service", "noop")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def run_calls(app_name: str, hook: str, observations: int, calls: int, warmup: int = 10) -> None:
    """What runs under valgrind: ``warmup`` + ``calls`` requests to one app (leaving, the service's audit
    writer is flushed: its work belongs to the service's requests)."""
    from bench.wsgi import both_apps, call_app

    with both_apps(hook, observations) as (raws, path, apps):
        for i in range(warmup + calls):
            call_app(apps[app_name], path, raws[i % len(raws)])


def collected(valgrind_output: str) -> int:
    """The instruction total callgrind reports at exit."""
    found = _COLLECTED.findall(valgrind_output)
    if not found:
        raise RuntimeError("callgrind reported no instruction count:\n" + valgrind_output[-1500:])
    return int(found[-1])


def count(app_name: str, hook: str, observations: int, calls: int) -> int:
    with tempfile.TemporaryDirectory(prefix="jak-callgrind-") as tmp:
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            "-m",
            "bench.instructions",
            "--child",
            app_name,
            "--hook",
            hook,
            "--observations",
            str(observations),
            "--calls",
            str(calls),
        ]
        # a fixed hash seed: set and dict layouts, and so the count, repeat from run to run
        env = dict(os.environ, PYTHONHASHSEED="0", JAK_CDS_AUTH="off")
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"valgrind run of {app_name} failed ({done.returncode}):\n{done.stderr[-1500:]}")
        return collected(done.stderr)


def measure(hook: str, observations: int, low: int, high: int) -> dict:
    per_request = {
        app: (count(app, hook, observations, high) - count(app, hook, observations, low)) / (high - low) for app in APPS
    }
    return {
        "hook": hook,
        "observations": observations,
        "calls": [low, high],
        "per_request": per_request,
        "noop_over_service": per_request["noop"] / per_request["service"],
    }


def table(result: dict) -> str:
    low, high = result["calls"]
    lines = [
        f"{result['hook']}, {result['observations']} observations: instructions per request "
        f"(callgrind, WSGI level, {high} minus {low} calls)"
    ]
    lines += [f"{app:<10} {result['per_request'][app]:>14,.0f}" for app in APPS]
    lines.append(
        f"no-op / service: {result['noop_over_service']:.3f} (the HTTP target, >= 0.5, is about time, "
        "which also pays for cache misses)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hook", default="order-sign", choices=("order-sign", "order-select", "patient-view"))
    parser.add_argument("--observations", type=int, default=200)
    parser.add_argument(
        "--calls", type=int, nargs="+", default=[20, 60], metavar="N", help="two call counts (a child run takes one)"
    )
    parser.add_argument("--child", choices=APPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_calls(args.child, args.hook, args.observations, args.calls[0])
        return 0
    if len(args.calls) != 2 or not 0 <= args.calls[0] < args.calls[1]:
        parser.error("--calls takes two counts, the first smaller")
    print(table(measure(args.hook, args.observations, *args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
