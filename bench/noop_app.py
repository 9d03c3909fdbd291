"""The no-op route: the same Flask set-up as the service, with a handler that only decodes and answers.

Built with the service's settings and middleware (body size limit, error
handlers, CORS, preflight) so that, next to the real app, the difference is
our work: the handler reads the body, decodes the JSON with the service's own
decoder (``strict_json.loads``, as ``api.read_json_body``) and returns a fixed
response of the same shape and size as the real one (``BENCH_NOOP_RESPONSE``:
a JSON file). Never part of the production API.

    python -m bench.noop_app --port 8090 --workers 2 --response resp.json
serves it with the production server settings (``cds_service.server``).
"""

from __future__ import annotations

import argparse
import gc
import json as stdjson
import os
import sys

from flask import Flask, Response, json, request
from flask.json.provider import DefaultJSONProvider

from cds_service.config import Settings
from cds_service.fhir import strict_json
from cds_service.web import api


def create_noop_app(settings: Settings | None = None, response_body: dict | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("bench-noop")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    answer = response_body if response_body is not None else {"cards": []}

    @app.before_request
    def _preflight():
        if request.method == "OPTIONS":
            return Response(status=204)
        return None

    @app.get("/cds-services")
    def _discovery():
        return Response(json.dumps({"services": []}), mimetype="application/json")

    @app.post("/cds-services/<service_id>")
    def _noop(service_id: str):
        body = strict_json.loads(request.get_data(cache=False))
        if not isinstance(body, dict):
            return Response(status=400)
        return Response(json.dumps(answer), mimetype="application/json")

    api.register_errors(app)
    app.after_request(api.add_cors)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.noop_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--response", help="JSON file with the response body to return")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the no-op app is for loopback benchmarks only")
    body = None
    if args.response:
        with open(args.response, encoding="utf-8") as handle:
            body = stdjson.load(handle)
    from cds_service.cli.server import run_gunicorn, tune_gc

    app = create_noop_app(response_body=body)
    gc.collect()  # as cds_service.server.production_app does for the service
    gc.freeze()
    tune_gc()
    return run_gunicorn(app, args.host, args.port, args.workers, Settings.from_env().threads)


if __name__ == "__main__":
    sys.exit(main())
