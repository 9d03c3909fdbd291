"""A read-only FHIR R4 server over fixture bundles, for development only.

``jak-cds fhir-server fixtures/fhir/core-upadacitinib-ad-age-65.json`` serves
the patient record of each bundle (everything but its draft orders, as
``jak-cds replay`` does) at its own base URL, ``http://127.0.0.1:8099/<bundle
name>``, so that bundles reusing the same resource ids do not collide. With
exactly one bundle the record is also served at the root.

It answers what EHR test clients such as the CDS Hooks sandbox and our own
fallback fetch (prefetch missing -> read from ``fhirServer``) ask for:
``GET /metadata`` (a CapabilityStatement), reads ``GET /Type/id``, searches
``GET /Type?params`` and ``POST /Type/_search`` (form-encoded), executed by
``cds_service.fhir_query.search``, with CORS on every answer. Writes are
refused (405).

It is also a minimal SMART EHR for the EHR launch of the monitoring app (``smart_dev_auth``): each base URL
answers ``/.well-known/smart-configuration`` and ``POST _services/smart/Launch`` (what the CDS Hooks sandbox
calls for a card's ``smart`` link), ``/_smart/authorize`` redirects straight back with a code (no login) and
``/_smart/token`` answers an opaque access token with ``patient`` and the launch's ``appContext``. Reads accept
that bearer and stay open without one. Never expose it beyond loopback: it has no real authentication.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, json, redirect, request
from werkzeug.serving import WSGIRequestHandler

from cds_service.cli.devtools.smart_dev_auth import OAuthError, SmartDevAuth, redirect_with
from cds_service.cli.replay import iter_paths, load_scenario
from cds_service.fhir import query as fhir_query

FHIR_JSON = "application/fhir+json"
SEARCH_PARAMS = ["patient", "subject", "code", "status", "date", "_id", "_count", "_sort"]


def _fhir(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype=FHIR_JSON)


def _outcome(status: int, code: str, text: str) -> Response:
    return _fhir(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]},
        status,
    )


def _oauth_error(error: OAuthError) -> Response:
    response = Response(
        json.dumps({"error": error.error, "error_description": error.description}),
        status=error.status,
        mimetype="application/json",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def capability_statement(resources: list[dict]) -> dict:
    kinds = sorted({kind for r in resources if isinstance(kind := r.get("resourceType"), str)})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "jak-cds fixture FHIR server (development only)"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": kind,
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [{"name": n, "type": "token" if n != "date" else "date"} for n in SEARCH_PARAMS],
                    }
                    for kind in kinds
                ],
            }
        ],
    }


def load_records(paths: list[str]) -> dict[str, tuple[str, list[dict]]]:
    """Bundle name -> (description, record resources) for each fixture bundle under ``paths``."""
    records: dict[str, tuple[str, list[dict]]] = {}
    for path in iter_paths(paths):
        scenario = load_scenario(Path(path))
        records[scenario.name] = (scenario.description, scenario.resources)
    return records


def create_app(records: dict[str, tuple[str, list[dict]]], smart: SmartDevAuth | None = None) -> Flask:
    app = Flask(__name__)
    single = next(iter(records)) if len(records) == 1 else None
    smart = app.extensions["smart_dev_auth"] = smart or SmartDevAuth()

    def resolve(path: str) -> tuple[list[dict] | None, str, str]:
        """``<bundle>/Type/...`` or (single bundle) ``Type/...`` -> (resources, the FHIR path, the FHIR base URL)."""
        head, _, rest = path.strip("/").partition("/")
        root = request.host_url.rstrip("/")
        if head in records:
            return records[head][1], rest, f"{root}/{head}"
        if single is not None:
            return records[single][1], path.strip("/"), root
        return None, path, root

    @app.after_request
    def _cors(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin") or "*"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Authorization, Content-Type, Accept"
        )
        response.headers["Access-Control-Max-Age"] = "600"
        if request.headers.get("Origin"):
            response.headers["Vary"] = "Origin"
        return response

    @app.route("/", methods=["GET"])
    def index():
        base = request.host_url.rstrip("/")
        return _fhir(
            {
                "resourceType": "Basic",
                "code": {"text": "fixture FHIR server: one base URL per bundle"},
                "extension": [
                    {"url": f"{base}/{name}", "valueString": description} for name, (description, _) in records.items()
                ],
            }
        )

    @app.get("/_smart/authorize")
    def smart_authorize():
        try:
            launch, redirect_uri = smart.check_redirect(request.args)
        except OAuthError as error:  # no redirect to a target that is not the launch's
            return _oauth_error(error)
        state = request.args.get("state")
        try:
            code = smart.authorize(launch, request.args)
        except OAuthError as error:
            return redirect(
                redirect_with(redirect_uri, error=error.error, error_description=error.description, state=state),
                code=302,
            )
        return redirect(redirect_with(redirect_uri, code=code, state=state), code=302)

    @app.post("/_smart/token")
    def smart_token():
        try:
            answer = smart.token(request.form)
        except OAuthError as error:
            return _oauth_error(error)
        response = Response(json.dumps(answer), mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def fhir(path: str):
        if request.method == "OPTIONS":
            return Response(status=204)
        resources, fhir_path, base = resolve(path)
        if resources is None:
            return _outcome(404, "not-found", f"no fixture bundle named {path.split('/')[0]!r}")
        parts = [p for p in fhir_path.split("/") if p]
        if parts == [".well-known", "smart-configuration"] and request.method == "GET":
            return Response(json.dumps(smart.configuration(request.host_url)), mimetype="application/json")
        if parts == ["_services", "smart", "Launch"] and request.method == "POST":
            try:
                launch_id = smart.launch(base, request.get_json(silent=True))
            except OAuthError as error:
                return _outcome(error.status, "invalid", error.description)
            return Response(json.dumps({"launch_id": launch_id}), mimetype="application/json")
        if not smart.bearer_ok(request.headers.get("Authorization"), base):
            response = _outcome(401, "login", "the access token is unknown, expired or for another FHIR base")
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        if parts == ["metadata"] and request.method == "GET":
            return _fhir(capability_statement(resources))
        if len(parts) == 2 and parts[1] == "_search" and request.method == "POST":
            query = urlencode(list(request.form.items(multi=True)) + list(request.args.items(multi=True)))
            return _fhir(fhir_query.search(resources, f"{parts[0]}?{query}"))
        if request.method != "GET":
            return _outcome(405, "not-supported", "this fixture server is read-only")
        if len(parts) == 1 and parts[0][:1].isupper():
            query = request.query_string.decode("latin-1")
            return _fhir(fhir_query.search(resources, f"{parts[0]}?{query}" if query else parts[0]))
        if len(parts) == 2 and parts[0][:1].isupper():
            found = fhir_query.search(resources, f"{parts[0]}/{parts[1]}")
            return _fhir(found, 404 if found.get("resourceType") == "OperationOutcome" else 200)
        return _outcome(400, "not-supported", f"unsupported FHIR interaction: {request.method} /{fhir_path}")

    return app


class _QuietRequestHandler(WSGIRequestHandler):
    """Logs method, path and status but no query string: the authorize request carries launch ids and codes."""

    def log_request(self, code="-", size="-") -> None:
        self.log("info", '"%s %s" %s', self.command, self.path.split("?", 1)[0], getattr(code, "value", code))


def serve(paths: list[str], host: str, port: int) -> int:
    from werkzeug.serving import run_simple

    records = load_records(paths)
    if not records:
        raise SystemExit("no fixture bundles found")
    for name, (description, resources) in records.items():
        print(f"http://{host}:{port}/{name}  ({len(resources)} resources)  {description}")
    if len(records) == 1:
        print(f"http://{host}:{port}  (the single bundle, also at the root)")
    print(
        f"SMART EHR launch (development only): POST <base>/_services/smart/Launch, "
        f"http://{host}:{port}/_smart/authorize, tokens in memory"
    )
    run_simple(host, port, create_app(records), threaded=True, use_reloader=False, request_handler=_QuietRequestHandler)
    return 0
