"""The store on SQLite (tmp file) and PostgreSQL (JAK_CDS_TEST_POSTGRES_URL, a private schema per test).

PostgreSQL tests skip only when the server is unreachable and JAK_CDS_REQUIRE_POSTGRES is unset; CI sets it.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from cds_service.store import FeedbackRow, Store, schema
from tests.helpers.trust import StoreFactory

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request, tmp_path):
    factory = StoreFactory(request.param, tmp_path)
    yield factory
    factory.close()


def overridden(card: str, code: str = "declined", display: str = "Patient declined") -> FeedbackRow:
    return FeedbackRow(card, "overridden", NOW, override_system="urn:x", override_code=code, override_display=display)


def run_together(target, args_list) -> list[Exception]:
    """Run ``target(*args)`` for every args tuple at once, one thread each; the exceptions they raised."""
    errors: list[Exception] = []

    def run(*args):
        try:
            target(*args)
        except Exception as exc:      # noqa: BLE001 - returned to the test, which asserts on them
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def all_values(store: Store) -> str:
    """Every value in every table, as one string (to look for things that must not be stored)."""
    out = []
    with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                out.extend(str(v) for v in row)
    return "\n".join(out)


def test_migrations_run_once_and_record_the_version(stores):
    first = stores()
    assert first.migrate() == schema.SCHEMA_VERSION
    assert first.schema_version() == schema.SCHEMA_VERSION
    second = stores()                                  # a restart: nothing to apply, no error
    assert second.migrate() == schema.SCHEMA_VERSION
    with second.engine.connect() as conn:
        assert conn.execute(select(schema.schema_version.c.version)).scalars().all() == \
            [version for version, _ in schema.MIGRATIONS]


def test_a_database_at_version_1_gains_the_card_language_and_keeps_its_rows(stores, monkeypatch):
    """Migration 2 (issue 25) adds jak_issued_card.language to a database made by version 1: rows written
    before it stay (language NULL, i.e. English), new rows record their language."""
    from cds_service.store import database

    old = stores()
    monkeypatch.setattr(database, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(database, "SCHEMA_VERSION", 1)
    assert old.migrate() == 1
    monkeypatch.undo()
    with old.engine.begin() as conn:
        conn.execute(schema.issued_card.insert().values(   # only version 1's columns
            card_uuid="old", service_id="s", rule_id="r", knowledge_version="k", hook_instance="h",
            patient_hash="p", issued_at=schema.utcnow()))
    store = stores()                                   # the new version starts on that database
    assert store.migrate() == schema.SCHEMA_VERSION
    store.record_issued("svc", "h", "p", [("new", "rule-a")], "kv", language="nl")
    with store.engine.connect() as conn:
        rows = dict(conn.execute(select(schema.issued_card.c.card_uuid, schema.issued_card.c.language)).all())
    assert rows == {"old": None, "new": "nl"}


def test_a_database_newer_than_the_code_refuses(stores):
    first = stores()
    first.migrate()
    with first.engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=99, applied_at=NOW))
    with pytest.raises(SystemExit, match="newer than this service"):
        stores().migrate()


def test_concurrent_start_up_migrates_once(stores):
    fresh = [stores() for _ in range(6)]
    errors = run_together(Store.migrate, [(s,) for s in fresh])
    assert errors == []
    assert fresh[0].count("jak_schema_version") == len(schema.MIGRATIONS)     # each migration once


def test_issued_cards_are_recorded_with_a_keyed_hash_not_the_patient_id(stores):
    store = stores(patient_hash_key="k3y")
    store.record_issued("jak-order-sign", "hook-1", "patient-0042", [("card-a", "rule-x"), ("card-b", "missing-data")],
                        "kv-1")
    rows = store.issued()
    assert [(r["card_uuid"], r["rule_id"], r["service_id"], r["hook_instance"], r["knowledge_version"])
            for r in rows] == [("card-a", "rule-x", "jak-order-sign", "hook-1", "kv-1"),
                               ("card-b", "missing-data", "jak-order-sign", "hook-1", "kv-1")]
    expected = hmac.new(b"k3y", b"patient-0042", hashlib.sha256).hexdigest()
    assert {r["patient_hash"] for r in rows} == {expected}
    assert rows[0]["issued_at"] is not None
    assert "patient-0042" not in all_values(store)


def test_generated_hash_key_is_persisted_so_hashes_survive_a_restart(stores):
    first = stores()
    h1 = first.patient_hash("p-1")
    first.dispose()
    second = stores()
    assert second.patient_hash("p-1") == h1
    assert second.patient_hash("p-2") != h1
    # and it is a keyed hash, not a bare SHA-256 of the id
    assert h1 != hashlib.sha256(b"p-1").hexdigest()


def test_concurrent_first_use_agrees_on_one_hash_key(stores):
    stores().migrate()
    fresh = [stores() for _ in range(6)]
    hashes = []
    errors = run_together(lambda store: hashes.append(store.patient_hash("p-1")), [(s,) for s in fresh])
    assert errors == [] and len(set(hashes)) == 1


def test_feedback_is_stored_and_joined_to_the_rule(stores):
    store = stores()
    store.record_issued("svc", "h", "p", [("c1", "rule-a"), ("c2", "rule-a"), ("c3", "rule-b")], "kv")
    store.record_feedback("svc", [
        FeedbackRow("c1", "accepted", NOW, accepted_suggestions=["s1"]),
        overridden("c2", "declined", "Patient declined"),
        overridden("c3", "declined", "Patient declined"),
        overridden("zz", "other", "Other"),
    ])
    store.record_feedback("svc", [overridden("c3", "benefit", "Benefit outweighs risk")])
    rows = store.feedback_rows()
    assert len(rows) == 5
    assert rows[0]["accepted_suggestions"] == '["s1"]'
    report = {r["rule"]: r for r in store.rule_report()}
    assert (report["rule-a"]["issued"], report["rule-a"]["accepted"], report["rule-a"]["overridden"]) == (2, 1, 1)
    # two overrides of the same card count once as an overridden card, but both reasons are counted
    assert (report["rule-b"]["issued"], report["rule-b"]["overridden"]) == (1, 1)
    assert [(r["code"], r["count"]) for r in report["rule-b"]["top_override_reasons"]] == [("benefit", 1),
                                                                                            ("declined", 1)]
    assert report["(unknown card)"]["overridden"] == 1
    assert report["rule-a"]["top_override_reasons"][0]["display"] == "Patient declined"


def test_top_override_reasons_are_ranked_and_capped(stores):
    store = stores()
    cards = [f"c{i}" for i in range(10)]
    store.record_issued("svc", "h", "p", [(c, "rule") for c in cards], "kv")
    codes = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"]
    store.record_feedback("svc", [overridden(c, code, code.upper()) for c, code in zip(cards, codes)])
    [row] = store.rule_report()
    assert [(r["code"], r["count"]) for r in row["top_override_reasons"]] == [("a", 4), ("b", 3), ("c", 2)]


def test_feedback_timestamps_keep_their_instant(stores):
    store = stores()
    store.record_feedback("svc", [FeedbackRow("c", "accepted", datetime(2026, 3, 1, 12, 0,
                                                                          tzinfo=timezone(timedelta(hours=2))))])
    stamp = store.feedback_rows()[0]["outcome_timestamp"]
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    assert stamp == datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)


def test_jti_is_single_use_across_stores(stores):
    a, b = stores(), stores()
    exp = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert a.remember_jti("iss", "j1", exp) is True
    assert a.remember_jti("iss", "j1", exp) is False
    assert b.remember_jti("iss", "j1", exp) is False
    assert b.remember_jti("other-iss", "j1", exp) is True


def test_jti_is_kept_at_least_an_hour_even_if_the_token_expired_sooner(stores):
    store = stores()
    assert store.remember_jti("iss", "short", datetime.now(timezone.utc) - timedelta(minutes=10))
    with store.engine.connect() as conn:
        keep = conn.execute(select(schema.seen_jti.c.expires_at)).scalar_one()
    keep = keep if keep.tzinfo else keep.replace(tzinfo=timezone.utc)
    assert keep >= datetime.now(timezone.utc) + timedelta(minutes=59)
    assert store.remember_jti("iss", "short", None) is False


def test_expired_jti_entries_are_purged(stores):
    """Expired token ids are deleted by the next call once the prune interval has passed (here: at once)."""
    store = stores()
    store.replay_ids.prune_interval_s = 0
    store.remember_jti("iss", "old", None)
    with store.engine.begin() as conn:
        conn.execute(schema.seen_jti.update().values(expires_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    store.remember_jti("iss", "new", None)
    assert store.count("jak_seen_jti") == 1


def test_concurrent_writers_lose_nothing(stores):
    stores().migrate()
    writers, per_writer = 8, 25

    def write(n):
        store = stores()
        for i in range(per_writer):
            card = f"w{n}-{i}"
            store.record_issued("svc", f"h{n}", f"p{n}", [(card, f"rule-{n % 3}")], "kv")
            store.record_feedback("svc", [overridden(card)])
            assert store.remember_jti("iss", card, None)

    errors = run_together(write, [(n,) for n in range(writers)])
    assert errors == []
    check = stores()
    total = writers * per_writer
    assert (check.count("jak_issued_card"), check.count("jak_feedback"), check.count("jak_seen_jti")) == (total,) * 3
    assert sum(r["overridden"] for r in check.rule_report()) == total


def test_concurrent_replays_of_one_jti_admit_exactly_one(stores):
    stores().migrate()
    results = []
    barrier = threading.Barrier(8)

    def attempt():
        store = stores()
        barrier.wait()
        results.append(store.remember_jti("iss", "same", None))

    run_together(attempt, [()] * 8)
    assert sorted(results) == [False] * 7 + [True]


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    store.dispose()


def test_postgres_schema_isolation(tmp_path):
    """Two test schemas on the same server do not see each other's rows."""
    a, b = StoreFactory("postgres", tmp_path), StoreFactory("postgres", tmp_path)
    try:
        a().record_issued("svc", "h", "p", [("only-in-a", "r")], "kv")
        assert b().count("jak_issued_card") == 0
        assert a().count("jak_issued_card") == 1
    finally:
        a.close()
        b.close()


def test_in_memory_sqlite_is_one_database_for_all_threads():
    """``sqlite://`` (used by in-process replays): rows written in one thread are seen from another."""
    store = Store("sqlite://")
    store.record_issued("svc", "h", "p", [("c1", "r")], "kv")
    worker = threading.Thread(target=store.record_issued, args=("svc", "h", "p", [("c2", "r")], "kv"))
    worker.start()
    worker.join()
    assert store.count("jak_issued_card") == 2


def test_hook_calls_audit_in_the_background_and_nothing_is_lost(stores):
    store = stores()
    store.migrate()
    calls = 200
    for n in range(calls):
        store.record_issued("svc", f"h{n}", f"p{n}", [(f"bg-{n}-a", "rule-a"), (f"bg-{n}-b", "rule-b")], "kv",
                            wait=False)
    other = stores()                       # another process's view: everything arrives once flushed
    assert store.flush(timeout=30)
    assert other.count("jak_issued_card") == 2 * calls
    assert store.audit_failures == 0


def test_rows_still_waiting_at_exit_are_written(tmp_path):
    """A worker that stops (gunicorn's graceful exit) writes what its audit writer still holds."""
    import subprocess
    import sys
    url = f"sqlite:///{tmp_path / 'exit.sqlite3'}"
    script = ("from cds_service.store import Store\n"
              f"s = Store({url!r})\n"
              "s.migrate()\n"
              "for n in range(500):\n"
              "    s.record_issued('svc', f'h{n}', 'p', [(f'exit-{n}', 'rule')], 'kv', wait=False)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert Store(url).count("jak_issued_card") == 500


def test_audit_rows_of_calls_close_together_share_a_transaction_and_arrive_without_a_reader(tmp_path):
    """Under load the writer lingers a moment, so ten calls a millisecond apart cost one or two database
    transactions instead of ten; and nobody has to ask (flush) for the rows to arrive."""
    import time
    url = f"sqlite:///{tmp_path / 'linger.sqlite3'}"
    store = Store(url)
    store.migrate()
    batches: list[int] = []
    real_write = store.audit._write_rows
    store.audit._write_rows = lambda rows: (batches.append(len(rows)), real_write(rows))
    for n in range(10):
        store.record_issued("svc", f"h{n}", "p", [(f"linger-{n}", "rule")], "kv", wait=False)
        time.sleep(0.001)
    other = Store(url)
    deadline = time.monotonic() + 10
    while other.count("jak_issued_card") < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert other.count("jak_issued_card") == 10
    assert sum(batches) == 10 and len(batches) <= 2, batches
    other.dispose()
    store.dispose()
