"""The server warms every service up before it forks its workers, so a worker's first clinician does not wait
for what the pipeline loads on first use; the warm-up records nothing, fetches nothing, and never stops the
server from starting."""
from __future__ import annotations

import gc
import logging

import pytest
import responses

from cds_service import hooks
from cds_service.cli import warm_up as warm_up_module
from cds_service.cli.server import production_app
from cds_service.cli.warm_up import warm_up
from cds_service.config import Settings
from fixtures.builders import TODAY


@pytest.fixture
def restore_gc():
    """production_app freezes the collector and raises its thresholds for the server process: undo it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def server_settings(tmp_path):
    return Settings(evaluation_date=TODAY.isoformat(), database_url=f"sqlite:///{tmp_path / 'server.sqlite3'}",
                    auth="off", fhir_timeout=1.0)


def test_the_warm_up_reaches_the_rules_of_every_service(app):
    """The synthetic order must be recognised as a JAK inhibitor and the synthetic patient be on one:
    a warm-up that stopped at 'nothing to say' would warm nothing up."""
    engine = app.extensions["jak_engine"]
    cards = warm_up(engine)
    assert set(cards) == set(engine.services)
    assert all(count > 0 for count in cards.values()), cards


def test_the_server_warms_up_without_recording_cards_or_calling_out(server_settings, restore_gc, monkeypatch,
                                                                    caplog):
    warmed = []
    evaluate = hooks.evaluate

    def spy(engine, service, body):
        warmed.append(service.id)
        return evaluate(engine, service, body)

    monkeypatch.setattr(hooks, "evaluate", spy)
    with caplog.at_level(logging.WARNING), responses.RequestsMock(assert_all_requests_are_fired=False) as outbound:
        app = production_app(server_settings, loopback=True)
    assert sorted(warmed) == sorted(app.extensions["jak_engine"].services)
    assert len(outbound.calls) == 0                          # every prefetch key was given
    store = app.extensions["jak_store"]
    store.flush()
    assert store.count("jak_issued_card") == 0                   # the audit is of real hook calls only
    assert not [r for r in caplog.records if r.name == "cds_service.cli.warm_up"]


def test_a_failing_warm_up_is_logged_and_the_server_starts(server_settings, restore_gc, monkeypatch, caplog):
    def broken(engine, service, body):
        raise RuntimeError("boom")

    monkeypatch.setattr(hooks, "evaluate", broken)
    with caplog.at_level(logging.WARNING):
        app = production_app(server_settings, loopback=True)
    monkeypatch.undo()
    warnings = [r.getMessage() for r in caplog.records if r.name == "cds_service.cli.warm_up"]
    assert len(warnings) == len(app.extensions["jak_engine"].services)
    assert all("RuntimeError" in w and "first real call will be slower" in w for w in warnings)
    assert app.test_client().get("/cds-services").status_code == 200


def test_knowledge_without_a_product_to_order_skips_the_warm_up_and_the_server_starts(server_settings, restore_gc,
                                                                                    monkeypatch, caplog):
    def nothing_to_order(knowledge):
        raise LookupError("the knowledge names no systemic JAK inhibitor product")

    monkeypatch.setattr(warm_up_module, "synthetic_order", nothing_to_order)
    with caplog.at_level(logging.WARNING):
        app = production_app(server_settings, loopback=True)
    assert any("no warm-up" in r.getMessage() for r in caplog.records if r.name == "cds_service.cli.warm_up")
    assert app.test_client().get("/cds-services").status_code == 200
