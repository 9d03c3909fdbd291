"""The trusted CDS clients (``JAK_CDS_TRUSTED_CLIENTS``) and their keys: inline, or fetched from the client's
allowed ``jku`` (cached; refetched on an unknown ``kid`` at most once per ``JWKS_REFETCH_INTERVAL``; bounded by
timeouts and size)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import requests
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cds_service.fhir.outbound import OutboundSession

log = logging.getLogger("cds_service.web.auth")  # the name the log has always had


JWKS_TTL = 3600  # seconds a fetched JWKS is trusted before refetching
JWKS_REFETCH_INTERVAL = 60  # at most one refetch per JWKS URL per this many seconds
JWKS_TIMEOUT = (2.0, 3.0)  # connect, read
MAX_JWKS_BYTES = 512 * 1024


# --- trusted clients ----------------------------------------------------------------------------


class Jwks(BaseModel):
    model_config = ConfigDict(extra="allow")
    keys: list[dict]


class TrustedClient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    iss: str = Field(min_length=1)
    jku: str | None = None
    jwks: Jwks | None = None
    tenant: str | None = None

    @field_validator("jku")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("jku must be an https URL")
        return value

    @model_validator(mode="after")
    def _has_keys(self) -> TrustedClient:
        if self.jku is None and self.jwks is None:
            raise ValueError(f"client {self.iss!r} needs 'jku' (its JWKS URL) or 'jwks' (inline keys)")
        return self


class TrustedClients(BaseModel):
    clients: list[TrustedClient]

    @model_validator(mode="after")
    def _unique(self) -> TrustedClients:
        seen = set()
        for client in self.clients:
            if client.iss in seen:
                raise ValueError(f"issuer {client.iss!r} is listed twice")
            seen.add(client.iss)
        return self


def load_trusted_clients(path: str | Path | None) -> list[TrustedClient]:
    """The trusted-client list, validated; SystemExit with a clear message when malformed."""
    if not path:
        return []
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"JAK_CDS_TRUSTED_CLIENTS: file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"JAK_CDS_TRUSTED_CLIENTS: {path} is not readable JSON: {exc}") from None
    if isinstance(data, dict) and "clients" in data:
        data = data["clients"]
    try:
        return TrustedClients(clients=data).clients
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'list'}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"JAK_CDS_TRUSTED_CLIENTS: {path} is malformed: {problems}") from None


# --- JWKS fetching ------------------------------------------------------------------------------


class JwksCache:
    """Fetched JWKS per URL: cached for ``ttl``; an unknown kid triggers a rate-limited refetch."""

    def __init__(
        self,
        session: requests.Session | None = None,
        ttl: float = JWKS_TTL,
        refetch_interval: float = JWKS_REFETCH_INTERVAL,
        clock=time.monotonic,
    ):
        self.session = session or OutboundSession()  # no netrc credentials sent to an EHR's JWKS URL
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self.clock = clock
        self._keys: dict[str, tuple[float, list[dict]]] = {}  # url -> (fetched at, keys)
        self._last_attempt: dict[str, float] = {}
        self._fetching: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _fetch(self, url: str) -> list[dict] | None:
        try:
            response = self.session.get(
                url, timeout=JWKS_TIMEOUT, stream=True, allow_redirects=False, headers={"Accept": "application/json"}
            )
            if response.status_code != 200:
                log.warning("JWKS fetch from %s answered HTTP %d", url, response.status_code)
                return None
            body, size = [], 0
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > MAX_JWKS_BYTES:
                    response.close()
                    log.warning("JWKS from %s is larger than %d bytes", url, MAX_JWKS_BYTES)
                    return None
                body.append(chunk)
            keys = Jwks.model_validate(json.loads(b"".join(body))).keys
        except (requests.RequestException, ValueError, ValidationError, RecursionError) as exc:
            log.warning("JWKS fetch from %s failed: %s", url, type(exc).__name__)
            return None
        return [k for k in keys if isinstance(k, dict)]

    def _cached(self, url: str, want_kid: str) -> tuple[list[dict] | None, bool]:
        """(cached keys or None, whether they are fresh and hold ``want_kid``)."""
        with self._lock:
            cached = self._keys.get(url)
        if cached is None:
            return None, False
        fresh = self.clock() - cached[0] < self.ttl
        return cached[1], fresh and any(k.get("kid") == want_kid for k in cached[1])

    def keys(self, url: str, want_kid: str) -> list[dict]:
        keys, good = self._cached(url, want_kid)
        if good and keys is not None:
            return keys
        with self._lock:
            url_lock = self._fetching.setdefault(url, threading.Lock())
        # one fetch per URL at a time; concurrent callers wait for it instead of failing
        if not url_lock.acquire(timeout=sum(JWKS_TIMEOUT) + 1):
            return keys or []
        try:
            keys, good = self._cached(url, want_kid)  # someone else may have just fetched it
            if good and keys is not None:
                return keys
            now = self.clock()
            last = self._last_attempt.get(url)
            if last is not None and now - last < self.refetch_interval:
                return keys or []  # rate limit: no refetch yet
            self._last_attempt[url] = now
            fetched = self._fetch(url)
            if fetched is None:
                return keys or []  # keep serving the last good set on a failed refetch
            with self._lock:
                self._keys[url] = (self.clock(), fetched)
            return fetched
        finally:
            url_lock.release()
