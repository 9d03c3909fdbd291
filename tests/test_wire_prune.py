"""prune() (CDS Hooks forbids empty values on the wire) keeps its meaning after the fast path."""
from __future__ import annotations

import pytest


def _prune_reference(value):
    """The recursive definition prune() must keep: drop None, "", and empty lists and objects."""
    if isinstance(value, dict):
        out = {k: p for k, p in ((k, _prune_reference(v)) for k, v in value.items()) if p is not None}
        return out or None
    if isinstance(value, list):
        out_list = [p for p in (_prune_reference(v) for v in value) if p is not None]
        return out_list or None
    return None if value == "" and isinstance(value, str) else value


@pytest.mark.parametrize("value", [
    {"a": None, "b": "", "c": [], "d": {}, "e": 0, "f": False, "g": "x", "h": [None, "", {}, [[]], 1, {"i": ""}]},
    [{"summary": "s", "suggestions": [], "links": [{"label": "", "url": "u"}]}, "", None, 0.0],
    {"nested": {"deeper": {"deepest": None}}}, "", None, 0, "text", [], {},
])
def test_prune_drops_exactly_what_the_spec_forbids(value):
    from cds_service.wire import prune

    assert prune(value) == _prune_reference(value)
