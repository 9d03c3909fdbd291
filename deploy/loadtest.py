#!/usr/bin/env python3
"""Bounded load test: concurrent hook and feedback calls, then check that no feedback was lost.

Loopback only. By default it starts ``jak-cds serve`` on 127.0.0.1 (a free port, a temporary
SQLite database, authentication off because it is loopback), fires a fixed number of
order-sign calls with a fixed concurrency and an overall time limit, posts feedback for every
card returned, stops the server, and then counts the feedback rows in the database: every
feedback item the server answered 200 for must be there, exactly once.

    python deploy/loadtest.py                       # 200 hook calls, 8 at a time, built-in server
    python deploy/loadtest.py --workers 3           # the same against gunicorn with 3 workers
    python deploy/loadtest.py --url http://127.0.0.1:8080 --database-url sqlite:///jak-cds.sqlite3

Exit status 0 when nothing was lost and every call succeeded, 1 otherwise.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_REQUESTS = 5000
MAX_DURATION = 300.0
TEMPLATE_KEYS = ("patient", "haematology", "chemistry", "screening", "vitals", "conditions", "medications",
                 "statements", "immunizations", "allergies")


def hook_body(n: int) -> dict:
    """An order-sign call for a 70-year-old with a 30 mg upadacitinib draft: always at least one card."""
    pid = f"load-{n}"
    patient = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1955-01-15"}
    draft = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{pid}"},
             "medicationCodeableConcept": {"text": "Rinvoq 30 mg"},
             "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                    "doseAndRate": [{"doseQuantity": {"value": 30, "unit": "mg",
                                                                      "system": "http://unitsofmeasure.org",
                                                                      "code": "mg"}}]}]}
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    prefetch = {key: empty for key in TEMPLATE_KEYS}
    prefetch["patient"] = patient
    return {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/load", "patientId": pid,
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": draft}]}},
            "prefetch": prefetch}


def feedback_body(card_uuid: str, n: int) -> dict:
    item = {"card": card_uuid, "outcomeTimestamp": "2026-03-01T10:00:00Z"}
    if n % 2:
        item["outcome"] = "accepted"
    else:
        item.update(outcome="overridden", overrideReason={"reason": {
            "system": "https://jak-cds.example/override", "code": "load-test", "display": "Load test"}})
    return {"feedback": [item]}


@dataclass
class Result:
    hook_calls: int = 0
    hook_errors: list = field(default_factory=list)
    feedback_errors: list = field(default_factory=list)
    cards_issued: list = field(default_factory=list)
    feedback_sent: list = field(default_factory=list)      # card uuids acknowledged with 200
    latencies: list = field(default_factory=list)
    stored_feedback: int = 0
    stored_matching: int = 0
    stored_issued: int = 0
    duplicates: int = 0
    timed_out: bool = False
    elapsed: float = 0.0

    @property
    def lost(self) -> int:
        return len(self.feedback_sent) - self.stored_matching

    @property
    def ok(self) -> bool:
        return (not self.hook_errors and not self.feedback_errors and self.lost == 0 and not self.timed_out
                and self.duplicates == 0 and self.stored_issued == len(self.cards_issued) and self.hook_calls > 0)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {"hook_calls": self.hook_calls, "hook_errors": len(self.hook_errors),
                "feedback_errors": len(self.feedback_errors), "cards_issued": len(self.cards_issued),
                "cards_recorded": self.stored_issued, "feedback_sent": len(self.feedback_sent),
                "feedback_stored": self.stored_matching, "lost": self.lost, "duplicates": self.duplicates, "timed_out": self.timed_out,
                "elapsed_s": round(self.elapsed, 2),
                "latency_ms_p50": round(1000 * statistics.median(lat), 1) if lat else None,
                "latency_ms_p95": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
                "ok": self.ok, "first_errors": (self.hook_errors + self.feedback_errors)[:5]}


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"loadtest: {url} is not a loopback address; this script only targets 127.0.0.1/::1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``jak-cds serve`` in a subprocess on 127.0.0.1."""

    def __init__(self, database_url: str, workers: int = 0, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "JAK_CDS_DATABASE_URL": database_url, "JAK_CDS_AUTH": "off",
                       "JAK_CDS_ALLOWED_FHIR_SERVERS": "http://127.0.0.1:1"}
        environment.pop("JAK_CDS_TRUSTED_CLIENTS", None)       # unless the caller gives clients (env)
        environment.update(env or {})
        # the server's log goes to a file: an unread pipe would fill up and block the server
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers)],
            cwd=str(REPO), env=environment, stdout=subprocess.DEVNULL, stderr=self.log)

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def wait_ready(self, timeout: float = 30.0, statuses: tuple[int, ...] = (200,)) -> None:
        """Up when discovery answers with one of ``statuses`` (401 too, with authentication on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"loadtest: the server exited: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/cds-services", timeout=1).status_code in statuses:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("loadtest: the server did not become ready in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def fire(url: str, total: int, concurrency: int, duration: float) -> Result:
    result = Result()
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def one(n: int) -> None:
        if time.monotonic() > deadline:
            with lock:
                result.timed_out = True
            return
        s = session()
        start = time.monotonic()
        try:
            response = s.post(f"{url}/cds-services/jak-order-sign", json=hook_body(n), timeout=30)
        except requests.RequestException as exc:
            with lock:
                result.hook_calls += 1
                result.hook_errors.append(f"hook {n}: {type(exc).__name__}")
            return
        with lock:
            result.hook_calls += 1
            result.latencies.append(time.monotonic() - start)
        if response.status_code != 200:
            with lock:
                result.hook_errors.append(f"hook {n}: HTTP {response.status_code} {response.text[:200]}")
            return
        cards = [c["uuid"] for c in response.json().get("cards", [])]
        with lock:
            result.cards_issued.extend(cards)
        for card in cards or [str(uuid.uuid4())]:
            try:
                fb = s.post(f"{url}/cds-services/jak-order-sign/feedback", json=feedback_body(card, n), timeout=30)
            except requests.RequestException as exc:
                with lock:
                    result.feedback_errors.append(f"feedback {n}: {type(exc).__name__}")
                continue
            with lock:
                if fb.status_code == 200:
                    result.feedback_sent.append(card)
                else:
                    result.feedback_errors.append(f"feedback {n}: HTTP {fb.status_code} {fb.text[:200]}")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(one, n) for n in range(total)]
        for future in as_completed(futures):
            future.result()
    result.elapsed = time.monotonic() - start
    return result


# A server this script did not start is still running when the rows are counted: its background audit
# writer may hold the issued cards of the last ~100 ms (store.AuditQueue.LINGER_S). Recount for up to this
# long before calling anything lost; a server stopped gracefully (the default) has written everything.
SETTLE_SECONDS_RUNNING_SERVER = 2.0


def count_stored(database_url: str, result: Result, settle_seconds: float = 0.0) -> None:
    from sqlalchemy import select

    from cds_service.store import Store
    from cds_service.store.schema import feedback, issued_card

    store = Store(database_url)
    deadline = time.monotonic() + settle_seconds
    try:
        sent = set(result.feedback_sent)
        issued = set(result.cards_issued)
        while True:
            with store.engine.connect() as conn:
                rows = conn.execute(select(feedback.c.card_uuid)).scalars().all()
                recorded = conn.execute(select(issued_card.c.card_uuid)).scalars().all()
            result.stored_issued = len(set(recorded) & issued)
            if result.stored_issued == len(issued) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        result.stored_feedback = len(rows)
        result.stored_matching = len(set(rows) & sent)          # each card got exactly one feedback item
        result.duplicates = len(rows) - len(set(rows))
    finally:
        store.dispose()


def run(requests_total: int = 200, concurrency: int = 8, duration: float = 60.0, workers: int = 0,
        url: str | None = None, database_url: str | None = None) -> Result:
    if not 0 < requests_total <= MAX_REQUESTS:
        raise SystemExit(f"loadtest: --requests must be 1..{MAX_REQUESTS}")
    if not 0 < duration <= MAX_DURATION:
        raise SystemExit(f"loadtest: --duration must be at most {MAX_DURATION:g} s")
    concurrency = max(1, min(concurrency, 64))
    tmp = None
    if url is not None:
        require_loopback(url)
        if database_url is None:
            raise SystemExit("loadtest: with --url, give --database-url of that server to check the stored rows")
    if database_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="jak-load-")
        database_url = f"sqlite:///{Path(tmp.name) / 'load.sqlite3'}"
    server = None
    started_here = url is None
    try:
        if started_here:
            server = Server(database_url, workers)
            server.wait_ready()
            url = server.url
        result = fire(url.rstrip("/"), requests_total, concurrency, duration)
        if server is not None:
            server.stop()                      # graceful: whatever the workers acknowledged is committed
            server = None
        count_stored(database_url, result, 0.0 if started_here else SETTLE_SECONDS_RUNNING_SERVER)
        return result
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="hook calls in total (each followed by feedback)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="stop sending after this many seconds")
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers for the started server (0: built-in)")
    parser.add_argument("--url", help="target an already running server on loopback instead of starting one")
    parser.add_argument("--database-url", help="that server's JAK_CDS_DATABASE_URL (to count the stored rows)")
    args = parser.parse_args(argv)
    result = run(args.requests, args.concurrency, args.duration, args.workers, args.url, args.database_url)
    print(json.dumps(result.summary(), indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
