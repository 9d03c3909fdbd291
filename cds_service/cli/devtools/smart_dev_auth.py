"""A minimal SMART App Launch authorization server for ``jak-cds fhir-server`` (development only, loopback).

Enough of an EHR for an EHR launch of a SMART app against the fixture records, with no login page:

- ``POST <base>/_services/smart/Launch`` ``{"launchUrl", "parameters": {"patient", "appContext", ...}}`` ->
  ``{"launch_id"}``: what the CDS Hooks sandbox calls for a card's ``smart`` link (it then opens
  ``launchUrl?launch=<launch_id>&iss=<base>``).
- ``GET <base>/.well-known/smart-configuration``: the endpoints below, ``launch-ehr``, ``context-ehr-patient``,
  PKCE ``S256``.
- ``GET /_smart/authorize``: checks the launch, ``aud`` (= the launch's FHIR base) and that ``redirect_uri`` is
  on the origin of the launch's ``launchUrl``, then redirects straight back with a one-time code (PKCE S256
  challenge kept when the client sends one).
- ``POST /_smart/token``: the code (and the PKCE verifier when a challenge was sent) -> a random opaque
  ``access_token``, ``patient`` and the launch's ``appContext``.

Everything lives in this process's memory and expires quickly (launch ids 10 min, codes 1 min, access tokens
15 min); nothing is written anywhere. The FHIR reads accept the bearer (a token is good only at the FHIR base
it was issued for) and stay open without one, as before: this is a development tool, not an access control.
OAuth errors are answered as OAuth errors (``{"error", "error_description"}``), which SMART clients read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

LAUNCH_TTL = 600  # seconds between the launch POST and the authorize redirect
CODE_TTL = 60  # seconds between the authorize redirect and the token request
TOKEN_TTL = 900  # seconds an access token is accepted
MAX_ENTRIES = 1000  # per kind: a runaway client cannot make this process grow without bound
SCOPES = ["launch", "launch/patient", "openid", "fhirUser", "patient/*.read", "patient/*.rs"]


class OAuthError(Exception):
    """An OAuth error: ``error`` code and a description for the developer."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class Launch:
    base: str  # the FHIR base URL (iss) of the launch
    launch_url: str
    patient: str | None
    app_context: str | None
    expires: float


@dataclass
class Grant:
    launch: Launch
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    expires: float


@dataclass
class Token:
    base: str
    patient: str | None
    expires: float


def origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class SmartDevAuth:
    clock: Callable[[], float] = time.time
    launches: dict[str, Launch] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _store(self, table: dict, value) -> str:
        now = self.clock()
        for key in [k for k, v in table.items() if v.expires < now]:
            del table[key]
        if len(table) >= MAX_ENTRIES:
            raise OAuthError("temporarily_unavailable", "too many pending launches, codes or tokens", 503)
        key = secrets.token_urlsafe(32)
        table[key] = value
        return key

    def _take(self, table: dict, key: str | None, remove: bool = False):
        with self.lock:
            value = table.pop(key, None) if remove else table.get(key)
        if value is None or value.expires < self.clock():
            return None
        return value

    # --- the endpoints' logic (fhir_fixture_server.py makes them HTTP) ---------------------------

    def configuration(self, host_url: str) -> dict:
        root = host_url.rstrip("/")
        return {
            "authorization_endpoint": f"{root}/_smart/authorize",
            "token_endpoint": f"{root}/_smart/token",
            "grant_types_supported": ["authorization_code"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": SCOPES,
            "capabilities": ["launch-ehr", "context-ehr-patient", "client-public", "permission-patient"],
        }

    def launch(self, base: str, body) -> str:
        if not isinstance(body, dict) or not isinstance(body.get("launchUrl"), str):
            raise OAuthError("invalid_request", 'body must be {"launchUrl": "http(s)://...", "parameters": {...}}')
        if origin(body["launchUrl"]) is None:
            raise OAuthError("invalid_request", "launchUrl must be an absolute http(s) URL")
        parameters = body.get("parameters")
        parameters = {} if parameters is None else parameters
        if not isinstance(parameters, dict):
            raise OAuthError("invalid_request", "parameters must be an object")
        patient, context = parameters.get("patient"), parameters.get("appContext")
        if patient is not None and not isinstance(patient, str):
            raise OAuthError("invalid_request", "parameters.patient must be a string")
        if context is not None and not isinstance(context, str):
            context = json.dumps(context, separators=(",", ":"))  # SMART: appContext is a string
        with self.lock:
            return self._store(
                self.launches, Launch(base, body["launchUrl"], patient, context, self.clock() + LAUNCH_TTL)
            )

    def check_redirect(self, args) -> tuple[Launch, str]:
        """The launch and the redirect_uri, or OAuthError (not redirected: the redirect target is untrusted)."""
        launch = self._take(self.launches, args.get("launch"))
        if launch is None:
            raise OAuthError("invalid_request", "unknown or expired launch: launch the app again")
        redirect_uri = args.get("redirect_uri") or ""
        if origin(redirect_uri) is None or origin(redirect_uri) != origin(launch.launch_url):
            raise OAuthError("invalid_request", "redirect_uri is not on the origin of the launch URL")
        return launch, redirect_uri

    def authorize(self, launch: Launch, args) -> str:
        """The one-time code, or OAuthError (redirected back to the client with ``error``)."""
        if args.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        if not args.get("client_id"):
            raise OAuthError("invalid_request", "client_id is required")
        if (args.get("aud") or "").rstrip("/") != launch.base.rstrip("/"):
            raise OAuthError("invalid_request", "aud is not the FHIR server of this launch")
        challenge, method = args.get("code_challenge"), args.get("code_challenge_method")
        if (challenge or method) and (method != "S256" or not challenge):
            raise OAuthError("invalid_request", "PKCE: only code_challenge_method=S256 with a code_challenge")
        grant = Grant(
            launch, args["client_id"], args["redirect_uri"], args.get("scope") or "", challenge, self.clock() + CODE_TTL
        )
        with self.lock:
            return self._store(self.grants, grant)

    def token(self, form) -> dict:
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code")
        grant = self._take(self.grants, form.get("code"), remove=True)  # a code is good once
        if grant is None:
            raise OAuthError("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's")
        if form.get("client_id") and form.get("client_id") != grant.client_id:
            raise OAuthError("invalid_grant", "client_id differs from the authorization request's")
        if grant.challenge is not None:
            verifier = form.get("code_verifier") or ""
            if not hmac.compare_digest(s256(verifier), grant.challenge):
                raise OAuthError("invalid_grant", "PKCE code_verifier does not match the code_challenge")
        launch = grant.launch
        with self.lock:
            access = self._store(self.tokens, Token(launch.base, launch.patient, self.clock() + TOKEN_TTL))
        answer = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL,
            "scope": grant.scope,
            "need_patient_banner": True,
        }
        if launch.patient:
            answer["patient"] = launch.patient
        if launch.app_context is not None:
            answer["appContext"] = launch.app_context
        return answer

    def bearer_ok(self, authorization: str | None, base: str) -> bool:
        """No Authorization header: open (the fhirServiceUrl mode). A bearer: issued here, unexpired, for this base."""
        if not authorization:
            return True
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return False
        token = self._take(self.tokens, value.strip())
        return token is not None and token.base.rstrip("/") == base.rstrip("/")


def redirect_with(uri: str, **params) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
