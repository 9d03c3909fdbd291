"""Settings read from ``JAK_CDS_*`` environment variables.

One frozen object built at start-up and handed down, so no module reads the
environment on the hot path and tests can build their own settings.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload

PREFIX = "JAK_CDS_"
REPO_ROOT = Path(__file__).resolve().parent.parent
# The knowledge: in an installed wheel, package data (setup.py copies cards/ there); in a checkout (an
# editable install), cards/ at the top of the repository. JAK_CDS_KNOWLEDGE_DIR overrides both.
PACKAGED_KNOWLEDGE = Path(__file__).resolve().parent / "cards"


def default_knowledge_dir() -> Path:
    return PACKAGED_KNOWLEDGE if PACKAGED_KNOWLEDGE.is_dir() else REPO_ROOT / "cards"


LOOPBACK_FHIR = (
    "http://127.0.0.1",
    "http://localhost",
    "http://[::1]",
    "https://127.0.0.1",
    "https://localhost",
    "https://[::1]",
)


@overload
def _env(name: str, default: str) -> str: ...
@overload
def _env(name: str, default: None = None) -> str | None: ...
def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    return default if value is None or value.strip() == "" else value.strip()


def _positive(name: str, default, kind=float):
    """A positive number from the environment (``kind`` float or int); a bad value stops start-up."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise SystemExit(f"{PREFIX}{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from exc
    if value <= 0:
        raise SystemExit(f"{PREFIX}{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    knowledge_dir: Path = field(default_factory=default_knowledge_dir)
    allowed_fhir_servers: tuple[str, ...] = LOOPBACK_FHIR
    fhir_timeout: float = 2.0  # total budget for fallback fetches, per hook call
    fhir_connect_timeout: float = 0.5
    fhir_max_per_server: int = 24  # fallback reads in flight at once per FHIR server, per process
    max_body: int = 10 * 1024 * 1024
    database_url: str = field(default_factory=lambda: f"sqlite:///{Path.cwd() / 'jak-cds.sqlite3'}")
    auth: str = "auto"  # required | off | auto (= required unless loopback serve)
    trusted_clients_file: str | None = None
    patient_hash_key: str | None = None  # HMAC key for patient ids in the audit log
    evaluation_date: str | None = None  # fixed "today" (YYYY-MM-DD), for replays and tests
    language: str = "en"  # cards' language when a call's Accept-Language names none: en | nl | nb
    public_base_url: str | None = None  # external base URL, for the JWT audience behind a proxy
    app_ticket_key: str | None = None  # HMAC key of the SMART app's tickets (None: random per process)
    audit_spool: str | None = None  # directory of audit rows waiting for the database (None: derived)
    jti_fallback: str = "memory"  # replay check while the database is down: memory | refuse
    bind: str = "127.0.0.1:8080"  # host:port of gunicorn -c deploy/gunicorn.conf.py
    workers: int | None = None  # gunicorn workers there (None: one per core)
    # Hook calls are CPU-bound Python: more threads per worker only contend for the GIL (measured with
    # `python -m bench` on 2 cores, 8 concurrent clients: 4 threads ~120 requests/s, 2 threads ~170-200).
    # Two let a worker go on while one call waits on a fallback FHIR fetch or the database.
    threads: int = 2  # gthread threads per gunicorn worker
    metrics_token: str | None = None  # bearer token for GET /metrics from other than loopback
    log_format: str = "text"  # text | json (one JSON object per line)

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        servers = _env("ALLOWED_FHIR_SERVERS")
        values = dict(
            knowledge_dir=Path(_env("KNOWLEDGE_DIR") or default_knowledge_dir()),
            allowed_fhir_servers=tuple(s.strip().rstrip("/") for s in servers.split(",") if s.strip())
            if servers
            else LOOPBACK_FHIR,
            fhir_timeout=_positive("FHIR_TIMEOUT", 2.0),
            fhir_connect_timeout=_positive("FHIR_CONNECT_TIMEOUT", 0.5),
            fhir_max_per_server=_positive("FHIR_MAX_PER_SERVER", 24, int),
            max_body=_positive("MAX_BODY", 10 * 1024 * 1024, int),
            database_url=_env("DATABASE_URL", f"sqlite:///{Path.cwd() / 'jak-cds.sqlite3'}"),
            auth=(_env("AUTH", "auto") or "auto").lower(),
            trusted_clients_file=_env("TRUSTED_CLIENTS"),
            patient_hash_key=_env("PATIENT_HASH_KEY"),
            evaluation_date=_env("EVALUATION_DATE"),
            language=(_env("LANGUAGE", "en") or "en").lower(),
            public_base_url=_env("PUBLIC_BASE_URL"),
            app_ticket_key=_env("APP_TICKET_KEY"),
            audit_spool=_env("AUDIT_SPOOL"),
            jti_fallback=(_env("JTI_FALLBACK", "memory") or "memory").lower(),
            bind=_env("BIND", "127.0.0.1:8080"),
            workers=None if _env("WORKERS") == "0" else _positive("WORKERS", None, int),  # 0: one per core
            threads=_positive("THREADS", 2, int),
            metrics_token=_env("METRICS_TOKEN"),
            log_format=(_env("LOG_FORMAT", "text") or "text").lower(),
        )
        if values["auth"] not in ("auto", "required", "off"):
            raise SystemExit(f"{PREFIX}AUTH must be 'required' or 'off', got {values['auth']!r}")
        if values["jti_fallback"] not in ("memory", "refuse"):
            raise SystemExit(f"{PREFIX}JTI_FALLBACK must be 'memory' or 'refuse', got {values['jti_fallback']!r}")
        from cds_service.i18n import LANGUAGES, language_of

        if language_of(values["language"]) is None:
            raise SystemExit(
                f"{PREFIX}LANGUAGE must be one of {', '.join(LANGUAGES)} (or no/nn for Norwegian), "
                f"got {values['language']!r}"
            )
        values["language"] = language_of(values["language"])
        if values["log_format"] not in ("text", "json"):
            raise SystemExit(f"{PREFIX}LOG_FORMAT must be 'text' or 'json', got {values['log_format']!r}")
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    @property
    def bind_host(self) -> str:
        return self.bind.rpartition(":")[0] or "127.0.0.1"

    @property
    def bind_port(self) -> int:
        return int(self.bind.rpartition(":")[2])


def is_loopback(host: str) -> bool:
    """Is ``host`` (a name or an address, IPv6 maybe in brackets) this machine's loopback?"""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
