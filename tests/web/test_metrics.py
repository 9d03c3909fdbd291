"""``GET /metrics`` as Prometheus reads it: hook calls by service and status, their latency, cards by indicator,
fallback FHIR reads by outcome, the audit spool and the database; no patient id in any label; served to loopback
or with the metrics token only; and under gunicorn the counts of every worker add up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import responses
from prometheus_client.parser import text_string_to_metric_families

from cds_service.web.app import create_app
from cds_service.config import REPO_ROOT, Settings
from fixtures.builders import draft_order
from fixtures.builders import TODAY
from tests.helpers.hooks import FHIR_BASE, make_request
from tests.helpers.deploy import free_port, stop, wait_for
from tests.helpers.records import AD, record

PATIENT = "pat-SECRET-4711"
SIGN = "/cds-services/jak-order-sign"


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= set(ls))


def children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(p) for p in open(path).read().split()] if os.path.exists(path) else []


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def sign_body(patient: str = PATIENT, **kwargs) -> dict:
    return make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]), patient_id=patient, **kwargs)


@pytest.fixture
def client(tmp_path, knowledge):
    settings = Settings(evaluation_date=TODAY.isoformat(), database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        auth="off", fhir_timeout=1.0, audit_spool=str(tmp_path / "spool"),
                        metrics_token="scrape-token-123", allowed_fhir_servers=(FHIR_BASE,))
    return create_app(settings, knowledge=knowledge).test_client()


def scrape(client, **kwargs) -> str:
    answer = client.get("/metrics", **kwargs)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    return answer.get_data(as_text=True)


def test_a_hook_call_moves_the_counters_and_no_label_holds_the_patient(client):
    before = scrape(client)
    answer = client.post(SIGN, json=sign_body())
    cards = answer.get_json()["cards"]
    assert answer.status_code == 200 and cards
    client.post("/cds-services/no-such-service", json=sign_body())
    after = scrape(client)
    calls = "jak_cds_hook_requests_total"
    assert value(after, calls, service="jak-order-sign", status="200") == \
        value(before, calls, service="jak-order-sign", status="200") + 1
    assert value(after, calls, service="unknown", status="404") >= 1, "an unknown id is never a label"
    assert value(after, "jak_cds_hook_duration_seconds_count", service="jak-order-sign") == \
        value(before, "jak_cds_hook_duration_seconds_count", service="jak-order-sign") + 1
    for indicator in {card["indicator"] for card in cards}:
        expected = sum(card["indicator"] == indicator for card in cards)
        assert value(after, "jak_cds_cards_total", indicator=indicator) - \
            value(before, "jak_cds_cards_total", indicator=indicator) == expected
    assert value(after, "jak_cds_database_up") == 1 and value(after, "jak_cds_ready") == 1
    assert value(after, "jak_cds_audit_spool_rows") == 0
    assert PATIENT not in after and "no-such-service" not in after


def test_fallback_reads_are_counted_by_outcome(client):
    body = sign_body(prefetch=False, fhir_server=FHIR_BASE)
    before = scrape(client)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, __import__("re").compile(".*"), lambda request: (500, {}, "{}"))
        assert client.post(SIGN, json=body).status_code == 200
    after = scrape(client)
    assert value(after, "jak_cds_fhir_fallback_fetches_total", outcome="http_error") > \
        value(before, "jak_cds_fhir_fallback_fetches_total", outcome="http_error")
    assert PATIENT not in after


def test_only_loopback_or_the_token_may_read(client):
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    wrong = client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
    scrape(client, environ_base=remote, headers={"Authorization": "Bearer scrape-token-123"})
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403, "a request relayed by a proxy on this host is not a loopback client"
    scrape(client)


def test_serve_with_two_workers_adds_up_the_counts_of_both(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAK_CDS_", "PROMETHEUS_"))}
    env.update(JAK_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", JAK_CDS_AUTH="off",
               JAK_CDS_AUDIT_SPOOL=str(tmp_path / "spool"), JAK_CDS_EVALUATION_DATE=TODAY.isoformat())
    log = (tmp_path / "server.log").open("a+b")
    server = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"],
                              cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    calls = 16
    try:
        up = wait_for(f"{base}/readyz", server)
        log.seek(0)
        assert up is not None and up.status_code == 200, log.read().decode(errors="replace")[-3000:]

        def call(_):
            # a new connection each time, so both workers take calls
            return requests.post(f"{base}{SIGN}", json=sign_body(), headers={"Connection": "close"}, timeout=30)

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(call, range(calls)))
        assert all(a.status_code == 200 and a.json()["cards"] for a in answers)
        # whichever worker answers the scrape, it reports both workers' counts
        scrapes = [requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10) for _ in range(4)]
        assert all(s.status_code == 200 for s in scrapes)
        for scraped in scrapes:
            assert value(scraped.text, "jak_cds_hook_requests_total", service="jak-order-sign", status="200") == calls
            assert value(scraped.text, "jak_cds_hook_duration_seconds_count", service="jak-order-sign") == calls
            assert PATIENT not in scraped.text

        # a worker replaced (gunicorn restarts one that ends): what it counted stays counted, the others go on
        workers = children(server.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGTERM)
        assert wait_until(lambda: len(children(server.pid)) == 2 and workers[0] not in children(server.pid))
        with ThreadPoolExecutor(4) as pool:
            assert all(a.status_code == 200 for a in pool.map(call, range(4)))
        scraped = requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text
        assert value(scraped, "jak_cds_hook_requests_total", service="jak-order-sign", status="200") == calls + 4
    finally:
        code = stop(server)
        log.close()
    assert code == 0
    text = (tmp_path / "server.log").read_text(errors="replace")
    assert "gthread" in text and PATIENT not in text


def test_refused_tokens_are_counted_by_reason_and_audit_rows_by_outcome(tmp_path, knowledge):
    from tests.helpers.trust import ISS, ec_key, jwks, trust_settings

    settings = trust_settings(tmp_path, [{"iss": ISS, "jwks": jwks(ec_key())}], audit_spool=str(tmp_path / "spool"))
    client = create_app(settings, knowledge=knowledge).test_client()
    before = scrape(client)
    assert client.post(SIGN, json=sign_body()).status_code == 401
    assert client.post(SIGN, json=sign_body(), headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    after = scrape(client)
    refusals = "jak_cds_auth_refusals_total"
    for reason in ("missing", "malformed"):
        assert value(after, refusals, reason=reason) == value(before, refusals, reason=reason) + 1
    assert value(after, "jak_cds_hook_requests_total", service="jak-order-sign", status="401") == \
        value(before, "jak_cds_hook_requests_total", service="jak-order-sign", status="401") + 2


def test_audit_rows_written_are_counted(tmp_path, knowledge):
    settings = Settings(evaluation_date=TODAY.isoformat(), database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        auth="off", audit_spool=str(tmp_path / "spool"))
    app = create_app(settings, knowledge=knowledge)
    client = app.test_client()
    before = scrape(client)
    cards = client.post(SIGN, json=sign_body()).get_json()["cards"]
    app.extensions["jak_store"].flush()
    after = scrape(client)
    written = "jak_cds_audit_rows_total"
    assert value(after, written, outcome="written") == value(before, written, outcome="written") + len(cards)


def test_a_server_that_does_not_start_leaves_no_metrics_directory_named(monkeypatch, tmp_path):
    """``serve`` names a new metrics directory in the environment; when it ends (here: it refuses to start),
    the name goes with the directory, so a server started later from the same process does not count into a
    directory that is gone."""
    from cds_service.cli import main as cli_main

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("JAK_CDS_TRUSTED_CLIENTS", raising=False)
    monkeypatch.delenv("JAK_CDS_AUTH", raising=False)
    monkeypatch.setenv("JAK_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert cli_main(["serve", "--host", "0.0.0.0", "--port", "1", "--workers", "2"]) == 2
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
