"""Running the service: the built-in threaded server, or gunicorn with N workers."""
from __future__ import annotations

import logging

from cds_service.config import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, host: str, port: int, workers: int, loopback: bool) -> int:
    from cds_service.app import create_app

    # loads and validates the knowledge and trusted clients, and decides on authentication, before binding
    app = create_app(settings, loopback=loopback)
    store = app.extensions["jak_store"]
    store.migrate()              # once, before gunicorn forks its workers
    store.dispose()              # each worker opens its own connections
    if workers and workers > 0:
        return _gunicorn(app, host, port, workers)
    log.info("serving CDS Hooks on http://%s:%d/cds-services", host, port)
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False)
    return 0


def _gunicorn(app, host: str, port: int, workers: int) -> int:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 4)
            self.cfg.set("timeout", 30)
            self.cfg.set("accesslog", None)

        def load(self):
            return app

    _App().run()
    return 0
