"""``make serve`` runs the production server (gunicorn) on loopback; the Werkzeug development server only with
``jak-cds serve --dev`` (or the old ``--workers 0``)."""
from __future__ import annotations

import re

import pytest

from cds_service.cli import commands, server
from cds_service.config import REPO_ROOT


@pytest.fixture
def started(monkeypatch):
    calls = []
    monkeypatch.setattr(server, "serve", lambda settings, host, port, workers, loopback, dev=False:
                        calls.append(dict(host=host, port=port, workers=workers, loopback=loopback, dev=dev)) or 0)
    return calls


def test_make_serve_runs_jak_cds_serve_without_options():
    recipe = re.search(r"^serve:.*\n((?:\t.*\n)+)", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe.split()[-2:] == ["$(VENV)/bin/jak-cds", "serve"]


def test_serve_without_options_is_the_production_server_on_loopback(started):
    assert commands.main(["serve"]) == 0
    assert started == [dict(host="127.0.0.1", port=8080, workers=None, loopback=True, dev=False)]


@pytest.mark.parametrize("argv", [["serve", "--dev"], ["serve", "--workers", "0"]])
def test_the_development_server_only_when_asked(started, argv):
    assert commands.main(argv) == 0
    assert started[0]["dev"] is True


def test_workers_pass_through(started):
    commands.main(["serve", "--workers", "3"])
    assert started[0]["workers"] == 3 and started[0]["dev"] is False
