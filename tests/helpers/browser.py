"""What the browser tests of the monitoring app share: the fixture FHIR server (``jak-cds fhir-server``), the
service on a loopback port, and Debian's Chromium through Playwright (skipped when either is missing, unless
JAK_CDS_REQUIRE_BROWSER=1, which .ci/run sets: fail, not skip)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from cds_service.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("JAK_CDS_CHROMIUM", "/usr/bin/chromium")

try:
    from playwright.sync_api import sync_playwright
except ImportError:                      # pragma: no cover - the test extra installs it
    sync_playwright = None


def skip_without_browser() -> None:
    """Call at module level: skip the module when Playwright or Chromium is missing (fail under .ci/run)."""
    if sync_playwright is None or not shutil.which(CHROMIUM):
        if os.environ.get("JAK_CDS_REQUIRE_BROWSER") == "1":
            raise RuntimeError(f"the browser tests need playwright and {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"playwright or {CHROMIUM} missing", allow_module_level=True)


def wait_for(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def fixture_fhir_server(patients: list[str], port: int):
    """``jak-cds fhir-server`` serving fixtures/fhir/<patient>.json, each at <base>/<patient>; yields the base."""
    paths = [str(ROOT / "fixtures" / "fhir" / f"{name}.json") for name in patients]
    process = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "fhir-server", *paths, "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def service_on(port: int, settings):
    """The service (create_app(settings)) on 127.0.0.1:<port> in a thread; yields its base URL."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


@contextmanager
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
