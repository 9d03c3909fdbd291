"""An operator's probes: ``/healthz`` says the process answers, ``/readyz`` whether this replica may take hook
calls, naming what is missing. Through a database outage a migrated replica stays Ready ("degraded": cards
flow, the audit is spooled); before its first migration it is not Ready, and becomes Ready once the database
is there. Neither needs a token, is audited, nor logs anything of a patient."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from cds_service.web import health
from cds_service.web.app import create_app
from cds_service.config import REPO_ROOT, Settings
from cds_service.store.schema import issued_card
from fixtures.builders import TODAY
from tests.helpers.hooks import make_request
from tests.helpers.deploy import free_port, stop, wait_for
from tests.helpers.drills import hook_body, wait_until
from tests.helpers.records import AD, record
from fixtures.builders import draft_order
from tests.helpers.trust import ISS, ec_key, jwks, trust_settings


@pytest.fixture(autouse=True)
def check_every_time(monkeypatch):
    """Each /readyz asks the database (in production at most every CHECK_EVERY_S)."""
    monkeypatch.setattr(health, "CHECK_EVERY_S", 0.0)


def settings_for(tmp_path, url: str, **more) -> Settings:
    return Settings(evaluation_date=TODAY.isoformat(), database_url=url, auth="off",
                    audit_spool=str(tmp_path / "spool"), **more)


def test_healthz_and_readyz_on_a_working_replica(tmp_path, knowledge):
    app = create_app(settings_for(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}"), knowledge=knowledge)
    client = app.test_client()
    alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.get_json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    body = ready.get_json()
    assert body["status"] == "ready" and body["failing"] == []
    assert {"knowledge", "database", "audit"} <= set(body["checks"])
    assert knowledge.version in body["checks"]["knowledge"]["detail"]
    assert ready.headers["Cache-Control"] == "no-store"


def test_probes_need_no_token_when_hook_calls_do(tmp_path, knowledge):
    key = ec_key("ec-1", "ES384")
    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(key)}], audit_spool=str(tmp_path / "spool"))
    client = create_app(settings, knowledge=knowledge).test_client()
    assert client.post("/cds-services/jak-order-sign", json=hook_body()).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_probes_are_not_audited_and_log_no_patient(tmp_path, knowledge, caplog):
    app = create_app(settings_for(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}"), knowledge=knowledge)
    client = app.test_client()
    with caplog.at_level("DEBUG"):
        for _ in range(3):
            client.get("/healthz")
            client.get("/readyz?patient=pat-4711")
    store = app.extensions["jak_store"]
    store.flush()
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(issued_card)).scalar_one() == 0
    assert "pat-4711" not in caplog.text
    assert not [r for r in caplog.records if r.name == "cds_service.request"], "probes write no request line"


def test_readyz_names_the_database_when_it_is_unreachable_at_start(tmp_path, knowledge):
    port = free_port()               # nothing listens there
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/none?connect_timeout=1"
    client = create_app(settings_for(tmp_path, url), knowledge=knowledge).test_client()
    assert client.get("/healthz").status_code == 200, "liveness does not depend on the database"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "not ready" and body["failing"] == ["database"]
    assert "not migrated" in body["checks"]["database"]["detail"]
    assert body["checks"]["knowledge"]["ok"] is True


def test_postgresql_down_at_start_then_up_then_down_again(tmp_path, knowledge, drill_db):
    """Down before the first migration: 503. Up: /readyz migrates, 200. Down again after that: still 200, said
    to be degraded, and a hook call still gets its cards, its audit row spooled."""
    cluster, url = drill_db
    cluster.stop()
    try:
        app = create_app(settings_for(tmp_path, url), knowledge=knowledge)
        client = app.test_client()
        before = client.get("/readyz")
        assert before.status_code == 503 and before.get_json()["failing"] == ["database"]
    finally:
        cluster.start()
    after = client.get("/readyz")
    assert after.status_code == 200, after.get_json()
    assert after.get_json()["status"] == "ready"

    cluster.stop()
    try:
        degraded = client.get("/readyz")
        assert degraded.status_code == 200, degraded.get_json()
        body = degraded.get_json()
        assert body["status"] == health.DEGRADED and body["failing"] == ["database"]
        assert body["checks"]["audit"]["spool"] == "writable"
        call = client.post("/cds-services/jak-order-sign",
                           json=make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)])))
        assert call.status_code == 200 and call.get_json()["cards"], "cards flow through the outage"
    finally:
        cluster.start()
    # back: Ready again once a probe finds it (the request path's probe interval, at most 5 s)
    assert wait_until(lambda: client.get("/readyz").get_json()["status"] == "ready", timeout=15)


def test_a_replica_whose_spool_cannot_take_rows_is_not_ready_in_an_outage(tmp_path, knowledge, drill_db):
    cluster, url = drill_db
    blocked = tmp_path / "a-file"
    blocked.write_text("")                          # the spool directory would have to be inside a file
    app = create_app(settings_for(tmp_path, url).with_(audit_spool=str(blocked / "spool")), knowledge=knowledge)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200, "the database takes the rows: ready"
    cluster.stop()
    try:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        body = answer.get_json()
        assert set(body["failing"]) == {"database", "audit"} and body["checks"]["audit"]["spool"] == "not writable"
    finally:
        cluster.start()


def test_serve_starts_with_its_database_unreachable_and_says_so_on_readyz(tmp_path):
    """``jak-cds serve --workers 2`` with PostgreSQL unreachable: the server comes up (no restart loop),
    alive, not Ready, the database named."""
    nothing = free_port()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAK_CDS_")}
    env.update(JAK_CDS_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{nothing}/none?connect_timeout=1",
               JAK_CDS_AUTH="off", JAK_CDS_AUDIT_SPOOL=str(tmp_path / "spool"))
    log = (tmp_path / "server.log").open("a+b")
    server = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"],
                              cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    try:
        alive = wait_for(f"http://127.0.0.1:{port}/healthz", server)
        log.seek(0)
        assert alive is not None and alive.status_code == 200, log.read().decode(errors="replace")[-3000:]
        ready = wait_for(f"http://127.0.0.1:{port}/readyz", server)
        assert ready.status_code == 503 and ready.json()["failing"] == ["database"]
    finally:
        stop(server)
        log.close()
    assert b"database unreachable at start" in (tmp_path / "server.log").read_bytes()


def test_readyz_within_a_probe_interval_of_an_outage_says_since_when_not_500(tmp_path, knowledge):
    app = create_app(settings_for(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}"), knowledge=knowledge)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    app.extensions["jak_store"].health.failed(RuntimeError("connection refused"), 0.0)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["checks"]["database"]["detail"].startswith("unreachable for ")
