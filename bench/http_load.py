"""HTTP throughput with the production server on loopback, next to the no-op app on the same server.

Starts ``jak-cds serve --workers N`` (gunicorn, gthread) and ``python -m
bench.noop_app`` (the same server settings) as subprocesses on free
127.0.0.1 ports with a temporary SQLite database, drives a bounded load (a
fixed number of requests, a duration limit; alternating rounds so that a
change in machine load hits both servers alike) from a pool of threads each
holding one keep-alive ``http.client`` connection, then stops both servers.
A third server, the service with authentication required and a trusted client whose signed tokens
the load generator sends (one fresh ES384 JWT per request, signed before the clock starts), takes its
turn in each round: what production's authentication costs under load (outside the target).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.inprocess import summary
from bench.workload import EVALUATION_DATE, SERVICE_FOR_HOOK, hook_request
from cds_service.config import Settings

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _env(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAK_CDS_") or k == "JAK_CDS_THREADS"}
    env.update(
        JAK_CDS_AUTH="off",
        JAK_CDS_EVALUATION_DATE=EVALUATION_DATE,
        JAK_CDS_DATABASE_URL=f"sqlite:///{workdir / 'bench-http.sqlite3'}",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


class Server:
    """A server subprocess on a free loopback port; stopped (SIGTERM to its process group) on exit."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict, log_path: Path, ready=(200,)):
        self.name, self.argv, self.port, self.env, self.log_path = name, argv, port, env, log_path
        self.ready = ready  # discovery answers that mean "up" (401: authentication required)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/cds-services")
                if conn.getresponse().status in self.ready:
                    conn.close()
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within 60 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def load(
    port: int,
    path: str,
    raw: bytes,
    requests_total: int,
    concurrency: int,
    max_seconds: float,
    warmup: int = 20,
    tokens=None,
) -> dict:
    """Send ``requests_total`` POSTs (stop early after ``max_seconds``) from ``concurrency`` threads;
    with ``tokens`` (an iterator of signed JWTs, signed beforehand) each request carries the next one."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []

    def send(conn: http.client.HTTPConnection) -> tuple[int, float]:
        if tokens is None:
            sent = headers
        else:
            with lock:
                sent = {**headers, "Authorization": "Bearer " + next(tokens)}
        t0 = time.perf_counter()
        conn.request("POST", path, body=raw, headers=sent)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - t0

    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    for _ in range(warmup):
        send(conn)
    conn.close()
    deadline = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        while True:
            with lock:
                if issued[0] >= requests_total or time.perf_counter() > deadline[0]:
                    break
                issued[0] += 1
            try:
                status, took = send(conn)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                with lock:
                    errors.append(type(exc).__name__)
                continue
            with lock:
                latencies.append(took)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    deadline[0] = started + max_seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies),
        "ok": ok,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": len(errors),
        "seconds": elapsed,
        "requests_per_s": round(ok / elapsed, 1) if elapsed else None,
        "_latencies": latencies,
    }


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a server process and its children (gunicorn workers), from /proc."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0
        for process in [pid, *map(int, children)]:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None  # not Linux, or a worker just restarted


def measured_load(
    server: Server, path: str, raw: bytes, requests_total: int, concurrency: int, max_seconds: float, tokens=None
) -> dict:
    """``load`` plus the server's own CPU time per successful request (the load generator's is not in it)."""
    if server.proc is None:
        raise RuntimeError(f"{server.name} is not running")
    before = server_cpu_seconds(server.proc.pid)
    result = load(server.port, path, raw, requests_total, concurrency, max_seconds, tokens=tokens)
    after = server_cpu_seconds(server.proc.pid)
    result["server_cpu_s"] = after - before if before is not None and after is not None else None
    return result


def _merge(parts: list[dict]) -> dict:
    """Several load rounds against one server -> one result (rate = all successes / all time)."""
    seconds = sum(p["seconds"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    statuses: dict[str, int] = {}
    for p in parts:
        for code, count in p["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    latencies = [x for p in parts for x in p.pop("_latencies")]
    cpu = [p.get("server_cpu_s") for p in parts]
    cpu_ms = round(sum(c for c in cpu if c is not None) / ok * 1000, 2) if ok and None not in cpu else None
    return {
        "requests": sum(p["requests"] for p in parts),
        "ok": ok,
        "statuses": statuses,
        "server_cpu_ms_per_request": cpu_ms,
        "errors": sum(p["errors"] for p in parts),
        "seconds": round(seconds, 3),
        "rounds": len(parts),
        "requests_per_s": round(ok / seconds, 1) if seconds else None,
        "latency": summary(latencies) if latencies else None,
    }


def _serve_argv(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cds_service.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def _rate_ratio(a: dict, b: dict) -> float | None:
    return round(a["requests_per_s"] / b["requests_per_s"], 3) if a["requests_per_s"] and b["requests_per_s"] else None


def run(
    workers: int,
    concurrency: int,
    requests_total: int,
    max_seconds: float,
    observations: int,
    hooks_: list[str],
    rounds: int = 3,
    progress=print,
    authenticated: bool = True,
) -> dict:
    """Both servers up at once; per hook, ``rounds`` alternating runs (service, no-op, service, ...)
    of ``requests_total / rounds`` requests each, so a change in machine load hits both alike.

    With ``authenticated`` a third server, the service with authentication required (as in production),
    takes its turn in each round, every request carrying a fresh ES384 token signed beforehand: what
    authentication costs under load, next to the same service without it (not part of the target).
    """
    from bench import auth_cost

    out: dict[str, Any] = {
        "workers": workers,
        "threads_per_worker": Settings.from_env().threads,
        "concurrency": concurrency,
        "requests_per_run": requests_total,
        "max_seconds_per_run": max_seconds,
        "rounds": rounds,
        "runs": [],
    }
    per_round = max(1, requests_total // rounds)
    with tempfile.TemporaryDirectory(prefix="jak-bench-http-") as tmp, contextlib.ExitStack() as servers:
        workdir = Path(tmp)
        env = _env(workdir)
        real_port, noop_port, secure_port = free_port(), free_port(), free_port()
        real = servers.enter_context(
            Server("jak-cds serve", _serve_argv(real_port, workers), real_port, env, workdir / "serve.log")
        )
        secure = signer = None
        if authenticated:
            signer, client = auth_cost.signing_key()
            clients_file = workdir / "trusted-clients.json"
            clients_file.write_text(json.dumps([client]), encoding="utf-8")
            secure_env = dict(
                env,
                JAK_CDS_AUTH="required",
                JAK_CDS_TRUSTED_CLIENTS=str(clients_file),
                JAK_CDS_DATABASE_URL=f"sqlite:///{workdir / 'bench-http-auth.sqlite3'}",
            )
            secure = servers.enter_context(
                Server(
                    "jak-cds serve (authentication on)",
                    _serve_argv(secure_port, workers),
                    secure_port,
                    secure_env,
                    workdir / "serve-auth.log",
                    ready=(200, 401),
                )
            )
        for hook in hooks_:
            raw = json.dumps(hook_request(hook, observations)).encode()
            path = f"/cds-services/{SERVICE_FOR_HOOK[hook]}"
            conn = http.client.HTTPConnection(HOST, real_port, timeout=30)
            conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            response = answer.read()
            conn.close()
            if answer.status != 200:
                raise RuntimeError(f"{hook}: HTTP {answer.status}: {response[:300]!r}")
            response_file = workdir / f"noop-{hook}.json"
            response_file.write_bytes(response)
            tokens = None
            if secure is not None:
                audience = f"http://{HOST}:{secure_port}{path}"
                tokens = iter([auth_cost.token(signer, audience) for _ in range(rounds * (per_round + 20))])
            noop = Server(
                "no-op app",
                [
                    sys.executable,
                    "-m",
                    "bench.noop_app",
                    "--host",
                    HOST,
                    "--port",
                    str(noop_port),
                    "--workers",
                    str(workers),
                    "--response",
                    str(response_file),
                ],
                noop_port,
                env,
                workdir / "noop.log",
            )
            with noop:
                service_parts, noop_parts, secure_parts = [], [], []
                for i in range(rounds):
                    progress(
                        f"  http: {hook} {observations} obs, round {i + 1}/{rounds}: service, no-op route"
                        + (", service with authentication" if secure else "")
                    )
                    service_parts.append(measured_load(real, path, raw, per_round, concurrency, max_seconds / rounds))
                    noop_parts.append(measured_load(noop, path, raw, per_round, concurrency, max_seconds / rounds))
                    if secure is not None:
                        secure_parts.append(
                            measured_load(
                                secure, path, raw, per_round, concurrency, max_seconds / rounds, tokens=tokens
                            )
                        )
            # each round's ratio too: how far one round is from the next says how far to trust the total
            round_ratios = [
                round((s["ok"] / s["seconds"]) / (n["ok"] / n["seconds"]), 3)
                for s, n in zip(service_parts, noop_parts, strict=True)
                if s["seconds"] and n["ok"]
            ]
            service_result, noop_result = _merge(service_parts), _merge(noop_parts)
            entry: dict[str, Any] = {
                "hook": hook,
                "observations": observations,
                "request_bytes": len(raw),
                "response_bytes": len(response),
                "service": service_result,
                "noop": noop_result,
                "throughput_ratio": _rate_ratio(service_result, noop_result),
                "round_ratios": round_ratios,
            }
            if secure_parts:
                entry["authenticated"] = _merge(secure_parts)
                entry["authenticated_ratio"] = _rate_ratio(entry["authenticated"], service_result)
            out["runs"].append(entry)
    return out
