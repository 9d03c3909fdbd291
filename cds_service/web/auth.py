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

The parts: cds_service.web.trusted_clients (the client list, JWKS fetching), cds_service.web.jwt_verify (the
checks on the token), and here the Flask hook that applies them.
"""

from __future__ import annotations

import logging

from flask import Response, g, request

from cds_service.store import StoreUnavailable
from cds_service.web.jwt_verify import Authenticator, AuthError
from cds_service.web.responses import unavailable_response
from cds_service.web.trusted_clients import JwksCache, TrustedClient, load_trusted_clients

log = logging.getLogger(__name__)

__all__ = [
    "PUBLIC_PATHS",
    "AuthError",
    "Authenticator",
    "JwksCache",
    "TrustedClient",
    "auth_mode",
    "install",
    "load_trusted_clients",
]

# no token: documentation, the orchestrator's probes (cds_service.web.health), and /metrics, which has its own
# protection (loopback or JAK_CDS_METRICS_TOKEN, cds_service.web.metrics); none carries patient data
PUBLIC_PATHS = ("/openapi.json", "/healthz", "/readyz", "/metrics")


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
