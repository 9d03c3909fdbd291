"""Production server: ``gunicorn -c deploy/gunicorn.conf.py`` (from the repository root).

The same server as ``jak-cds serve --workers N``: gthread workers, options from
``cds_service.cli.server.gunicorn_options``, the app built once before forking.
Environment, read through ``Settings``: JAK_CDS_BIND (default 127.0.0.1:8080), JAK_CDS_WORKERS (default:
one per core), JAK_CDS_THREADS, and the service's other JAK_CDS_* settings (see README).
"""
from cds_service.cli.server import gunicorn_options
from cds_service.config import Settings

_settings = Settings.from_env()
globals().update(gunicorn_options(_settings.bind_host, _settings.bind_port, _settings.workers, _settings.threads,
                                  _settings.log_format))
wsgi_app = "cds_service.cli.server:wsgi_app()"
