"""The monitoring app's routes under ``/app/`` (a blueprint, registered by ``install``).

- ``/app/launch`` and ``/app/index.html``: the built front-end (``smart-app/`` -> ``static/``, ``make app``),
  with a Content-Security-Policy: scripts, styles and images from this service only, ``connect-src`` this
  service and the FHIR servers the service itself may read (``JAK_CDS_ALLOWED_FHIR_SERVERS``).
- ``GET /app/api/queries``: what the app reads from the FHIR server (the patient-view prefetch templates).
- ``GET /app/api/strings``: the app's texts (``texts.strings``) in the language of ``Accept-Language``.
- ``POST /app/api/monitoring``: the monitoring state of the record the app read (``monitoring_state``), its
  texts in the language of ``Accept-Language`` (as the hooks choose it).

The SMART access token never leaves the browser: the app reads the record itself and sends the resources.
When hook authentication is on, the JSON endpoints ask for a ticket instead of the EHR's JWT: the one the card
link handed to the app (``link``), sent back as a bearer token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, request, send_from_directory
from werkzeug.sansio.response import Response as BaseResponse

from cds_service import i18n
from cds_service.errors import CdsError
from cds_service.smart_app import monitoring_state
from cds_service.smart_app.link import check_ticket
from cds_service.web import localise
from cds_service.web.api import read_json_body

log = logging.getLogger(__name__)
bp = Blueprint("smart_app", __name__)
STATIC = Path(__file__).resolve().parent.parent / "smart_app" / "static"  # the built front-end (make app)
MAX_RESOURCES = 20000


def own_auth(view):
    """The app's pages need no authentication (no patient data); its JSON endpoints check a ticket."""
    view.jak_own_auth = True
    return view


# --- the ticket check ---------------------------------------------------------------------------


def _require_ticket(patient_id: str | None) -> None:
    if current_app.config.get("JAK_AUTH_MODE", "off") == "off":
        return
    scheme, _, token = (request.headers.get("Authorization") or "").strip().partition(" ")
    key = current_app.extensions["jak_engine"].app_ticket_key
    why = (
        "no ticket"
        if scheme.lower() != "bearer" or not token.strip()
        else ("no patient" if not patient_id else check_ticket(key, token.strip(), patient_id))
    )
    if why:
        log.info("401 for %s %s: %s", request.method, request.path, why)
        raise _Unauthorized()


class _Unauthorized(Exception):
    pass


# --- the pages ----------------------------------------------------------------------------------


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or ":" in parts.hostname:
        return None  # CSP has no syntax for an IPv6 literal: such a server cannot be allowed
    return f"{parts.scheme}://{parts.netloc}" if parts.port else f"{parts.scheme}://{parts.netloc}:*"


def content_security_policy(settings) -> str:
    """Only this service and the FHIR servers the service may read itself (their origins, any port when the
    setting names none); the SMART authorization server must be on the same list."""
    fhir = sorted({o for o in (_origin(s) for s in settings.allowed_fhir_servers) if o})
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src " + " ".join(["'self'", *fhir]),
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


@bp.after_request
def _headers(response: Response) -> Response:
    engine = current_app.extensions["jak_engine"]
    response.headers["Content-Security-Policy"] = content_security_policy(engine.settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(_Unauthorized)
def _unauthorized(_exc):
    return Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="jak-monitoring-app"'})


@bp.get("/app/")
@own_auth
def _root():
    return redirect("index.html", code=302)


@bp.get("/app/launch")
@own_auth
def launch_page():
    return send_from_directory(STATIC, "launch.html", mimetype="text/html")


@bp.get("/app/<path:name>")
@own_auth
def asset(name: str):
    if name.startswith("api/") or name == "BUILD-STAMP":
        raise CdsError(404, f"no such endpoint: GET {request.path}", code="not-found")
    return send_from_directory(STATIC, name)


@bp.get("/app/api/queries")
@own_auth
def app_queries():
    return {"queries": monitoring_state.queries(current_app.extensions["jak_engine"])}


def _in_language(body: dict, language: str) -> BaseResponse:
    response = current_app.json.response(body)
    response.headers["Content-Language"] = language
    return response


@bp.get("/app/api/strings")
@own_auth
def app_strings():
    """The app's texts in the browser's language (no patient data: public like the pages)."""
    from cds_service.smart_app import texts

    language = localise.call_language()
    with i18n.using(localise.catalogue(language)):
        strings = texts.strings()
    return _in_language(
        {
            "language": language,
            "locale": texts.LOCALES[language],
            "dates": texts.DATE_STYLE[language],
            "strings": strings,
        },
        language,
    )


@bp.post("/app/api/monitoring")
@own_auth
def app_monitoring():
    body = read_json_body()
    patient_id = body.get("patientId") if isinstance(body, dict) else None
    _require_ticket(patient_id if isinstance(patient_id, str) else None)
    if not isinstance(body, dict) or not isinstance(patient_id, str) or not patient_id.strip():
        raise CdsError(400, "patientId is required and must be a non-empty string", expression=["patientId"])
    prefetch = body.get("prefetch")
    if not isinstance(prefetch, dict) or not all(isinstance(k, str) for k in prefetch):
        raise CdsError(
            400, "prefetch must be an object of prefetch key -> Bundle or list of resources", expression=["prefetch"]
        )
    total = 0
    for key, value in prefetch.items():
        if (
            value is not None
            and not isinstance(value, list)
            and not (isinstance(value, dict) and isinstance(value.get("resourceType"), str))
        ):
            raise CdsError(
                400,
                f"prefetch.{key} must be a Bundle, a resource or a list of resources",
                expression=[f"prefetch.{key}"],
            )
        items = value.get("entry") if isinstance(value, dict) else value
        total += len(items) if isinstance(items, list) else 1
    if total > MAX_RESOURCES:
        raise CdsError(413, f"more than {MAX_RESOURCES} resources sent", code="too-costly")
    engine = current_app.extensions["jak_engine"]
    known = monitoring_state.queries(engine)
    unknown = sorted(set(prefetch) - set(known))
    if unknown:
        raise CdsError(
            400, f"unknown prefetch keys: {', '.join(unknown)}; see GET /app/api/queries", expression=["prefetch"]
        )
    prefetch = {
        k: (
            {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in v]}
            if isinstance(v, list)
            else v
        )
        for k, v in prefetch.items()
    }
    from pydantic import ValidationError

    language = localise.call_language()
    try:
        with i18n.using(localise.catalogue(language)):
            state = monitoring_state.state(localise.engine_in(engine, language), patient_id.strip(), prefetch)
        return _in_language(state, language)
    except ValidationError as exc:
        raise CdsError(400, f"invalid request: {exc.errors()[0].get('msg', 'invalid')}") from None


def openapi_paths() -> dict:
    """The app's routes for /openapi.json (pages: public; JSON endpoints: the app ticket when auth is on)."""

    def oo(text):
        return {
            "description": text,
            "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}},
        }

    page = {
        "responses": {
            "200": {"description": "a page or asset of the app", "content": {"text/html": {}}},
            "302": {"description": "to index.html"},
            "404": oo("no such file"),
        },
        "security": [],
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    ticket: list[dict[str, list[str]]] = [{"appTicket": []}]
    return {
        "/app/": {"get": {**page, "operationId": "appRoot", "summary": "The monitoring app (redirect)"}},
        "/app/launch": {"get": {**page, "operationId": "appLaunch", "summary": "SMART launch URL of the app"}},
        "/app/{name}": {
            "get": {**page, "operationId": "appAsset", "summary": "The app's pages and assets", "parameters": [name]}
        },
        "/app/api/queries": {
            "get": {
                "operationId": "appQueries",
                "summary": "What the app reads from the FHIR server",
                "security": [],
                "responses": {
                    "200": {
                        "description": "prefetch key -> FHIR query template",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/app/api/strings": {
            "get": {
                "operationId": "appStrings",
                "summary": "The app's texts in the language of Accept-Language",
                "security": [],
                "responses": {
                    "200": {
                        "description": "language, locale, date style and key -> text",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/app/api/monitoring": {
            "post": {
                "operationId": "appMonitoring",
                "summary": "The monitoring state of the record the app read",
                "security": ticket,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["patientId", "prefetch"],
                                "properties": {"patientId": {"type": "string"}, "prefetch": {"type": "object"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "monitoring state",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": oo("malformed request"),
                    "401": {"description": "missing or invalid app ticket (auth on)"},
                    "413": oo("too large"),
                    "415": oo("not JSON"),
                },
            }
        },
    }


def install(app) -> None:
    """Register the app's blueprint (called by create_app)."""
    app.register_blueprint(bp)
