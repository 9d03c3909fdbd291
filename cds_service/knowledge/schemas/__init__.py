"""Schemas of the rule tables in ``cards/``, one module per rule family.

A family registers its tables here with ``register``: the table name used in
the TOML files (``[[dose]]`` for a list, ``[classes.x]`` for a map), the
pydantic model of one entry, and an optional cross-check that returns a list
of problems (unknown drug, unknown source ...). The loader validates every
table it finds against this registry, so a typo stops start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel


@dataclass(frozen=True)
class Table:
    name: str
    model: type[BaseModel]
    kind: Literal["list", "map"]
    check: Callable | None = None  # (knowledge, entries) -> list[str]


REGISTRY: dict[str, Table] = {}


def register(
    name: str, model: type[BaseModel], kind: Literal["list", "map"] = "list", check: Callable | None = None
) -> None:
    if name in REGISTRY:
        raise RuntimeError(f"rule table {name!r} registered twice")
    REGISTRY[name] = Table(name, model, kind, check)


def load_all() -> dict[str, Table]:
    """Import every family's schema module (each registers its tables)."""
    import importlib
    import pkgutil

    import cds_service.knowledge.schemas as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base":
            importlib.import_module(f"cds_service.knowledge.schemas.{module.name}")
    return REGISTRY
