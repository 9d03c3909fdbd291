"""A database outage is harmless to clinicians and lossless for the audit trail.

- Hook calls are answered (200 with cards) whatever the database does, with authentication on and off:
  the replay check falls back to memory (or 503 with Retry-After when configured to refuse), never 500.
- Feedback is acknowledged (200) only once stored; otherwise 503 with Retry-After.
- Every issued card gets its audit row exactly once: rows the database does not take are spooled to a
  local append-only file (fsync per batch) and replayed when it is back; SIGKILL loses at most the batch
  in hand (calls of the last 0.1 s, plus those answered while its write attempt waits).
- Two instances on one database still refuse a replayed token; the window the memory fallback opens is
  the outage itself (tested as such), and a replay in it is found and logged afterwards.

PostgreSQL drills stop and start a throwaway cluster (``JAK_CDS_TEST_DRILL_CLUSTER``, default
``15/drill:5433``; ``.ci/run`` creates it), never the one other tests use. SQLite's outage is a file
locked by another process's transaction, or one that cannot be opened.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from cds_service.web.app import create_app
from cds_service.cli import main as cli_main
from cds_service.config import Settings
from cds_service.store import Store, StoreUnavailable, connection, schema
from cds_service.store.audit import AuditQueue
from cds_service.store.spool import AuditSpool
from tests.helpers.drills import dbdrill, hook_body, wait_until
from tests.helpers.trust import (
    BASE,
    ISS,
    bearer,
    ec_key,
    feedback_body,
    jwks,
    token,
    trust_settings,
)

SIGN_PATH = "/cds-services/jak-order-sign"
SIGN = f"{BASE}{SIGN_PATH}"
FEEDBACK_PATH = f"{SIGN_PATH}/feedback"
NOW = datetime.now(timezone.utc)


# --- helpers ------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def quick_sqlite_locks(monkeypatch):
    """A locked SQLite file is found out after 0.3 s instead of 1 s: the same path, quicker tests."""
    monkeypatch.setattr(connection, "REQUEST_BUSY_MS", 300)


@pytest.fixture
def key():
    return ec_key("ec-1", "ES384")


def sign(client, key=None, tok=None):
    headers = bearer(tok or token(key, SIGN)) if (key or tok) else {}
    return client.post(SIGN_PATH, json=hook_body(), headers=headers)


def send_feedback(client, card: str, key=None):
    headers = bearer(token(key, f"{SIGN}/feedback")) if key else {}
    return client.post(FEEDBACK_PATH, json=feedback_body(card), headers=headers)


def assert_unavailable(response):
    assert response.status_code == 503, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "transient"


class SqliteLocked:
    """Another process's write transaction on the file (a backup, an administrator's session)."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = None

    def __enter__(self):
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.conn.execute("BEGIN EXCLUSIVE")
        return self

    def release(self):
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None

    def __exit__(self, *exc):
        self.release()


def rows(n: int, prefix: str = "c") -> list[tuple[str, str]]:
    return [(f"{prefix}-{i}-{uuid.uuid4()}", "rule-x") for i in range(n)]


def spool_lines(directory: Path) -> list[bytes]:
    return [line for f in sorted(directory.glob("*.jsonl")) for line in f.read_bytes().splitlines()]


# --- the audit spool ----------------------------------------------------------------------------

def test_rows_of_a_locked_sqlite_file_are_spooled_and_written_exactly_once_when_it_is_free(tmp_path):
    db = tmp_path / "a.sqlite3"
    store = Store(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    store.migrate()
    before = rows(3, "before")
    store.record_issued("svc", "h0", "p", before, "kv", wait=False)
    assert store.flush(10)
    with SqliteLocked(db):
        during = [rows(2, f"during{n}") for n in range(5)]
        for n, cards in enumerate(during):
            store.record_issued("svc", f"h{n}", "p", cards, "kv", wait=False)
        assert store.flush(10)
        assert wait_until(lambda: len(spool_lines(tmp_path / "spool")) == 10)
        assert store.audit_status()["spool"]["rows_waiting"] == 10
    assert store.drain(20)
    recorded = [r["card_uuid"] for r in store.issued()]
    expected = [c for c, _ in before] + [c for cards in during for c, _ in cards]
    assert sorted(recorded) == sorted(expected)                    # every row, once
    assert list((tmp_path / "spool").glob("*.jsonl")) == []
    stats = store.audit_status()
    assert (stats["spilled"], stats["replayed"], stats["lost"], store.audit_failures) == (10, 10, 0, 0)
    store.dispose()


def test_a_spool_file_replayed_twice_adds_nothing(tmp_path):
    """A crash between the replay's commit and the file's removal replays it again: the card uuid is the
    key, so the second replay writes no duplicate (and neither does a batch retried after a lost commit)."""
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    store = Store(url, patient_hash_key="k", spool_dir=tmp_path / "spool")
    store.migrate()
    cards = rows(4)
    issued = [dict(card_uuid=c, service_id="svc", rule_id=r, knowledge_version="kv", hook_instance="h",
                   patient_hash=store.patient_hash("p"), issued_at=NOW) for c, r in cards]
    store.spool.append(issued)
    [spooled] = list((tmp_path / "spool").glob("*.jsonl"))
    copy = spooled.read_bytes()
    assert store.drain(10)
    spooled.write_bytes(copy)                                      # as if the unlink had not happened
    assert store.drain(10)
    store.write_issued(issued[:2])                               # a batch whose commit answer was lost
    assert sorted(r["card_uuid"] for r in store.issued()) == sorted(c for c, _ in cards)
    store.dispose()


def test_a_line_torn_by_a_crash_is_skipped_and_the_rest_replayed(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    store = Store(url, patient_hash_key="k", spool_dir=tmp_path / "spool")
    store.migrate()
    good = [dict(card_uuid=f"good-{i}", service_id="svc", rule_id="r", knowledge_version="kv", hook_instance="h",
                 patient_hash="x" * 64, issued_at=NOW) for i in range(3)]
    store.spool.append(good)
    [spooled] = list((tmp_path / "spool").glob("*.jsonl"))
    with spooled.open("ab") as f:
        f.write(b'{"card_uuid":"torn-1","service_id":"sv')          # SIGKILL in the middle of a write
    store.spool.close()
    assert store.drain(10)
    assert sorted(r["card_uuid"] for r in store.issued()) == ["good-0", "good-1", "good-2"]
    assert any("unreadable line" in r.getMessage() for r in caplog.records)
    store.dispose()


def test_the_spool_holds_the_keyed_hash_never_the_patient_id_and_is_private(tmp_path):
    db = tmp_path / "d.sqlite3"
    store = Store(f"sqlite:///{db}", patient_hash_key="k3y", spool_dir=tmp_path / "spool")
    store.migrate()
    with SqliteLocked(db):
        store.record_issued("svc", "h", "MRN-SECRET-1", rows(2), "kv", wait=False)
        assert store.flush(10)
        assert wait_until(lambda: len(spool_lines(tmp_path / "spool")) == 2)
        raw = b"".join(spool_lines(tmp_path / "spool"))
        assert b"MRN-SECRET-1" not in raw and store.patient_hash("MRN-SECRET-1").encode() in raw
        [spooled] = list((tmp_path / "spool").glob("*.jsonl"))
        assert spooled.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "spool").stat().st_mode & 0o077 == 0
    assert store.drain(10)
    store.dispose()


def test_rows_made_before_the_hash_key_is_known_wait_in_memory_not_on_disk(tmp_path):
    """A process that never reached the database has no hash key: its rows are kept in memory (the spool
    must not hold a raw patient id) and hashed and written once the database is back."""
    db_dir = tmp_path / "not-yet"
    store = Store(f"sqlite:///{db_dir / 'e.sqlite3'}", spool_dir=tmp_path / "spool")
    store.record_issued("svc", "h", "MRN-SECRET-2", rows(2), "kv", wait=False)
    assert store.flush(10)
    assert spool_lines(tmp_path / "spool") == []
    assert store.audit_status()["waiting_in_memory"] == 2
    db_dir.mkdir()
    assert store.drain(20)
    assert {r["patient_hash"] for r in store.issued()} == {store.patient_hash("MRN-SECRET-2")}
    store.dispose()


def test_a_file_still_being_appended_by_a_live_process_is_not_taken(tmp_path):
    """Its writer holds a lock on it: another process's replay leaves it alone (and takes it once free)."""
    url = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    owner = AuditSpool(tmp_path / "spool", connection.database_key(url))
    row = dict(card_uuid="owned-1", service_id="svc", rule_id="r", knowledge_version="kv", hook_instance="h",
               patient_hash="x" * 64, issued_at=NOW)
    owner.append([row])
    other = Store(url, spool_dir=tmp_path / "spool")
    other.migrate()
    written: list[dict] = []
    assert other.spool.replay(written.extend, 1000) == (0, False) and written == []
    owner.close()                                                   # or its process died: the lock is gone
    assert other.spool.replay(written.extend, 1000) == (1, False) and written[0]["card_uuid"] == "owned-1"
    other.dispose()


def test_two_databases_sharing_a_spool_directory_keep_their_rows_apart(tmp_path):
    spool = tmp_path / "spool"
    a = Store(f"sqlite:///{tmp_path / 'a.sqlite3'}", patient_hash_key="k", spool_dir=spool)
    b = Store(f"sqlite:///{tmp_path / 'b.sqlite3'}", patient_hash_key="k", spool_dir=spool)
    a.migrate()
    b.migrate()
    a.spool.append([dict(card_uuid="for-a", service_id="svc", rule_id="r", knowledge_version="kv",
                         hook_instance="h", patient_hash="x" * 64, issued_at=NOW)])
    a.spool.close()
    assert b.drain(10) and b.count("jak_issued_card") == 0
    assert b.spool.status()["rows_waiting_for_other_databases"] == 1
    assert a.drain(10) and [r["card_uuid"] for r in a.issued()] == ["for-a"]
    a.dispose()
    b.dispose()


def test_when_neither_the_database_nor_the_spool_takes_rows_memory_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(AuditQueue, "MAX_PENDING_CALLS", 5)
    blocker = tmp_path / "spool-is-a-file"
    blocker.write_text("not a directory")
    db = tmp_path / "g.sqlite3"
    store = Store(f"sqlite:///{db}", patient_hash_key="k", spool_dir=blocker / "spool")
    store.migrate()
    with SqliteLocked(db):
        for n in range(8):
            store.record_issued("svc", f"h{n}", "p", rows(1, f"m{n}"), "kv", wait=False)
            assert store.flush(10)
        assert wait_until(lambda: store.audit_failures >= 3)
    assert store.drain(20)
    assert store.count("jak_issued_card") == 5 and store.audit_failures == 3   # the bound held, the rest written
    store.dispose()


def test_rows_left_by_an_earlier_run_are_written_at_start_up(tmp_path, caplog):
    """``serve`` migrates once before forking: what an outage that outlasted the last run left is written."""
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    earlier = AuditSpool(tmp_path / "spool", connection.database_key(url))
    earlier.append([dict(card_uuid=f"left-{i}", service_id="svc", rule_id="r", knowledge_version="kv",
                         hook_instance="h", patient_hash="x" * 64, issued_at=NOW) for i in range(3)])
    earlier.close()
    store = Store(url, spool_dir=tmp_path / "spool")
    store.migrate()
    assert list((tmp_path / "spool").glob("*.jsonl")) == []
    assert store.count("jak_issued_card") == 3
    assert any("left in the local spool by an earlier run" in r.getMessage() for r in caplog.records)
    store.dispose()


def test_start_up_says_when_the_spool_cannot_take_rows(tmp_path, caplog):
    (tmp_path / "a-file").write_text("")
    store = Store(f"sqlite:///{tmp_path / 't.sqlite3'}", spool_dir=tmp_path / "a-file" / "spool")
    store.migrate()
    assert any("is not writable" in r.getMessage() for r in caplog.records)
    store.dispose()


def test_a_stopping_process_writes_back_the_token_ids_it_kept_in_memory(tmp_path):
    db_dir = tmp_path / "later"
    store = Store(f"sqlite:///{db_dir / 'u.sqlite3'}", spool_dir=tmp_path / "spool")
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert store.remember_jti("iss", "exit-1", soon) is True                   # from memory
    db_dir.mkdir()
    store.audit._next_attempt = time.monotonic() + 60                        # its writer is backing off
    store.audit.at_exit()
    assert store.count("jak_seen_jti") == 1 and not store.replay_ids.memory
    store.dispose()


def test_spool_directory_from_settings_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("JAK_CDS_AUDIT_SPOOL", str(tmp_path / "sp"))
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'h.sqlite3'}")
    settings = Settings.from_env()
    assert Store.from_settings(settings).spool.directory == tmp_path / "sp"
    assert connection.default_spool_dir(f"sqlite:///{tmp_path / 'h.sqlite3'}") == tmp_path / "h-audit-spool"
    assert connection.default_spool_dir("sqlite://") is None
    assert connection.default_spool_dir("postgresql+psycopg://u@h/db").name == "jak-cds-audit-spool"
    assert connection.database_key("postgresql+psycopg://u:one@h/db") == connection.database_key(
        "postgresql+psycopg://u:two@h/db")                          # a new password is the same database
    monkeypatch.setenv("JAK_CDS_JTI_FALLBACK", "sometimes")
    with pytest.raises(SystemExit, match="JTI_FALLBACK"):
        Settings.from_env()


def test_report_says_how_many_rows_wait(tmp_path, monkeypatch, capsys):
    """Rows in a file its live writer still holds are waiting; rows left by a process that stopped are
    written by the next start-up (the report's own included) and counted as issued."""
    db = tmp_path / "r.sqlite3"
    url = f"sqlite:///{db}"
    store = Store(url, patient_hash_key="k", spool_dir=tmp_path / "spool")
    store.migrate()
    with SqliteLocked(db):
        store.record_issued("svc", "h", "p", rows(3), "kv", wait=False)
        assert store.flush(10)
        assert wait_until(lambda: len(spool_lines(tmp_path / "spool")) == 3)
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", url)
    monkeypatch.setenv("JAK_CDS_AUDIT_SPOOL", str(tmp_path / "spool"))
    store.audit._next_attempt = time.monotonic() + 60             # its writer is still backing off
    assert cli_main(["report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["audit_spool"]["rows_waiting"] == 3 and report["totals"]["issued"] == 0
    assert cli_main(["report"]) == 0
    assert "3 issued-card row(s) waiting for the database" in capsys.readouterr().out
    store.spool.close()                                            # the writer's process stops
    assert cli_main(["report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["audit_spool"]["rows_waiting"] == 0 and report["totals"]["issued"] == 3
    assert cli_main(["report"]) == 0
    assert "no issued-card rows waiting" in capsys.readouterr().out
    store.dispose()


def test_report_on_an_unreadable_database_still_says_what_waits(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.sqlite3'}"
    spool = AuditSpool(tmp_path / "spool", connection.database_key(url))
    spool.append([dict(card_uuid="w-1", service_id="svc", rule_id="r", knowledge_version="kv", hook_instance="h",
                       patient_hash="x" * 64, issued_at=NOW)])
    spool.close()
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", url)
    monkeypatch.setenv("JAK_CDS_AUDIT_SPOOL", str(tmp_path / "spool"))
    assert cli_main(["report"]) == 2
    err = capsys.readouterr().err
    assert "cannot read the database" in err and "1 issued-card row(s) waiting" in err


# --- the request path: never a 500 --------------------------------------------------------------

def test_a_database_error_anywhere_in_a_request_is_a_503_operation_outcome(tmp_path, knowledge, monkeypatch):
    app = create_app(trust_settings(tmp_path, auth="off"), knowledge=knowledge)
    from cds_service import hooks

    def broken(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(hooks, "evaluate", broken)
    assert_unavailable(app.test_client().post(SIGN_PATH, json=hook_body()))


def test_sqlite_locked_with_auth_on_cards_flow_feedback_asks_to_retry_and_nothing_is_lost(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], audit_spool=str(tmp_path / "spool"))
    app_a = create_app(settings, knowledge=knowledge)
    app_b = create_app(settings, knowledge=knowledge)              # another worker on the same file
    a, b = app_a.test_client(), app_b.test_client()
    app_a.extensions["jak_store"].migrate()
    app_b.extensions["jak_store"].migrate()
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    cards = []
    with SqliteLocked(db):
        during = token(key, SIGN)
        for n in range(3):
            response = sign(a, tok=during if n == 0 else token(key, SIGN))
            assert response.status_code == 200, response.get_data(as_text=True)
            cards += [c["uuid"] for c in response.get_json()["cards"]]
        assert sign(a, tok=during).status_code == 401               # a replay at the same worker: refused
        assert_unavailable(send_feedback(a, cards[0], key))
    store = app_a.extensions["jak_store"]
    assert store.drain(20)
    assert sorted(r["card_uuid"] for r in store.issued()) == sorted(cards)
    assert store.replay_ids.stats["written_back"] == 4 and store.count("jak_seen_jti") == 4   # 3 hook calls, 1 feedback
    assert sign(b, tok=during).status_code == 401                  # ... and at another worker, once back
    assert send_feedback(a, cards[0], key).status_code == 200


# --- the replay check during an outage (PostgreSQL) ---------------------------------------------

def test_two_instances_on_one_postgresql_refuse_a_replay_and_the_outage_window_is_as_stated(
        tmp_path, knowledge, key, drill_db, caplog):
    """Up: a token used at one instance is refused at the other. Down: each instance accepts a token once
    from its own memory (a replay at the same instance is refused; at the other it is the documented
    window, found and logged when the ids are written back). Back: every id accepted from memory is in
    the database, so a replay anywhere is refused again."""
    cluster, url = drill_db
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], database_url=url,
                              audit_spool=str(tmp_path / "spool"))
    app_a, app_b = create_app(settings, knowledge=knowledge), create_app(settings, knowledge=knowledge)
    a, b = app_a.test_client(), app_b.test_client()
    store_a, store_b = app_a.extensions["jak_store"], app_b.extensions["jak_store"]
    store_a.migrate()
    store_b.migrate()

    up = token(key, SIGN)
    assert sign(a, tok=up).status_code == 200
    assert sign(b, tok=up).status_code == 401

    cluster.stop()
    try:
        during, window = token(key, SIGN), token(key, SIGN)
        first = sign(a, tok=during)
        assert first.status_code == 200 and first.get_json()["cards"]
        assert sign(a, tok=during).status_code == 401              # same instance: refused from memory
        assert sign(a, tok=window).status_code == 200
        assert sign(b, tok=window).status_code == 200              # other instance: the stated window
        assert_unavailable(send_feedback(a, first.get_json()["cards"][0]["uuid"], key))
    finally:
        cluster.start()
    assert store_a.drain(30) and store_b.drain(30)
    assert sign(b, tok=during).status_code == 401                  # written back: refused everywhere
    assert sign(a, tok=window).status_code == 401 and sign(b, tok=window).status_code == 401
    found = store_a.replay_ids.stats["replays_found_on_write_back"] + store_b.replay_ids.stats["replays_found_on_write_back"]
    assert found == 1
    assert any("REPLAY during the database outage" in r.getMessage() for r in caplog.records)
    issued = {r["card_uuid"] for r in store_a.issued()}
    assert {c["uuid"] for c in first.get_json()["cards"]} <= issued
    store_a.dispose()
    store_b.dispose()


def test_refuse_mode_answers_503_with_retry_after_while_the_database_is_down(tmp_path, knowledge, key, drill_db):
    cluster, url = drill_db
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], database_url=url,
                              audit_spool=str(tmp_path / "spool"), jti_fallback="refuse")
    app = create_app(settings, knowledge=knowledge)
    client = app.test_client()
    app.extensions["jak_store"].migrate()
    assert sign(client, key).status_code == 200
    cluster.stop()
    try:
        assert_unavailable(sign(client, key))
        assert_unavailable(client.get("/cds-services", headers=bearer(token(key, f"{BASE}/cds-services"))))
    finally:
        cluster.start()
    assert wait_until(lambda: sign(client, key).status_code == 200, timeout=10, step=0.2)
    app.extensions["jak_store"].dispose()


def test_the_memory_for_token_ids_is_bounded_then_503(tmp_path, knowledge, key):
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}],
                              database_url=f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}",
                              audit_spool=str(tmp_path / "spool"))
    app = create_app(settings, knowledge=knowledge)
    app.extensions["jak_store"].replay_ids.memory_max = 2
    client = app.test_client()
    assert sign(client, key).status_code == 200
    assert sign(client, key).status_code == 200
    assert_unavailable(sign(client, key))
    app.extensions["jak_store"].replay_ids.memory.clear()                # the database never comes: nothing to write


def test_store_level_memory_fallback_keeps_ids_until_their_token_expires(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}")
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert store.remember_jti("iss", "j1", soon) is True
    assert store.remember_jti("iss", "j1", soon) is False
    store.replay_ids.memory_max = 1
    with pytest.raises(StoreUnavailable):
        store.remember_jti("iss", "j2", soon)
    store.replay_ids.memory[("iss", "j1")] = (soon, datetime.now(timezone.utc) - timedelta(seconds=1))
    assert store.remember_jti("iss", "j2", soon) is True           # an expired token's id made room
    store.replay_ids.memory.clear()                                      # the database never comes: nothing to write


def test_a_postgresql_that_hangs_instead_of_refusing_holds_a_request_at_most_its_statement_timeout(tmp_path):
    """An administrator's lock on the tables (or any stuck server): the statement is cancelled after
    PG_STATEMENT_TIMEOUT_MS and the request takes its outage path instead of hanging."""
    import psycopg

    from tests.helpers.trust import StoreFactory

    stores = StoreFactory("postgres", tmp_path)
    try:
        store = stores()
        store.migrate()
        dsn = stores.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as admin:
            admin.execute(f'LOCK TABLE "{stores.schema}".jak_seen_jti, "{stores.schema}".jak_feedback '
                          "IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            assert store.remember_jti("iss", "hung-1", None) is True          # from memory
            took = time.monotonic() - started
            assert connection.PG_STATEMENT_TIMEOUT_MS / 1000 - 0.5 < took < connection.PG_STATEMENT_TIMEOUT_MS / 1000 + 3
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.record_feedback("svc", [schema.FeedbackRow("c", "accepted", NOW)])
            assert time.monotonic() - started < 0.5                             # known down: no second wait
            admin.rollback()
        assert store.drain(20)
        assert store.remember_jti("iss", "hung-1", None) is False             # written back
    finally:
        stores.close()


# --- drills: a real server under load -----------------------------------------------------------

def _assert_drill(result, *, outage: bool = True):
    summary = result.summary()
    logging.getLogger(__name__).warning("drill figures: %s", json.dumps(summary))
    assert result.ok, (summary, result.server_log[-1500:])
    assert not result.bad_statuses(), summary                      # 200 or a 503 with Retry-After, never 500
    hooks_answered = [c for c in result.calls if c.kind == "hook" and c.status is not None]
    assert hooks_answered and all(c.status == 200 for c in hooks_answered), summary   # cards never withheld
    assert result.feedback_stored == len(set(result.feedback_acknowledged)) and result.feedback_duplicates == 0
    assert result.duplicates_audit == 0 and result.spool_rows_left == 0, summary
    if outage:
        during = summary["calls"]["hook"].get("outage", {})
        assert during.get("200", 0) > 0, summary                   # the load really ran through the outage
        assert result.spool_peak_rows > 0, summary                 # ... and the audit rows went to the spool
    return summary


def test_postgresql_stop_and_start_under_load_with_auth_on(drill_cluster):
    result = dbdrill.run(dbdrill.PostgresOutage(drill_cluster), auth=True, workers=2, concurrency=4,
                         before=0.6, outage=1.8, after=0.6, settle=30)
    summary = _assert_drill(result)
    assert result.missing_cards == [] and summary["recovery_s"] is not None and summary["recovery_s"] < 10


def test_postgresql_stop_and_start_under_load_with_auth_off_and_a_worker_killed_in_the_outage(drill_cluster):
    """SIGKILL of a gunicorn worker while it spools: it loses at most its last batch, and its spool file
    (locked by it until it died) is replayed by the other worker; the master starts a new worker."""
    result = dbdrill.run(dbdrill.PostgresOutage(drill_cluster), auth=False, workers=2, concurrency=4,
                         before=0.6, outage=1.8, after=0.6, kill_at=1.5, settle=30)
    summary = _assert_drill(result)
    assert result.t_stop < result.t_killed < result.t_up, summary
    assert result.lost_cards_outside(dbdrill.KILL_LOSS_WINDOW_S) == [], summary


def test_sqlite_locked_under_load_with_auth_on_and_a_worker_killed_before(tmp_path):
    """SQLite's outage (another process holds the write lock); before it, SIGKILL of a worker while the
    database is up: again at most its last batch is lost."""
    # 2.5 s: longer than a write attempt waits for the lock (1 s) plus the back-off, so rows reach the spool
    result = dbdrill.run(dbdrill.SqliteLock(), auth=True, workers=2, concurrency=4, before=1.0, outage=2.5,
                         after=0.6, kill_at=0.5, settle=30)
    summary = _assert_drill(result)
    assert result.t_killed < result.t_stop, summary
    assert result.lost_cards_outside(dbdrill.KILL_LOSS_WINDOW_S) == [], summary
