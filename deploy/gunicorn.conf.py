"""Production server: ``gunicorn -c deploy/gunicorn.conf.py`` (from the repository root).

The same server as ``jak-cds serve --workers N``: gthread workers, options from
``cds_service.server.gunicorn_options``, the app built once before forking.
Environment: JAK_CDS_BIND (default 127.0.0.1:8080), JAK_CDS_WORKERS (default:
one per core), and the service's JAK_CDS_* settings (see README).
"""
import os

from cds_service.cli.server import gunicorn_options

_host, _, _port = os.environ.get("JAK_CDS_BIND", "127.0.0.1:8080").rpartition(":")
_workers = int(os.environ.get("JAK_CDS_WORKERS") or 0) or None

globals().update(gunicorn_options(_host or "127.0.0.1", int(_port), _workers))
wsgi_app = "cds_service.cli.server:wsgi_app()"
