"""A small run of deploy/loadtest.py: concurrent hook and feedback calls against a real server on 127.0.0.1."""
from __future__ import annotations

import importlib.util
import sys
import uuid

import pytest

from cds_service.config import REPO_ROOT

_spec = importlib.util.spec_from_file_location("jak_loadtest", REPO_ROOT / "deploy" / "loadtest.py")
loadtest = importlib.util.module_from_spec(_spec)
sys.modules["jak_loadtest"] = loadtest          # dataclasses look their module up here
_spec.loader.exec_module(loadtest)


def _assert_nothing_lost(result):
    summary = result.summary()
    assert result.ok, summary
    assert result.hook_calls == 30 and not result.hook_errors and not result.feedback_errors, summary
    assert result.cards_issued, "the load request should produce cards"
    assert result.stored_matching == len(result.feedback_sent) == len(result.cards_issued), summary
    assert result.stored_issued == len(result.cards_issued) and result.duplicates == 0, summary


def test_built_in_server_loses_no_feedback(tmp_path):
    result = loadtest.run(requests_total=30, concurrency=6, duration=60,
                          database_url=f"sqlite:///{tmp_path / 'load.sqlite3'}")
    _assert_nothing_lost(result)


def test_gunicorn_workers_lose_no_feedback(tmp_path):
    """Several worker processes writing one SQLite file (WAL, busy timeout)."""
    result = loadtest.run(requests_total=30, concurrency=6, duration=60, workers=2,
                          database_url=f"sqlite:///{tmp_path / 'load.sqlite3'}")
    _assert_nothing_lost(result)


def test_the_check_detects_lost_rows(tmp_path):
    from cds_service.store import Store

    url = f"sqlite:///{tmp_path / 'check.sqlite3'}"
    Store(url).migrate()
    result = loadtest.Result(hook_calls=1, feedback_sent=[str(uuid.uuid4())])
    loadtest.count_stored(url, result)
    assert result.lost == 1 and not result.ok


@pytest.mark.parametrize("url", ["http://10.0.0.5:8080", "https://cds.example.org", "http://0.0.0.0:8080"])
def test_only_loopback_targets(url):
    with pytest.raises(SystemExit, match="loopback"):
        loadtest.run(requests_total=1, url=url, database_url="sqlite://")


def test_bounded(tmp_path):
    with pytest.raises(SystemExit, match="--requests"):
        loadtest.run(requests_total=10 ** 6)
    with pytest.raises(SystemExit, match="--duration"):
        loadtest.run(requests_total=1, duration=10 ** 6)


def test_gunicorn_refuses_an_oversized_chunked_body_with_413(tmp_path):
    from tests.helpers.chunked import send_chunked

    server = loadtest.Server(f"sqlite:///{tmp_path / 'g.sqlite3'}", workers=1, env={"JAK_CDS_MAX_BODY": "5000"})
    try:
        server.wait_ready()
        status, _ = send_chunked(server.port, b"{" + b" " * 50_000 + b"}", chunk=1000)
        assert status == 413
        status, _ = send_chunked(server.port, b"{" + b" " * 3000 + b"}", chunk=1000)
        assert status == 400                      # under the limit: read, and refused for what it is
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_server_stopped_right_after_a_hook_call_has_recorded_its_cards(tmp_path, workers):
    """SIGTERM a moment after the last answer (a deploy, a scale-down): the audit of the cards that
    went out is written before the process ends, by the built-in server as by gunicorn."""
    import requests

    from cds_service.store import Store

    url = f"sqlite:///{tmp_path / 'stop.sqlite3'}"
    server = loadtest.Server(url, workers)
    try:
        server.wait_ready()
        answer = requests.post(f"{server.url}/cds-services/jak-order-sign", json=loadtest.hook_body(1), timeout=30)
        cards = [c["uuid"] for c in answer.json()["cards"]]
    finally:
        server.stop()
    assert cards
    assert Store(url).count("jak_issued_card") == len(cards)


def test_rows_still_arriving_from_a_running_server_are_waited_for_not_called_lost(tmp_path):
    """Against a server it did not start (--url), the check recounts for a moment: that server's audit
    writer may still hold the last cards. Lost rows stay lost."""
    import threading
    import time

    from cds_service.store import Store

    url = f"sqlite:///{tmp_path / 'settle.sqlite3'}"
    Store(url).migrate()
    card = str(uuid.uuid4())

    def late_writer():
        time.sleep(0.3)
        writer = Store(url)
        writer.record_issued("jak-order-sign", "h1", "p1", [(card, "rule")], "kv")
        writer.dispose()

    thread = threading.Thread(target=late_writer)
    thread.start()
    at_once = loadtest.Result(hook_calls=1, cards_issued=[card])
    loadtest.count_stored(url, at_once)
    settled = loadtest.Result(hook_calls=1, cards_issued=[card])
    loadtest.count_stored(url, settled, settle_seconds=5)
    thread.join()
    assert at_once.stored_issued == 0 and settled.stored_issued == 1
    never = loadtest.Result(hook_calls=1, cards_issued=[str(uuid.uuid4())])
    started = time.monotonic()
    loadtest.count_stored(url, never, settle_seconds=0.5)
    assert never.stored_issued == 0 and time.monotonic() - started < 5
