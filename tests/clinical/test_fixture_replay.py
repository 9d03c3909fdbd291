"""Every fixture bundle replays with exactly the cards it expects (as `jak-cds replay --check` does)."""
from pathlib import Path

import pytest

from cds_service.cli.replay import (
    SERVICE_FOR_HOOK,
    InProcess,
    build_request,
    card_keys,
    load_scenario,
)
from fixtures.generate import all_scenarios, render

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "fhir").glob("*.json"))


@pytest.fixture(scope="module")
def caller():
    return InProcess(at=None)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_replays_with_the_expected_cards(path, caller, templates):
    scenario = load_scenario(path)
    status, response = caller.call(SERVICE_FOR_HOOK[scenario.hook], build_request(scenario, templates), scenario.at)
    assert status == 200, response
    assert sorted(card_keys(response)) == sorted(scenario.expect), scenario.description


def test_committed_fixtures_are_in_step_with_the_generator():
    bundles = all_scenarios()
    on_disk = {p.stem: p.read_text() for p in FIXTURES}
    assert set(on_disk) == {b["id"] for b in bundles}, "run: python -m fixtures.generate"
    stale = [b["id"] for b in bundles if on_disk[b["id"]] != render(b)]
    assert stale == [], "run: python -m fixtures.generate"
