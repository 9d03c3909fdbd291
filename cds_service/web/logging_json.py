"""Logs: text for a developer on loopback, or one JSON object per line (``JAK_CDS_LOG_FORMAT=json``, which the
image and the Kubernetes ConfigMap set) for a log collector.

Every request gets an id (the caller's ``X-Request-ID`` when it is a short plain token, else a new one),
returned in the ``X-Request-ID`` header and carried by every log line written while it is handled. A hook call,
a feedback and a discovery request each end with one line: method, route (the URL rule, e.g.
``/cds-services/<service_id>``, never the path as sent, which could carry anything), service, status, duration
and card count. gunicorn writes no access log (URLs can carry patient ids), so this line is the access log.

What is never written: tokens (the ``Authorization`` header, ``fhirAuthorization``, any JWT: a JWT-shaped or
``Bearer`` string in a message is replaced by ``[redacted]`` as a last line of defence) and patient ids (no
line takes anything from a request body or a query string; the audit holds a keyed hash, never the id).

JSON keys: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``, ``request_id`` and, on the
request line, ``method``, ``route``, ``service``, ``status``, ``duration_ms``, ``cards``; ``exception`` when one
was logged.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from datetime import UTC, datetime

import orjson
from flask import Response, g, request

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("jak_request_id", default=None)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SECRET = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|(?i:bearer)\s+[^\s,;\"']+")
_FIELDS = ("method", "route", "service", "status", "duration_ms", "cards")
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")  # polled every few seconds: no line of their own
log = logging.getLogger("cds_service.request")


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        if record.exc_info:
            body["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(body, default=str).decode()


class _TextRequestId(logging.Filter):
    """Text lines get the request id too (``request_id`` attribute, for a format that names it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        record.msg = redact(str(record.msg)) if isinstance(record.msg, str) else record.msg
        return True


def configure(log_format: str) -> None:
    """Set the format of the root logger's handlers (``jak-cds`` installs one at start)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    if log_format == "json":
        # the development server's request lines hold the path and query as sent (patient ids): not in json
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for handler in root.handlers:
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        if not any(isinstance(f, _TextRequestId) for f in handler.filters):
            handler.addFilter(_TextRequestId())


def gunicorn_logger_class(log_format: str):
    """gunicorn's own log (start, workers, signals) in the same format."""
    from gunicorn import glogging

    if log_format != "json":
        return glogging.Logger

    class JsonGunicornLogger(glogging.Logger):
        def setup(self, cfg):
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    return JsonGunicornLogger


# --- per request ----------------------------------------------------------------------------------------
def _begin():
    given = request.headers.get("X-Request-ID", "")
    rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    g.jak_request_id = rid
    g.jak_log_started = time.perf_counter()
    request_id.set(rid)


def _end(response: Response) -> Response:
    rid = g.get("jak_request_id")
    if rid is None:
        return response
    response.headers["X-Request-ID"] = rid
    if request.path in QUIET_PATHS or request.method == "OPTIONS":
        return response
    rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
    service = (request.view_args or {}).get("service_id")
    from flask import current_app

    engine = current_app.extensions.get("jak_engine")
    if service is not None and (engine is None or service not in engine.services):
        service = "unknown"
    result = g.get("hook_result")
    duration = (time.perf_counter() - g.jak_log_started) * 1000
    fields = {
        "request_id": rid,
        "method": request.method,
        "route": rule,
        "service": service,
        "status": response.status_code,
        "duration_ms": round(duration, 2),
        "cards": len(result.cards) if result is not None else None,
    }
    log.info("%s %s %d %.1f ms", request.method, rule, response.status_code, duration, extra=fields)
    return response


def _forget(_exc=None):
    request_id.set(None)


def install(app) -> None:
    """First of the request hooks (before metrics and authentication), so every line of a request has its id."""
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(_forget)
