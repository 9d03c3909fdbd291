"""``GET /metrics``: Prometheus text format (prometheus_client).

What is counted (no label holds a patient id, a token or anything from the request body: the service label is
one of the discovery document's ids, else ``unknown``):

- ``jak_cds_hook_requests_total{service,status}`` and ``jak_cds_hook_duration_seconds{service}``: hook calls
  (``POST /cds-services/{id}``, refusals by authentication included) and how long the service took;
- ``jak_cds_cards_total{service,indicator}``: cards answered;
- ``jak_cds_auth_refusals_total{reason}``: 401s of the JWT check (``missing``, ``malformed``, ``algorithm``,
  ``untrusted_issuer``, ``key``, ``signature_or_claims``, ``replay`` ...);
- ``jak_cds_audit_rows_total{outcome}`` (``written``, ``spooled``, ``replayed``, ``lost``) and
  ``jak_cds_audit_write_failures_total``: the audit writer;
- ``jak_cds_fhir_fallback_fetches_total{outcome}``: queries the service read itself from the EHR's FHIR server
  (prefetch missing): ``ok``, ``partial`` (some pages), ``timeout``, ``unreachable``, ``http_error``,
  ``not_allowed`` (fhirServer off ``JAK_CDS_ALLOWED_FHIR_SERVERS``), ``error``;
- ``jak_cds_audit_spool_rows``: issued-card rows waiting in the local spool for the database (the directory,
  shared by the workers), ``jak_cds_database_up`` (``cds_service.web.health``'s check), ``jak_cds_ready``,
  ``jak_cds_knowledge_info{version}``: read when scraped.

Under gunicorn (``jak-cds serve --workers N``) each worker counts in its own files in
``PROMETHEUS_MULTIPROC_DIR``, which ``serve`` creates (or empties) before the app is built, and a scrape,
whichever worker answers it, adds up every worker's (prometheus_client's multiprocess mode; a worker's files
are marked dead when it exits). The built-in server counts in memory.

Who may read it: loopback clients that came without a proxy's ``Forwarded``/``X-Forwarded-For`` header, or
anyone with ``Authorization: Bearer <JAK_CDS_METRICS_TOKEN>``; others get 401/403. A hook call costs two
dictionary look-ups, an increment and a histogram observation, a few microseconds.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import tempfile
import time

from flask import Response, current_app, g, request

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HOOK_ENDPOINT = "cds.call_service"
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def prepare_multiprocess() -> tuple[str, bool]:
    """Before prometheus_client is imported in a server with worker processes: the directory the workers
    count in (``PROMETHEUS_MULTIPROC_DIR`` if set, emptied of an earlier run's files; else a new one, named in
    the environment), and whether it is new (``finish_multiprocess`` then removes it)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))
        return directory, False
    directory = tempfile.mkdtemp(prefix="jak-cds-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    return directory, True


def finish_multiprocess(directory: str, created: bool) -> None:
    """The server stopped (or did not start): remove a directory ``prepare_multiprocess`` made, and its name
    from the environment, so nothing started later from this process counts into a directory that is gone."""
    if created:
        shutil.rmtree(directory, ignore_errors=True)
        if os.environ.get(MULTIPROC_ENV) == directory:
            del os.environ[MULTIPROC_ENV]


def worker_exited(_server, worker) -> None:
    """gunicorn ``child_exit``: the worker's live gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class _Metrics:
    """The process's metric objects (one set per process, whatever number of apps: tests build many)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "jak_cds_hook_requests",
            "Hook calls answered, by service and HTTP status",
            ["service", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jak_cds_hook_duration_seconds",
            "Time to answer a hook call, by service",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cards = Counter(
            "jak_cds_cards",
            "Cards answered, by service and indicator",
            ["service", "indicator"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "jak_cds_auth_refusals",
            "Requests refused 401 by the JWT check, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.audit_rows = Counter(
            "jak_cds_audit_rows",
            "Issued-card audit rows: written to the database, spooled "
            "(database unavailable), replayed from the spool, lost (neither took them)",
            ["outcome"],
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "jak_cds_audit_write_failures",
            "Audit writes the database refused or did not answer (the rows went to the spool)",
            registry=self.registry,
        )
        self.fetches = Counter(
            "jak_cds_fhir_fallback_fetches",
            "Queries read from the EHR's FHIR server because the prefetch lacked them, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self._children: dict = {}

    def child(self, metric, *labels):
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def fetch_outcome(data, why: str | None) -> str:
    if why is None:
        return "ok"
    if data:
        return "partial"
    if "allowed list" in why:
        return "not_allowed"
    if "in time" in why or "used up" in why or "too slow" in why:
        return "timeout"
    if "could not be reached" in why:
        return "unreachable"
    if "HTTP" in why:
        return "http_error"
    return "error"


# the JWT check's refusal messages (cds_service.web.jwt_verify) as a bounded label: first match wins
_REFUSALS = (
    ("no Authorization", "missing"),
    ("not a Bearer", "not_bearer"),
    ("malformed", "malformed"),
    ("too long", "malformed"),
    ("algorithm", "algorithm"),
    ("not a trusted client", "untrusted_issuer"),
    ("jku", "key"),
    ("kid", "key"),
    ("key ", "key"),
    ("replay", "replay"),
    ("jti", "jti"),
    ("tenant", "tenant"),
    ("iat", "claims"),
    ("token refused", "signature_or_claims"),
)


def refusal_reason(message: str) -> str:
    return next((reason for text, reason in _REFUSALS if text in message), "other")


_AUDIT_OUTCOMES = {"written": "written", "spilled": "spooled", "replayed": "replayed", "lost": "lost"}


def count_audit(kind: str, count: int) -> None:
    """``AuditQueue.on_event``: the audit writer's rows and failed attempts."""
    m = metrics()
    if kind == "failed_attempts":
        m.audit_failures.inc(count)
    elif kind in _AUDIT_OUTCOMES:
        m.child(m.audit_rows, _AUDIT_OUTCOMES[kind]).inc(count)


def count_fetches(results: dict) -> None:
    m = metrics()
    for data, why in results.values():
        m.child(m.fetches, fetch_outcome(data, why)).inc()


# --- the request hooks -------------------------------------------------------------------------------------
def _started():
    g.jak_started = time.perf_counter()


def _observe(response: Response) -> Response:
    """Count the call; counting must never cost the prescriber the answer, so a fault here is logged only."""
    try:
        return _count(response)
    except Exception:  # noqa: BLE001 - any fault of the counting itself
        log.exception("metrics: could not count %s", request.endpoint)
        return response


def _count(response: Response) -> Response:
    if response.status_code == 401:
        refusal = g.get("auth_refusal")
        if refusal is not None:
            m = metrics()
            m.child(m.refusals, refusal_reason(refusal)).inc()
    if request.endpoint != HOOK_ENDPOINT:
        return response
    started = g.get("jak_started")
    engine = current_app.extensions.get("jak_engine")
    service = (request.view_args or {}).get("service_id")
    if engine is None or service not in engine.services:
        service = "unknown"
    m = metrics()
    m.child(m.requests, service, str(response.status_code)).inc()
    if started is not None:
        m.child(m.latency, service).observe(time.perf_counter() - started)
    result = g.get("hook_result")
    if result is not None:
        for issued in result.cards:
            m.child(m.cards, service, issued.card.indicator).inc()
    return response


# --- the endpoint -------------------------------------------------------------------------------------------
def _allowed(settings) -> Response | None:
    """None when the caller may read the metrics, else the refusal."""
    from cds_service.config import is_loopback
    from cds_service.web.responses import outcome_response

    token = settings.metrics_token
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return None
    proxied = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    if is_loopback(request.remote_addr or "") and not proxied and not header:
        return None
    if header:
        response = outcome_response(401, "the metrics token is not the configured JAK_CDS_METRICS_TOKEN", "login")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return outcome_response(
        403, "metrics are served to loopback clients, or with the bearer token of JAK_CDS_METRICS_TOKEN", "forbidden"
    )


class _ScrapeTime:
    """What is read when scraped, from the process that answers (shared state or its own check)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from cds_service.web import health

        store = self.app.extensions["jak_store"]
        rows = store.spool.status()["rows_waiting"] if store.spool is not None else 0
        yield GaugeMetricFamily(
            "jak_cds_audit_spool_rows", "Issued-card rows in the local spool, waiting for the database", value=rows
        )
        ready, body = health.readiness(self.app)
        database_ok = body["checks"]["database"]["ok"]
        yield GaugeMetricFamily(
            "jak_cds_database_up",
            f"1 when the database answered the last check (at most {health.CHECK_EVERY_S:g} s old)",
            value=1 if database_ok else 0,
        )
        yield GaugeMetricFamily("jak_cds_ready", "1 when /readyz answers 200", value=1 if ready else 0)
        engine = self.app.extensions.get("jak_engine")
        info = GaugeMetricFamily("jak_cds_knowledge_info", "The knowledge version loaded", labels=["version"])
        if engine is not None:
            info.add_metric([str(engine.knowledge.version)], 1)
        yield info


def metrics_endpoint():
    refused = _allowed(current_app.extensions["jak_settings"])
    if refused is not None:
        return refused
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    m = metrics()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = m.registry
    body = generate_latest(counted) + generate_latest(current_app.extensions["jak_scrape_registry"])
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def install(app, settings) -> None:
    """Before authentication is installed, so that a refused hook call is timed and counted too."""
    from prometheus_client import CollectorRegistry

    metrics()
    app.extensions["jak_settings"] = settings
    app.extensions["jak_store"].audit.on_event = count_audit
    scrape = app.extensions["jak_scrape_registry"] = CollectorRegistry(auto_describe=False)
    scrape.register(_ScrapeTime(app))
    app.before_request(_started)
    app.after_request(_observe)
    app.add_url_rule("/metrics", "metrics", metrics_endpoint, methods=["GET"])
