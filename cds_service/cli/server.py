"""Running the service: the built-in threaded server, or gunicorn with N workers.

``jak-cds serve [--workers N]`` (``make serve``) and ``gunicorn -c deploy/gunicorn.conf.py`` run the same
production server: gunicorn with gthread workers and the options below, the app (knowledge loaded and
validated, database migrated) built once in the master before the workers fork. ``jak-cds serve --dev``: the
built-in Werkzeug server instead, for development.
"""

from __future__ import annotations

import gc
import logging
import os
import signal

from cds_service.config import Settings, is_loopback

log = logging.getLogger(__name__)


def gunicorn_options(
    host: str, port: int, workers: int | None = None, threads: int = 2, log_format: str = "text"
) -> dict:
    """The production gunicorn settings (one place for ``serve`` and ``deploy/gunicorn.conf.py``);
    ``threads`` per worker: ``Settings.threads`` (``JAK_CDS_THREADS``); ``log_format``: ``Settings.log_format``."""
    from cds_service.web import logging_json, metrics

    return {
        "bind": f"{host}:{port}",
        "workers": workers or os.cpu_count() or 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 30,
        "keepalive": 5,  # EHRs keep connections open between hook calls
        "accesslog": None,  # no request lines: URLs can carry patient ids
        "preload_app": True,
        "control_socket_disable": True,  # gunicorn >= 23: no shared control socket in the home directory
        "post_worker_init": _stop_fetches_on_sigterm,
        "child_exit": metrics.worker_exited,  # its metric files stop counting as live
        "logger_class": logging_json.gunicorn_logger_class(log_format),
    }


def production_app(settings: Settings, loopback: bool):
    """The app for a server process: knowledge, trusted clients and authentication decided, database migrated."""
    from cds_service.cli.warm_up import warm_up
    from cds_service.web.app import create_app

    # loads and validates the knowledge and trusted clients, and decides on authentication, before binding
    app = create_app(settings, loopback=loopback)
    store = app.extensions["jak_store"]
    migrate_at_start(store)  # once, before gunicorn forks its workers
    store.dispose()  # each worker opens its own connections
    # one synthetic call per service, so that what the pipeline loads on first use is loaded here, once,
    # and shared by the workers, instead of in each worker's first hook call (cds_service.warm_up)
    warm_up(app.extensions["jak_engine"])
    # Everything built so far (knowledge, indexes, app) lives for the whole process: move it out of the
    # cyclic garbage collector's reach, so a hook call's full collection does not rescan it (it did:
    # 50 ms pauses at p99) and forked workers keep sharing its memory pages.
    gc.collect()
    gc.freeze()
    tune_gc()
    return app


def migrate_at_start(store) -> bool:
    """Migrate the schema; a database unreachable at start does not stop the server: it starts not Ready
    (``/readyz`` 503, which keeps trying to migrate; cds_service.web.health), so an orchestrator that starts the
    service before its database (or during an outage) needs no restart loop."""
    from sqlalchemy.exc import SQLAlchemyError

    from cds_service.store import db_error_kind

    try:
        store.migrate()
        return True
    except SQLAlchemyError as exc:
        log.error(
            "database unreachable at start (%s): not Ready (/readyz 503) until the schema is migrated",
            db_error_kind(exc),
        )
        return False


# A hook call decodes ~10 000 JSON containers (200 results) that all live until the call ends and are
# then freed by reference counting. With the default threshold (700) the cycle collector ran ~4 times
# per call, promoting them and now and then rescanning them in a full collection (about 0.3 ms per
# call and the 99th-percentile spikes, measured with `python -m bench`). Collect less often instead.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def wsgi_app():
    """WSGI entry for ``gunicorn -c deploy/gunicorn.conf.py`` (settings from ``JAK_CDS_*``; bind from JAK_CDS_BIND)."""
    from cds_service.web import logging_json, metrics

    settings = Settings.from_env()
    logging_json.configure(settings.log_format)
    metrics.prepare_multiprocess()  # gunicorn's workers: their counts added up when scraped
    return production_app(settings, loopback=is_loopback(settings.bind_host))


def serve(settings: Settings, host: str, port: int, workers: int | None, loopback: bool, dev: bool = False) -> int:
    """The production server (gunicorn, ``workers`` processes; None: ``JAK_CDS_WORKERS``, else one per core),
    or with ``dev`` the built-in Werkzeug server (one process, threads)."""
    from cds_service.web import logging_json, metrics

    logging_json.configure(settings.log_format)
    if not dev:
        directory, created = metrics.prepare_multiprocess()  # before the app (and prometheus_client) loads
        master = os.getpid()
        try:
            app = production_app(settings, loopback)
            return run_gunicorn(app, host, port, workers or settings.workers, settings.threads, settings.log_format)
        finally:
            if os.getpid() == master:  # a worker leaves through here too (SystemExit): the others count on
                metrics.finish_multiprocess(directory, created)
    app = production_app(settings, loopback)
    log.warning(
        "serving CDS Hooks on http://%s:%d/cds-services with the development server (--dev); "
        "without --dev, jak-cds serve runs the production server (gunicorn)",
        host,
        port,
    )
    from werkzeug.serving import run_simple

    # SIGTERM (a deploy, a container stop) ends the built-in server as an exception does, so the exit
    # handlers run: the background audit writer then writes the cards it still holds (gunicorn does the
    # same for its workers). Without this the default action killed the process with them unwritten.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    run_simple(host, port, app, threaded=True, use_reloader=False)
    return 0


def _exit_on_sigterm(_signum, _frame) -> None:
    from cds_service.fhir import client as fhir_client

    fhir_client.stop_all()  # a call stuck on a FHIR server that drips or hangs answers within the grace
    raise SystemExit(0)


def _stop_fetches_on_sigterm(worker) -> None:
    """gunicorn ``post_worker_init``: on SIGTERM a worker stops taking connections and waits for the calls in
    flight (up to graceful_timeout, 30 s). A call reading from a FHIR server then takes up to its budget
    (``JAK_CDS_FHIR_TIMEOUT``), whatever the operator set: cut its reads after a short grace instead
    (``fhir_client.STOP_GRACE``), so the call answers with the gap and the worker ends within seconds."""
    from cds_service.fhir import client as fhir_client

    graceful = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        fhir_client.stop_all()
        if callable(graceful):
            graceful(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn set it: no system call interrupted


def run_gunicorn(app, host: str, port: int, workers: int | None, threads: int = 2, log_format: str = "text") -> int:
    """Serve ``app`` (built already) with gunicorn and the production options until it stops."""
    from gunicorn.app.base import BaseApplication

    options = gunicorn_options(host, port, workers, threads, log_format)

    class _App(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                if key in self.cfg.settings:  # options this gunicorn version knows
                    self.cfg.set(key, value)

        def load(self):
            return app

    log.info(
        "serving CDS Hooks on http://%s:%d/cds-services with gunicorn, %d workers x %d threads",
        host,
        port,
        options["workers"],
        options["threads"],
    )
    _App().run()
    return 0
