"""CDS Hooks 2.0 client authentication: a signed JWT on every call.

The EHR (CDS client) sends ``Authorization: Bearer <JWT>``. We accept it only if
- it is signed with an asymmetric algorithm (ES*/RS*; never ``none`` or HS*),
- its ``iss`` is on the trusted-client list (``JAK_CDS_TRUSTED_CLIENTS``),
- the key named by ``kid`` is in that client's JWKS: inline, or fetched from
  the client's allowed ``jku`` (cached; refetched on an unknown ``kid`` at
  most once per ``JWKS_REFETCH_INTERVAL``; bounded by timeouts and size),
- ``aud`` is the URL of the endpoint called (``JAK_CDS_PUBLIC_BASE_URL`` +
  path behind a proxy, else the request URL without its query),
- ``exp`` and ``iat`` hold (small clock skew), ``jti`` was never seen before
  (kept in the database so all workers share it), and ``tenant`` matches
  when the client declares one.

Any failure is a bare 401 with ``WWW-Authenticate: Bearer``; the reason is
logged without the token.

While the database is unavailable the ``jti`` check falls back to this
process's memory (``JAK_CDS_JTI_FALLBACK=memory``, the default: cards keep
flowing; ids are written back and second uses found once it returns) or
answers 503 with Retry-After (``refuse``); see ``Store.remember_jti``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import requests
from flask import Response, g, request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cds_service.fhir.outbound import OutboundSession
from cds_service.store import StoreUnavailable
from cds_service.web.responses import unavailable_response

log = logging.getLogger(__name__)

ALLOWED_ALGS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
CLOCK_SKEW = 60  # seconds
MAX_TOKEN_BYTES = 16 * 1024
JWKS_TTL = 3600  # seconds a fetched JWKS is trusted before refetching
JWKS_REFETCH_INTERVAL = 60  # at most one refetch per JWKS URL per this many seconds
JWKS_TIMEOUT = (2.0, 3.0)  # connect, read
MAX_JWKS_BYTES = 512 * 1024
MAX_KEY_OBJECTS = 256  # distinct JWKs kept as key objects (trusted clients' keys, a few each)
# no token: documentation, the orchestrator's probes (cds_service.web.health), and /metrics, which has its own
# protection (loopback or JAK_CDS_METRICS_TOKEN, cds_service.web.metrics); none carries patient data
PUBLIC_PATHS = ("/openapi.json", "/healthz", "/readyz", "/metrics")


MIN_RSA_BITS = 2048


def _rsa_bits(jwk: dict) -> int:
    n = jwk.get("n")
    if not isinstance(n, str):
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big").bit_length()
    except ValueError:
        return 0


class AuthError(Exception):
    """The token is refused; the message is for the log (never contains the token)."""


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


# --- verification -------------------------------------------------------------------------------


def _unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) read once without checking anything: enough to choose the issuer and its key."""
    try:
        parts = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError(f"malformed JWT ({type(exc).__name__})") from None
    header, claims = parts.get("header"), parts.get("payload")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError("malformed JWT")
    return header, claims


class Authenticator:
    def __init__(
        self,
        clients: list[TrustedClient],
        store,
        public_base_url: str | None = None,
        jwks_cache: JwksCache | None = None,
        clock=time.time,
    ):
        self.clients = {c.iss: c for c in clients}
        self.store = store
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.jwks = jwks_cache or JwksCache()
        self.clock = clock
        self._key_objects: dict[tuple[str, str], jwt.PyJWK] = {}

    def audience(self) -> str:
        if self.public_base_url:
            return self.public_base_url + request.path
        return request.base_url

    def _key_for(self, client: TrustedClient, header: dict, alg: str) -> jwt.PyJWK:
        kid, jku = header.get("kid"), header.get("jku")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the JWT header has no kid")
        if jku is not None:
            if not isinstance(jku, str) or client.jku is None or jku != client.jku:
                raise AuthError(f"jku is not the allowed JWKS URL of issuer {client.iss}")
            keys = self.jwks.keys(jku, kid)
        elif client.jwks is not None:
            keys = client.jwks.keys
        else:
            assert client.jku is not None  # TrustedClient._has_keys: a client has jku or jwks
            keys = self.jwks.keys(client.jku, kid)
        matches = [k for k in keys if k.get("kid") == kid]
        if not matches:
            raise AuthError(f"no key with kid {kid!r} for issuer {client.iss}")
        key = matches[0]
        if key.get("alg") not in (None, alg):
            raise AuthError(f"key {kid!r} is for {key.get('alg')}, the token says {alg}")
        if key.get("use") not in (None, "sig"):
            raise AuthError(f"key {kid!r} is not a signing key")
        if alg in EC_CURVE and (key.get("kty") != "EC" or key.get("crv") != EC_CURVE[alg]):
            raise AuthError(f"key {kid!r} does not match algorithm {alg}")
        if alg.startswith("RS"):
            if key.get("kty") != "RSA":
                raise AuthError(f"key {kid!r} does not match algorithm {alg}")
            if _rsa_bits(key) < MIN_RSA_BITS:
                raise AuthError(f"RSA key {kid!r} is shorter than {MIN_RSA_BITS} bits")
        return self._usable_key(key, alg, kid)

    def _usable_key(self, key: dict, alg: str, kid: str) -> jwt.PyJWK:
        """The key object for a JWK, built once per distinct key content (about 70 us each time otherwise):
        a rotated key with the same kid has other content and is built anew."""
        content = (alg, json.dumps(key, sort_keys=True))
        found = self._key_objects.get(content)
        if found is None:
            try:
                found = jwt.PyJWK(key, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise AuthError(f"key {kid!r} is unusable ({type(exc).__name__})") from None
            if len(self._key_objects) >= MAX_KEY_OBJECTS:
                self._key_objects.clear()
            self._key_objects[content] = found
        return found

    def verify(self, authorization: str | None) -> dict:
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("the Authorization header is not a Bearer token")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("the token is too long")
        header, unverified = _unverified(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
            raise AuthError(f"algorithm {alg!r} is not accepted")
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError("the issuer is not a trusted client")
        key = self._key_for(client, header, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience(),
                issuer=client.iss,
                leeway=CLOCK_SKEW,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_iat": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused ({type(exc).__name__}: {exc})") from None
        now = self.clock()
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or iat > now + CLOCK_SKEW:
            raise AuthError("iat is in the future")
        if client.tenant is not None and claims.get("tenant") != client.tenant:
            raise AuthError(f"tenant does not match issuer {client.iss}")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 300:
            raise AuthError("jti missing or invalid")
        exp = datetime.fromtimestamp(float(claims["exp"]) + CLOCK_SKEW, tz=UTC)
        if not self.store.remember_jti(client.iss, jti, exp):
            raise AuthError("jti was already used (replay)")
        return claims


def unauthorized() -> Response:
    return Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})


def auth_mode(settings, clients: list[TrustedClient], loopback: bool | None = None) -> str:
    """'required' or 'off' from JAK_CDS_AUTH, the client list and (for ``serve``) the bind address.

    ``loopback=None`` means "not serving" (create_app from tests): auto without clients is off.
    """
    if settings.auth == "off":
        if loopback is not None:
            log.warning("AUTHENTICATION IS OFF (JAK_CDS_AUTH=off): any caller can use this service")
        return "off"
    if settings.auth == "required":
        if loopback is not None and not clients:
            raise SystemExit(
                "JAK_CDS_AUTH=required but no trusted clients are configured; set "
                "JAK_CDS_TRUSTED_CLIENTS to a JSON file listing them (see deploy/)"
            )
        return "required"
    if clients:
        return "required"
    if loopback is False:
        raise SystemExit(
            "refusing to serve on a non-loopback address without client authentication: set "
            "JAK_CDS_TRUSTED_CLIENTS to a JSON file of trusted CDS clients (see "
            "deploy/trusted-clients.sandbox.json), or JAK_CDS_AUTH=off to run unauthenticated "
            "on purpose"
        )
    if loopback:
        log.warning(
            "AUTHENTICATION IS OFF: no trusted clients configured; serving on loopback only. "
            "Set JAK_CDS_TRUSTED_CLIENTS to require signed JWTs."
        )
    return "off"


def install(app, settings, store, loopback: bool | None = None, jwks_cache: JwksCache | None = None) -> str:
    """Check the JWT on every request except CORS preflight and public docs; returns the mode."""
    clients = load_trusted_clients(settings.trusted_clients_file)
    mode = auth_mode(settings, clients, loopback)
    app.config["JAK_AUTH_MODE"] = mode
    if mode == "off":
        return mode
    authenticator = Authenticator(clients, store, settings.public_base_url, jwks_cache)
    app.extensions["jak_auth"] = authenticator

    @app.before_request
    def _authenticate():
        if request.method == "OPTIONS" or request.path in PUBLIC_PATHS:
            return None
        if getattr(app.view_functions.get(request.endpoint or ""), "jak_own_auth", False):
            return None  # the SMART app's pages (public) and endpoints (their own ticket)
        try:
            authenticator.verify(request.headers.get("Authorization"))
        except AuthError as exc:
            log.info("401 for %s %s: %s", request.method, request.path, exc)
            g.auth_refusal = str(exc)  # counted by reason (cds_service.web.metrics)
            return unauthorized()
        except StoreUnavailable as exc:
            # the token is valid but its jti cannot be checked (JAK_CDS_JTI_FALLBACK=refuse, or the memory
            # for ids is full): not a refusal of the client, a transient failure of ours
            log.warning("503 for %s %s: %s", request.method, request.path, exc)
            return unavailable_response(
                "the replay check of the token is unavailable just now; please retry with a new token", exc.retry_after
            )
        return None

    return mode
