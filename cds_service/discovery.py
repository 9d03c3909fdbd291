"""The discovery document (GET /cds-services), built from ``services.toml``."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from cds_service.wire import HOOKS

SERVICES_FILE = Path(__file__).with_name("services.toml")
MAX_QUERY_LENGTH = 1024


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    usage: str | None = None

    def as_json(self) -> dict:
        body = {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description,
                "prefetch": dict(self.prefetch)}
        if self.usage:
            body["usageRequirements"] = self.usage
        return body


def load_services(path: Path = SERVICES_FILE) -> dict[str, Service]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    prefetch = data["prefetch"]
    for key, query in prefetch.items():
        if len(query) > MAX_QUERY_LENGTH:
            raise SystemExit(f"prefetch template {key!r} is {len(query)} characters; keep it under {MAX_QUERY_LENGTH}")
    services = {}
    for entry in data["services"]:
        if entry["hook"] not in HOOKS:
            raise SystemExit(f"service {entry['id']}: unknown hook {entry['hook']!r}")
        services[entry["id"]] = Service(entry["id"], entry["hook"], entry["title"], entry["description"],
                                        prefetch, entry.get("usageRequirements"))
    return services


def discovery_document(services: dict[str, Service]) -> dict:
    return {"services": [s.as_json() for s in services.values()]}
