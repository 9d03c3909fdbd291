"""deploy/compose.yaml, offline (``docker compose config`` cannot run here): it parses, and what it names exists
and fits together: PostgreSQL 15 on a named volume with a health check the service waits for, the trusted
clients mounted as a file, the audit spool on a named volume, the port on loopback only, no secret written in."""
from __future__ import annotations

import json
import re

import pytest

from tests.helpers.deploy import DEPLOY, REPO, known_settings, require_tool

COMPOSE = DEPLOY / "compose.yaml"
TOP_LEVEL = {"name", "services", "volumes", "networks", "secrets", "configs"}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|_KEY$|DATABASE_URL", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose():
    yaml = require_tool("yaml")
    return yaml.safe_load(COMPOSE.read_text())


def resolve(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation with the defaults (a required variable must be given in ``env``)."""
    env = env or {}

    def one(match):
        name, operator, argument = match.groups()
        if name in env:
            return env[name]
        if operator in (":-", "-"):
            return argument
        if operator in (":?", "?"):
            raise KeyError(f"{name} is required: {argument}")
        return ""
    return INTERPOLATION.sub(one, value)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def mounts(service: dict) -> list[dict]:
    """Volume entries in the long form: type, source, target, read_only."""
    result = []
    for item in service.get("volumes", []):
        if isinstance(item, str):
            source, target, *mode = item.split(":")
            kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
            result.append({"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]})
        else:
            result.append(item)
    return result


def test_parses_with_the_two_services(compose):
    assert set(compose) <= TOP_LEVEL
    assert set(compose["services"]) == {"db", "cds"}


def test_every_variable_has_a_default_or_a_message_and_is_documented(compose):
    text = COMPOSE.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = INTERPOLATION.findall(body)
    assert found
    assert "$" not in INTERPOLATION.sub("", body), "a variable written other than ${NAME:-default} or ${NAME:?message}"
    for name, operator, argument in found:
        assert operator in (":-", ":?"), f"${{{name}}}: give a default or say it is required"
        if operator == ":?":
            assert argument.strip(), f"${{{name}}}: say what to set"
        assert name in header, f"{name} is not explained at the top of compose.yaml"


def test_postgres_15_on_a_named_volume_with_a_health_check(compose):
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:15\.\d+(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?", db["image"]), "PostgreSQL 15, exact"
    data = [m for m in mounts(db) if m["target"] == "/var/lib/postgresql/data"]
    assert data and data[0]["type"] == "volume" and data[0]["source"] in (compose.get("volumes") or {})
    test = db["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(test)
    env = environment(db)
    assert env["POSTGRES_USER"] in test and env["POSTGRES_DB"] in test
    assert "ports" not in db, "the database is reached by the service only"


def test_service_starts_once_the_database_is_healthy(compose):
    cds = compose["services"]["cds"]
    assert cds["depends_on"]["db"]["condition"] == "service_healthy"


def test_named_volumes_declared_and_used(compose):
    declared = set(compose.get("volumes") or {})
    used = {m["source"] for service in compose["services"].values() for m in mounts(service) if m["type"] == "volume"}
    assert used == declared


def test_bind_mounts_exist_and_are_read_only(compose):
    for service in compose["services"].values():
        for mount in mounts(service):
            if mount["type"] == "bind":
                source = DEPLOY / resolve(mount["source"])
                assert source.exists(), f"{mount['source']} (relative to deploy/) does not exist"
                assert mount.get("read_only"), f"{mount['target']}: a configuration file, mounted read-only"


def test_trusted_clients_are_a_mounted_file(compose):
    cds = compose["services"]["cds"]
    path = environment(cds)["JAK_CDS_TRUSTED_CLIENTS"]
    (mount,) = [m for m in mounts(cds) if m["target"] == path]
    assert mount["type"] == "bind" and mount.get("read_only")
    assert resolve(mount["source"]) == "./trusted-clients.sandbox.json", "the sandbox's as the example"
    clients = json.loads((DEPLOY / resolve(mount["source"])).read_text())
    assert isinstance(clients, list) and clients
    assert all(client.get("iss") and (client.get("jku") or client.get("jwks")) for client in clients)
    assert environment(cds).get("JAK_CDS_AUTH", "required") == "required"


def test_audit_spool_is_a_named_volume_where_the_image_made_it(compose):
    cds = compose["services"]["cds"]
    spool = environment(cds)["JAK_CDS_AUDIT_SPOOL"]
    (mount,) = [m for m in mounts(cds) if m["target"] == spool]
    assert mount["type"] == "volume", "a named volume: the spool outlives the container"
    # a fresh named volume takes the owner of the image's folder: the image creates it for its user
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"JAK_CDS_AUDIT_SPOOL={spool}" in dockerfile
    assert re.search(rf"install -d -o jakcds -g jakcds [^\n]*{re.escape(spool)}", dockerfile)


def test_database_url_names_the_database_service_and_no_password(compose):
    from sqlalchemy.engine import make_url

    db, cds = compose["services"]["db"], compose["services"]["cds"]
    url = make_url(environment(cds)["JAK_CDS_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "db" and url.host in compose["services"]
    assert url.password is None, "the password comes from PGPASSWORD, not the URL"
    assert url.username == environment(db)["POSTGRES_USER"] and url.database == environment(db)["POSTGRES_DB"]
    # libpq's PGPASSWORD for the service is the database's own password, from the same variable
    assert INTERPOLATION.match(environment(cds)["PGPASSWORD"]).group(1) == \
        INTERPOLATION.match(environment(db)["POSTGRES_PASSWORD"]).group(1)


def test_published_on_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert str(published).startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"
    assert compose["services"]["cds"]["ports"]


def test_settings_are_the_services_and_no_secret_is_written_in(compose):
    for service in compose["services"].values():
        env = environment(service)
        unknown = {key for key in env if key.startswith("JAK_CDS_")} - known_settings()
        assert not unknown, f"not read by the service: {unknown}"
        for key, value in env.items():
            if SECRET_WORDS.search(key) and key != "JAK_CDS_DATABASE_URL":
                assert value == "" or INTERPOLATION.fullmatch(value), f"{key}: a secret written into compose.yaml"


def test_service_is_the_image_hardened(compose):
    cds = compose["services"]["cds"]
    assert (DEPLOY / resolve(cds["build"]["context"])).resolve() == REPO
    assert (REPO / cds["build"]["dockerfile"]) == DEPLOY / "Dockerfile"
    command = [resolve(part) for part in cds["command"]]
    assert command[0] == "serve" and int(command[command.index("--workers") + 1]) >= 1
    assert cds["read_only"] is True and "/tmp" in cds["tmpfs"]
    assert cds["cap_drop"] == ["ALL"] and "no-new-privileges:true" in cds["security_opt"]
    assert not cds.get("privileged") and cds.get("user") in (None, "10001", "10001:10001")
    grace = re.fullmatch(r"(\d+)s", cds["stop_grace_period"])
    assert grace and int(grace.group(1)) >= 45, "gunicorn's 30 s for calls in flight plus the audit rows' write"
