"""HTTP routes: discovery, hook calls, and the error contract.

Every error is a 4xx with a FHIR OperationOutcome body, or a 503 with one and
Retry-After when the database cannot be used just now (never the catch-all
500); CORS headers on every response so browser clients such as the CDS Hooks
sandbox can call us.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, json, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from cds_service import hooks, i18n
from cds_service.errors import CdsError
from cds_service.fhir import strict_json
from cds_service.record.services import discovery_document
from cds_service.store import RETRY_AFTER_S, StoreUnavailable, db_error_kind
from cds_service.web import localise
from cds_service.web.responses import outcome_response, unavailable_response

log = logging.getLogger(__name__)
bp = Blueprint("cds", __name__)
JSON_TYPES = ("application/json", "application/fhir+json")


def _json(body: dict, status: int = 200, language: str | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    if language:
        response.headers["Content-Language"] = language
    return response


def read_json_body() -> object:
    """The request body as JSON, or a CdsError (415 wrong type, 400 malformed)."""
    mimetype = request.mimetype or ""
    if mimetype and mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise CdsError(415, f"Content-Type must be application/json, not {mimetype!r}", code="not-supported")
    raw = request.get_data(cache=False)
    _refuse_truncated_chunked_body(raw)
    if not raw.strip():
        raise CdsError(400, "the request body is empty; expected a JSON object")
    try:
        body = strict_json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CdsError(400, f"the request body is not valid JSON: {exc}", code="structure") from None
    except RecursionError:
        raise CdsError(400, "the request body is nested too deeply", code="structure") from None
    if strict_json.has_lone_surrogate(raw, body):
        raise CdsError(
            400, "the request body contains an unpaired UTF-16 surrogate escape (not valid Unicode)", code="structure"
        )
    return body


def _refuse_truncated_chunked_body(raw: bytes) -> None:
    """413 for a chunked body over the limit.

    Werkzeug stops reading a body without Content-Length at MAX_CONTENT_LENGTH
    and returns what it has, so an oversized chunked body would be parsed cut
    short. If we got exactly the limit and the (de-chunked) input has more, refuse.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is None or request.content_length is not None or len(raw) < limit:
        return
    if request.environ.get("wsgi.input_terminated") and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


@bp.get("/cds-services", strict_slashes=False)
def discovery():
    language = localise.call_language()
    return _json(
        discovery_document(localise.services_in(current_app.extensions["jak_engine"].services, language)),
        language=language,
    )


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    engine = current_app.extensions["jak_engine"]
    service = engine.services.get(service_id)
    if service is None:
        raise CdsError(404, f"no CDS service with id {service_id!r}; see GET /cds-services", code="not-found")
    body = read_json_body()
    language = localise.call_language()
    call = hooks.Call(request.host_url, authenticated=current_app.config.get("JAK_AUTH_MODE", "off") != "off")
    with i18n.using(localise.catalogue(language)):
        result = hooks.evaluate(localise.engine_in(engine, language), service, body, call)
    g.hook_result = result  # for the metrics and the request log (no patient data is read there)
    store = current_app.extensions.get("jak_store")
    if store is not None and result.cards:
        store.record_issued(
            service.id,
            result.request.hookInstance,
            result.request.patient_id,
            [(issued.card.uuid, issued.rule_id) for issued in result.cards],
            engine.knowledge.version,
            wait=False,
            language=language,
        )
    return _json(result.body, language=language)


def register_errors(app) -> None:
    @app.errorhandler(CdsError)
    def _cds_error(exc: CdsError):
        return outcome_response(exc.status, exc.diagnostics, exc.code, exc.expression, exc.retry_after)

    @app.errorhandler(StoreUnavailable)
    def _store_unavailable(exc: StoreUnavailable):
        log.warning("503 for %s %s: %s", request.method, request.path, exc)
        return unavailable_response("the service's database is unavailable just now; please retry", exc.retry_after)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError):
        # a database error that no caller turned into its outage behaviour: still a transient failure
        # of the service (503, retry), not an internal error (500)
        log.error("database error in %s %s: %s", request.method, request.path, db_error_kind(exc))
        return unavailable_response("the service's database is unavailable just now; please retry", RETRY_AFTER_S)

    @app.errorhandler(404)
    def _not_found(_exc):
        return outcome_response(404, f"no such endpoint: {request.method} {request.path}", "not-found")

    @app.errorhandler(405)
    def _method(_exc):
        return outcome_response(405, f"method {request.method} is not allowed on {request.path}", "not-supported")

    @app.errorhandler(413)
    def _too_large(_exc):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return outcome_response(413, f"the request body is larger than the limit of {limit} bytes", "too-costly")

    @app.errorhandler(400)
    def _bad(_exc):
        return outcome_response(400, "bad request", "invalid")

    @app.errorhandler(Exception)
    def _unexpected(exc):
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return outcome_response(exc.code or 500, exc.description or exc.name, "processing")
        log.exception("unexpected error in %s %s", request.method, request.path)
        return outcome_response(500, "internal error; the request was logged without patient data", "exception")


def add_cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    response.headers["Access-Control-Allow-Origin"] = origin or "*"
    if origin:
        response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = request.headers.get(
        "Access-Control-Request-Headers", "Authorization, Content-Type"
    )
    response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Access-Control-Expose-Headers"] = "Content-Type, WWW-Authenticate"
    return response
