"""Shared test fixtures: the knowledge, the app, a client, ``hook`` (call a hook, get its cards), and the
throwaway PostgreSQL cluster of the database drills (``drill_cluster``, ``drill_db``).

Only fixtures live here. Clinical tests build patients with ``fixtures.builders`` and call a hook
with ``hook`` or ``tests.helpers.hooks.call_hook``; the FHIR server of the EHR is stood in for by
``responses`` serving the same resources (``tests.helpers.hooks.serve_fhir``).
"""
from __future__ import annotations

import os
import uuid
from datetime import date

import pytest

from cds_service.web.app import create_app
from cds_service.config import Settings
from cds_service.record.services import load_services
from cds_service.knowledge import load_knowledge
from fixtures.builders import TODAY
from tests.helpers.drills import dbdrill
from tests.helpers.hooks import call_hook, cards_of


@pytest.fixture(scope="session")
def knowledge():
    return load_knowledge(Settings().knowledge_dir)


@pytest.fixture(scope="session")
def templates(knowledge):
    return next(iter(load_services(knowledge).values())).prefetch


@pytest.fixture
def settings(tmp_path):
    return Settings(evaluation_date=TODAY.isoformat(), database_url=f"sqlite:///{tmp_path / 'test.sqlite3'}",
                    auth="off", fhir_timeout=1.0)


@pytest.fixture
def app(settings, knowledge):
    return create_app(settings, knowledge=knowledge)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def hook(client):
    """hook(resources, hook_name='order-sign', **make_request kwargs) -> list of cards (asserts HTTP 200)."""

    def run(resources, hook_name: str = "order-sign", **kwargs):
        return cards_of(call_hook(client, resources, hook_name, **kwargs))

    return run


@pytest.fixture
def today() -> date:
    return TODAY


@pytest.fixture
def drill_cluster():
    """The throwaway PostgreSQL cluster of the drills (created and started if missing, as root)."""
    spec = os.environ.get("JAK_CDS_TEST_DRILL_CLUSTER", "15/drill:5433")
    name_part, _, port = spec.partition(":")
    version, _, name = name_part.partition("/")
    cluster = dbdrill.Cluster(version, name or "drill", int(port or 5433))
    try:
        cluster.ensure()
    except (SystemExit, OSError, Exception) as exc:  # noqa: BLE001 - reported as skip or failure
        message = f"drill cluster {spec} unavailable: {exc}"
        if os.environ.get("JAK_CDS_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    yield cluster
    if not cluster.ready():
        cluster.start()


@pytest.fixture
def drill_db(drill_cluster):
    """A fresh database on the drill cluster: (cluster, url)."""
    name = f"jaktest_{uuid.uuid4().hex[:10]}"
    drill_cluster.sql(f'CREATE DATABASE "{name}"')
    yield drill_cluster, drill_cluster.url(name)
    if not drill_cluster.ready():
        drill_cluster.start()
    drill_cluster.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
