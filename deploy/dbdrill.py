#!/usr/bin/env python3
"""Database fault drill: a real server under a bounded load while its PostgreSQL stops and starts.

Loopback only, and never against the PostgreSQL cluster that serves anything else: it runs on a
throwaway cluster of its own (``pg_createcluster <version> drill -p 5433``; created here when missing
and run as root) in a fresh database that is dropped afterwards.

It starts ``jak-cds serve`` (gunicorn, ``--workers``) on that database, with JWT authentication on
(a generated ES256 key, every call a fresh token) or off, and keeps ``--concurrency`` clients calling
order-sign, each card followed by its feedback. After ``--before`` seconds it stops PostgreSQL
(fast shutdown: connections are cut), keeps it down ``--outage`` seconds, starts it again, goes on
for ``--after`` seconds, and stops the load. Optionally it kills one worker with SIGKILL
(``--kill-at`` seconds after the load started). Then it waits until every card answered has its
audit row (the recovery time) and checks every feedback answered 200 is stored, exactly once.

    python deploy/dbdrill.py                         # auth on, 2 workers, 4 clients, 2.5 s outage
    python deploy/dbdrill.py --auth off --kill-at 2  # auth off, a worker killed during the outage

Prints the figures as JSON; exit status 0 when the drill passed (no 5xx other than 503, nothing
acknowledged lost, every card audited, no duplicates), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import loadtest  # noqa: E402  (deploy/loadtest.py: the request bodies and the server subprocess)

MAX_SECONDS = 60.0                  # each phase; the drill is bounded
MAX_CONCURRENCY = 16
ISSUER = "https://drill-ehr.example.org"


# --- the throwaway PostgreSQL cluster -------------------------------------------------------------

@dataclass
class Cluster:
    """A Debian postgresql-common cluster (``pg_lsclusters``) used for nothing but drills."""

    version: str = "15"
    name: str = "drill"
    port: int = 5433

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, action: str, *extra: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *extra],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def exists(self) -> bool:
        return Path(f"/etc/postgresql/{self.version}/{self.name}/postgresql.conf").exists()

    def ensure(self) -> None:
        """Create the cluster if missing (trust on loopback, as the test cluster) and start it."""
        if self.name == "main":
            raise SystemExit("dbdrill: refusing to stop and start the 'main' cluster; use a throwaway one")
        if shutil.which("pg_ctlcluster") is None:
            raise SystemExit("dbdrill: PostgreSQL's pg_ctlcluster is not installed")
        if not self.exists():
            subprocess.run(["pg_createcluster", self.version, self.name, "-p", str(self.port), "--",
                            "--auth-local=trust", "--auth-host=trust"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        if not self.ready():
            self.start()

    def ready(self) -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                              timeout=10).returncode == 0

    def start(self) -> None:
        """Start and return as soon as the server accepts connections (pg_ctlcluster itself returns ~2 s
        later), so that the measured outage is the time PostgreSQL was really unreachable."""
        ctl = subprocess.Popen(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "start"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.ready():
            if time.monotonic() > deadline:
                ctl.kill()
                raise SystemExit(f"dbdrill: cluster {self.version}/{self.name} did not start")
            if ctl.poll() not in (None, 0) and not self.ready():
                raise SystemExit(f"dbdrill: pg_ctlcluster start {self.version}/{self.name} failed")
            time.sleep(0.02)
        threading.Thread(target=ctl.wait, daemon=True).start()

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)


# --- the load ---------------------------------------------------------------------------------------

class Tokens:
    """A trusted client with an inline ES256 key; ``header(url)`` signs a fresh single-use token."""

    def __init__(self, directory: Path):
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        self._jwt = jwt
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.clients_file = directory / "trusted-clients.json"
        self.clients_file.write_text(json.dumps([{"iss": ISSUER, "jwks": {"keys": [
            {**public, "kid": "drill-1", "alg": "ES256", "use": "sig"}]}}]))

    def header(self, url: str) -> dict:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        signed = self._jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "drill-1"})
        return {"Authorization": f"Bearer {signed}"}


@dataclass
class Call:
    kind: str                 # "hook" or "feedback"
    sent: float               # time.monotonic()
    answered: float
    status: int | None        # None: no HTTP answer (connection error)
    error: str = ""
    cards: list = field(default_factory=list)
    card: str = ""            # feedback: the card it is about
    retry_after: str | None = None
    body: str = ""


@dataclass
class DrillResult:
    auth: bool
    workers: int
    calls: list = field(default_factory=list)
    t_start: float = 0.0
    t_stop: float | None = None          # PostgreSQL stop requested
    t_down: float | None = None          # ... and stopped
    t_up: float | None = None            # ready again
    t_end: float = 0.0
    t_killed: float | None = None
    killed_pid: int | None = None
    t_all_audited: float | None = None
    audited: int = 0
    duplicates_audit: int = 0
    feedback_stored: int = 0
    feedback_duplicates: int = 0
    missing_cards: list = field(default_factory=list)
    spool_peak_rows: int = 0
    spool_peak_files: int = 0
    spool_rows_left: int = 0
    t_spool_empty: float | None = None   # first time after t_up with no row left in the spool
    server_log: str = ""

    def _logged(self, pattern: str) -> int:
        import re

        return sum(int(n) for n in re.findall(pattern, self.server_log))

    @property
    def replayed_rows(self) -> int:
        """Audit rows the workers wrote from the spool (their log says so)."""
        return self._logged(r"audit: (\d+) row\(s\) written from the local spool")

    @property
    def jti_written_back(self) -> int:
        return self._logged(r"replay check: (\d+) token id\(s\) kept in memory written")

    def phase(self, t: float) -> str:
        if self.t_stop is None or t < self.t_stop:
            return "before" if self.t_stop is not None else "no outage"
        if self.t_up is None or t < self.t_up:
            return "outage"
        return "after"

    @property
    def cards_answered(self) -> dict[str, float]:
        return {card: c.answered for c in self.calls if c.kind == "hook" and c.status == 200 for card in c.cards}

    @property
    def feedback_acknowledged(self) -> list[str]:
        return [c.card for c in self.calls if c.kind == "feedback" and c.status == 200]

    def bad_statuses(self) -> list[Call]:
        """Answers that are neither 200 nor a 503 with Retry-After and an OperationOutcome."""
        bad = []
        for c in self.calls:
            if c.status is None or c.status == 200:
                continue
            if c.status == 503 and c.retry_after and '"OperationOutcome"' in c.body:
                continue
            bad.append(c)
        return bad

    def feedback_back_after_up(self) -> float | None:
        if self.t_up is None:
            return None
        ok = [c.answered for c in self.calls if c.kind == "feedback" and c.status == 200 and c.sent >= self.t_up]
        return round(min(ok) - self.t_up, 2) if ok else None

    def lost_cards_outside(self, window: float) -> list[str]:
        """Cards missing from the audit that were answered more than ``window`` s before the kill."""
        answered = self.cards_answered
        if self.t_killed is None:
            return list(self.missing_cards)
        return [c for c in self.missing_cards if answered[c] <= self.t_killed - window]

    def summary(self) -> dict:
        by_phase: dict[str, dict[str, Counter]] = {}
        for c in self.calls:
            status = str(c.status) if c.status is not None else "connection error"
            by_phase.setdefault(c.kind, {}).setdefault(self.phase(c.sent), Counter())[status] += 1
        answered = self.cards_answered
        latency: dict[str, dict] = {}
        for phase in ("no outage", "before", "outage", "after"):
            times = sorted(c.answered - c.sent for c in self.calls
                           if c.kind == "hook" and c.status == 200 and self.phase(c.sent) == phase)
            if times:
                latency[phase] = {"p50_ms": round(1000 * times[len(times) // 2], 1),
                                  "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 1),
                                  "max_ms": round(1000 * times[-1], 1)}
        return {
            "auth": self.auth, "workers": self.workers,
            "hook_latency": latency,
            "outage_s": round(self.t_up - self.t_stop, 2) if self.t_up and self.t_stop else None,
            "calls": {kind: {phase: dict(counts) for phase, counts in phases.items()}
                      for kind, phases in by_phase.items()},
            "cards_answered": len(answered), "cards_audited": self.audited,
            "cards_missing": len(self.missing_cards), "audit_duplicates": self.duplicates_audit,
            "feedback_acknowledged": len(self.feedback_acknowledged), "feedback_stored": self.feedback_stored,
            "feedback_duplicates": self.feedback_duplicates,
            "spool_peak_rows": self.spool_peak_rows, "spool_peak_files": self.spool_peak_files,
            "spool_rows_left": self.spool_rows_left, "spool_rows_replayed": self.replayed_rows,
            "token_ids_from_memory_written_back": self.jti_written_back,
            # after PostgreSQL is ready again: every spooled row replayed (while the load goes on), and the
            # first feedback stored again; "all audited" is only seen once the load has stopped
            "spool_replayed_s_after_up": round(self.t_spool_empty - self.t_up, 2)
            if self.t_spool_empty is not None and self.t_up is not None else None,
            "feedback_stored_again_s_after_up": self.feedback_back_after_up(),
            "recovery_s": round(self.t_all_audited - self.t_up, 2)
            if self.t_all_audited is not None and self.t_up is not None else None,
            "killed_worker": self.killed_pid,
            "missing_answered_s_before_kill": sorted(round(self.t_killed - answered[c], 3)
                                                     for c in self.missing_cards)
            if self.t_killed is not None else None,
            "bad_answers": [f"{c.kind} {c.status} {c.body[:120]}" for c in self.bad_statuses()[:5]],
            "ok": self.ok,
        }

    @property
    def ok(self) -> bool:
        return (not self.bad_statuses() and self.duplicates_audit == 0 and self.feedback_duplicates == 0
                and self.feedback_stored == len(set(self.feedback_acknowledged))
                and not self.lost_cards_outside(KILL_LOSS_WINDOW_S) and bool(self.cards_answered))


# A worker killed with SIGKILL loses the audit rows of the batch it holds: calls answered in the last
# AuditQueue.LINGER_S (0.1 s) plus the write in progress. The drill allows a little more for scheduling.
KILL_LOSS_WINDOW_S = 0.5


def spool_rows(directory: Path) -> tuple[int, int]:
    files = list(directory.glob("*.jsonl")) if directory.is_dir() else []
    rows = 0
    for f in files:
        try:
            rows += f.read_bytes().count(b"\n")
        except OSError:
            pass
    return rows, len(files)


def worker_pids(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []
    return [int(p) for p in children]


def _load(result: DrillResult, url: str, tokens: Tokens | None, stop: threading.Event, concurrency: int) -> None:
    lock = threading.Lock()
    sign = f"{url}/cds-services/jak-order-sign"

    def post(session, target, body, kind, **extra) -> Call:
        headers = tokens.header(target) if tokens else {}
        sent = time.monotonic()
        try:
            r = session.post(target, json=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            return Call(kind, sent, time.monotonic(), None, error=type(exc).__name__, **extra)
        call = Call(kind, sent, time.monotonic(), r.status_code, retry_after=r.headers.get("Retry-After"),
                    body=r.text[:300] if r.status_code != 200 else "", **extra)
        if kind == "hook" and r.status_code == 200:
            call.cards = [c["uuid"] for c in r.json().get("cards", [])]
        return call

    def client(k: int) -> None:
        session = requests.Session()
        n = 0
        while not stop.is_set():
            n += 1
            call = post(session, sign, loadtest.hook_body(k * 100_000 + n), "hook")
            done = [call]
            for card in call.cards:
                done.append(post(session, f"{sign}/feedback", loadtest.feedback_body(card, n), "feedback",
                                 card=card))
            with lock:
                result.calls.extend(done)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


class PostgresOutage:
    """A fresh database on the throwaway cluster; the outage stops the whole cluster (fast shutdown)."""

    kind = "postgresql"

    def __init__(self, cluster: Cluster | None = None):
        self.cluster = cluster or Cluster()
        self.database = f"jakdrill_{uuid.uuid4().hex[:10]}"
        self.url = self.cluster.url(self.database)

    def setup(self, _tmp: Path) -> None:
        self.cluster.ensure()
        self.cluster.sql(f'CREATE DATABASE "{self.database}"')

    def begin(self) -> None:
        self.cluster.stop()

    def end(self) -> None:
        self.cluster.start()

    def teardown(self) -> None:
        if not self.cluster.ready():
            self.cluster.start()
        try:
            self.cluster.sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - the drill database is throwaway
            pass


class SqliteLock:
    """SQLite's outage: another process's write transaction holds the file (a backup, an administrator's
    session) for the whole outage; every write of the service finds it locked."""

    kind = "sqlite"

    def __init__(self):
        self.url = ""
        self._conn = None

    def setup(self, tmp: Path) -> None:
        self.path = tmp / "drill.sqlite3"
        self.url = f"sqlite:///{self.path}"

    def begin(self) -> None:
        import sqlite3

        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._conn.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None

    def teardown(self) -> None:
        self.end()


def run(outage_of=None, auth: bool = True, workers: int = 2, concurrency: int = 4,
        before: float = 1.0, outage: float = 2.5, after: float = 1.0, kill_at: float | None = None,
        settle: float = 30.0, extra_env: dict | None = None) -> DrillResult:
    """``outage_of``: ``PostgresOutage()`` (default) or ``SqliteLock()``; ``outage=0``: no outage."""
    for name, value in (("before", before), ("outage", outage), ("after", after)):
        if not 0 <= value <= MAX_SECONDS:
            raise SystemExit(f"dbdrill: --{name} must be 0..{MAX_SECONDS:g} s")
    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    outage_of = outage_of or PostgresOutage()
    tmp = Path(tempfile.mkdtemp(prefix="jak-dbdrill-"))
    spool = tmp / "spool"
    env = {"JAK_CDS_AUDIT_SPOOL": str(spool), **(extra_env or {})}
    tokens = None
    if auth:
        tokens = Tokens(tmp)
        env.update(JAK_CDS_AUTH="required", JAK_CDS_TRUSTED_CLIENTS=str(tokens.clients_file))
    result = DrillResult(auth=auth, workers=workers)
    server = None
    stop = threading.Event()
    try:
        outage_of.setup(tmp)
        database_url = outage_of.url
        server = loadtest.Server(database_url, workers, env=env)
        server.wait_ready(timeout=60.0, statuses=(200, 401))
        load = threading.Thread(target=_load, args=(result, server.url, tokens, stop, concurrency), daemon=True)
        watching = threading.Event()

        def watch_spool():
            while not watching.is_set():
                rows, files = spool_rows(spool)
                result.spool_peak_rows = max(result.spool_peak_rows, rows)
                result.spool_peak_files = max(result.spool_peak_files, files)
                if rows == 0 and result.t_up is not None and result.t_spool_empty is None:
                    result.t_spool_empty = time.monotonic()
                time.sleep(0.02)

        watcher = threading.Thread(target=watch_spool, daemon=True)
        watcher.start()
        result.t_start = time.monotonic()
        load.start()

        def at(offset: float) -> None:
            time.sleep(max(0.0, result.t_start + offset - time.monotonic()))

        killer = None
        if kill_at is not None:
            def kill():
                at(kill_at)
                pids = worker_pids(server.process.pid) if workers else [server.process.pid]
                if pids:
                    result.killed_pid = pids[0]
                    result.t_killed = time.monotonic()
                    os.kill(pids[0], signal.SIGKILL)
            killer = threading.Thread(target=kill, daemon=True)
            killer.start()

        at(before)
        if outage > 0:
            result.t_stop = time.monotonic()
            outage_of.begin()
            result.t_down = time.monotonic()
            at(before + outage)
            outage_of.end()
            result.t_up = time.monotonic()
        at(before + outage + after)
        stop.set()
        load.join(60)
        if killer is not None:
            killer.join(10)
        result.t_end = time.monotonic()
        _settle(result, database_url, settle, lambda: spool_rows(spool)[0] == 0)
        watching.set()
        watcher.join(5)
        result.spool_rows_left = spool_rows(spool)[0]
    finally:
        stop.set()
        outage_of.teardown()
        if server is not None:
            result.server_log = _full_log(server)
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _full_log(server) -> str:
    if server.log.closed:
        return ""
    server.log.seek(0)
    return server.log.read().decode(errors="replace")


def _settle(result: DrillResult, database_url: str, settle: float, spool_is_empty=lambda: True) -> None:
    """Count while the server still runs: every answered card must reach the database (replayed from the
    spool if need be); the time that took after PostgreSQL was ready again is the recovery time."""
    from sqlalchemy import create_engine, func, select

    from cds_service.store.schema import feedback, issued_card

    engine = create_engine(database_url, connect_args={} if database_url.startswith("sqlite")
                           else {"connect_timeout": 3})
    answered = result.cards_answered
    deadline = time.monotonic() + settle
    quiet_since = None
    try:
        while True:
            try:
                with engine.connect() as conn:
                    recorded = conn.execute(select(issued_card.c.card_uuid)).scalars().all()
            except Exception:  # noqa: BLE001 - the schema may not be there yet
                recorded = []
            present = set(recorded) & set(answered)
            if len(present) == len(answered):
                result.t_all_audited = time.monotonic()
                break
            if time.monotonic() > deadline:
                break
            if (result.t_killed is not None and spool_is_empty()
                    and all(answered[c] > result.t_killed - KILL_LOSS_WINDOW_S for c in set(answered) - present)):
                # only the killed worker's last batch is missing and nothing waits in the spool: give the
                # survivors a moment more, then stop waiting for rows that cannot come
                if quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 1.0:
                    break
            else:
                quiet_since = None
            time.sleep(0.05)
        result.audited = len(present)
        result.duplicates_audit = len(recorded) - len(set(recorded))
        result.missing_cards = sorted(set(answered) - present)
        with engine.connect() as conn:
            rows = conn.execute(select(feedback.c.card_uuid)).scalars().all()
            conn.execute(select(func.count()).select_from(feedback))
        acknowledged = set(result.feedback_acknowledged)
        result.feedback_stored = len(set(rows) & acknowledged)
        result.feedback_duplicates = len(rows) - len(set(rows))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--auth", choices=["on", "off"], default="on")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--before", type=float, default=1.0)
    parser.add_argument("--outage", type=float, default=2.5)
    parser.add_argument("--after", type=float, default=1.0)
    parser.add_argument("--kill-at", type=float, help="SIGKILL one worker this many seconds into the load")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="wait at most this long after the load for every answered card's audit row")
    parser.add_argument("--cluster", default="15/drill:5433", help="VERSION/NAME:PORT of the throwaway cluster")
    parser.add_argument("--sqlite", action="store_true",
                        help="a temporary SQLite file instead, its outage a write lock held by another process")
    args = parser.parse_args(argv)
    spec, _, port = args.cluster.partition(":")
    version, _, name = spec.partition("/")
    target = SqliteLock() if args.sqlite else PostgresOutage(Cluster(version, name or "drill", int(port or 5433)))
    result = run(target, args.auth == "on", args.workers, args.concurrency, args.before, args.outage, args.after,
                 args.kill_at, min(max(args.settle, 0.0), MAX_SECONDS))
    print(json.dumps(result.summary(), indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
