"""``JAK_CDS_LOG_FORMAT=json``: what a log collector receives from ``jak-cds serve`` is one JSON object per
line, a hook call's line says request id, service, status, duration and card count, and nothing in the log
holds the EHR's FHIR token, the caller's JWT or the patient id, even when the call makes the service read
from the FHIR server with that token and the read fails."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import requests

from cds_service.config import REPO_ROOT
from cds_service.web.logging_json import JsonFormatter, redact
from fixtures.builders import draft_order
from fixtures.builders import TODAY
from tests.helpers.hooks import make_request
from tests.helpers.deploy import free_port, stop, wait_for
from tests.helpers.records import AD, record

PATIENT = "pat-SECRET-4711"
FHIR_TOKEN = "fhir-access-token-Zq81xv"
JWT = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2lnbmF0dXJlLWJ5dGVz"


def test_serve_writes_one_json_object_per_line_without_token_or_patient(tmp_path):
    port, fhir_port = free_port(), free_port()        # nothing listens on the FHIR server's port
    fhir_server = f"http://127.0.0.1:{fhir_port}/fhir"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAK_CDS_", "PROMETHEUS_"))}
    env.update(JAK_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", JAK_CDS_AUTH="off",
               JAK_CDS_AUDIT_SPOOL=str(tmp_path / "spool"), JAK_CDS_EVALUATION_DATE=TODAY.isoformat(),
               JAK_CDS_LOG_FORMAT="json", JAK_CDS_ALLOWED_FHIR_SERVERS=fhir_server, JAK_CDS_FHIR_TIMEOUT="1")
    log_path = tmp_path / "server.log"
    log = log_path.open("a+b")
    server = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"],
                              cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        up = wait_for(f"{base}/readyz", server)
        assert up is not None and up.status_code == 200, log_path.read_text(errors="replace")[-3000:]
        body = make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]), patient_id=PATIENT,
                            prefetch=False, fhir_server=fhir_server, token=FHIR_TOKEN)
        answer = requests.post(f"{base}/cds-services/jak-order-sign", json=body, timeout=30,
                               headers={"Authorization": f"Bearer {JWT}", "X-Request-ID": "req-42"})
        assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "req-42"
        cards = answer.json()["cards"]
        assert cards, "the gap is said on a card"
        # a path with the patient id in it, and a query string: neither is logged as sent
        requests.post(f"{base}/cds-services/{PATIENT}?patient={PATIENT}", json=body, timeout=10)
        requests.get(f"{base}/{PATIENT}", timeout=10)
    finally:
        stop(server)
        log.close()
    text = log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]           # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    (hook_line,) = [r for r in records if r.get("request_id") == "req-42" and r.get("route")]
    assert hook_line["service"] == "jak-order-sign" and hook_line["status"] == 200
    assert hook_line["cards"] == len(cards) and hook_line["duration_ms"] > 0
    assert hook_line["route"] == "/cds-services/<service_id>"
    assert any(r.get("status") == 404 and r.get("service") == "unknown" for r in records)
    assert any(r.get("status") == 404 and r.get("route") == "(no route)" for r in records)
    assert any("gunicorn" in r["logger"] for r in records), "gunicorn's own lines are JSON too"
    for secret in (PATIENT, FHIR_TOKEN, JWT, JWT.split(".")[1]):
        assert secret not in text


def test_a_token_in_a_message_is_redacted():
    record_ = logging.LogRecord("x", logging.WARNING, __file__, 1, "refused %s", (f"Bearer {FHIR_TOKEN}",), None)
    line = json.loads(JsonFormatter().format(record_))
    assert FHIR_TOKEN not in json.dumps(line) and line["level"] == "WARNING"
    assert JWT not in redact(f"token {JWT} here")
