"""SIGTERM ends a real server process within 5 s while a fallback fetch is stuck on a dripping FHIR server.

Before, the fetch threads of a pool were joined at exit and a drip kept them busy: ``jak-cds serve``
needed SIGKILL. The budget here is 30 s, so only the shutdown path (``fhir_client.stop_all``: reads cut
after ``STOP_GRACE``) can end the call in time, not its deadline.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from cds_service.cli.devtools.fault_fhir_server import FaultFhirServer
from cds_service.config import REPO_ROOT
from fixtures.builders import draft_order
from tests.helpers.hooks import make_request
from tests.helpers.records import RA, record

STOP_WITHIN = 5.0
RECORD = record(extra=[RA, draft_order("upadacitinib 15 mg", 15)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path, workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAK_CDS_")}
    env.update(JAK_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.sqlite3'}", JAK_CDS_AUTH="off",
               JAK_CDS_FHIR_TIMEOUT="30", JAK_CDS_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port),
                             "--workers", str(workers)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited at start-up with {proc.returncode}")
        try:
            if requests.get(f"{base}/cds-services", timeout=1).status_code == 200:
                return proc, base
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start within 60 s")


@pytest.mark.parametrize("workers", [0, 2], ids=["single-process", "gunicorn-2-workers"])
def test_sigterm_ends_the_server_within_5_s_while_a_fetch_drips(tmp_path, workers):
    proc, base = _start(tmp_path, workers)
    try:
        with FaultFhirServer(RECORD, mode="drip", drip_interval=0.2) as drip:
            answer: dict = {}

            def hook_call():
                body = make_request(RECORD, prefetch=False, fhir_server=drip.url)
                try:
                    answer["response"] = requests.post(f"{base}/cds-services/jak-order-sign", json=body, timeout=40)
                except requests.RequestException as exc:
                    answer["error"] = exc

            caller = threading.Thread(target=hook_call)
            caller.start()
            assert drip.wait_in_flight(12, timeout=10), "the hook call's reads never reached the drip server"
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=STOP_WITHIN + 5)
            stopped = time.monotonic() - start
            caller.join(10)
            assert stopped < STOP_WITHIN, f"SIGTERM took {stopped:.2f} s"
            deadline = time.monotonic() + 3
            while drip.in_flight and time.monotonic() < deadline:
                time.sleep(0.05)
            assert drip.in_flight == 0                          # its connections were closed, not left open
        if workers:
            # gunicorn lets the call in flight finish: it answers, with the reads the stop cut said
            response = answer["response"]
            assert response.status_code == 200
            [card] = response.json()["cards"]
            assert card["source"]["topic"]["code"] == "record-unreadable"
            assert "the service was stopping" in card["detail"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
