"""Application factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider

from cds_service.cards import CardParts
from cds_service.config import Settings
from cds_service.fhir.client import FhirClient
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.record.services import Service, load_services
from cds_service.smart_app.link import ticket_key

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """Everything a hook call needs, built once at start-up."""

    settings: Settings
    knowledge: Knowledge
    services: dict[str, Service]
    fhir_client: FhirClient
    card_parts: CardParts  # what every card of this knowledge shares (a translated engine: its own)
    app_ticket_key: bytes  # signs the SMART app's tickets (smart_app.link)


def build_engine(settings: Settings, knowledge: Knowledge | None = None, fhir_session=None) -> Engine:
    knowledge = knowledge or load_knowledge(settings.knowledge_dir)
    return Engine(
        settings=settings,
        knowledge=knowledge,
        services=load_services(knowledge),
        fhir_client=FhirClient(
            settings.allowed_fhir_servers,
            settings.fhir_timeout,
            settings.fhir_connect_timeout,
            fhir_session,
            settings.fhir_max_per_server,
        ),
        card_parts=CardParts.of(knowledge),
        app_ticket_key=ticket_key(settings.app_ticket_key),
    )


def create_app(
    settings: Settings | None = None,
    knowledge: Knowledge | None = None,
    fhir_session=None,
    engine: Engine | None = None,
    loopback: bool | None = None,
    jwks_session=None,
) -> Flask:
    from cds_service.store import Store
    from cds_service.web import api, auth, feedback, health, localise, logging_json, metrics, openapi, smart_app

    settings = settings or (engine.settings if engine else Settings.from_env())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own provider: the one with sort_keys
    app.json.sort_keys = False
    app.extensions["jak_store"] = store = Store.from_settings(settings)  # lazy: connects on first use
    # first: a call refused by authentication has its request id and log line, and is counted and timed
    logging_json.install(app)
    metrics.install(app, settings)
    # Authentication first, so a refusal to start says why before the knowledge is loaded. Its hook
    # lets OPTIONS through itself (CORS preflight needs no token). loopback=None: not `serve` (tests).
    auth.install(
        app,
        settings,
        store,
        loopback=loopback,
        jwks_cache=auth.JwksCache(jwks_session) if jwks_session is not None else None,
    )
    app.extensions["jak_engine"] = engine = engine or build_engine(settings, knowledge, fhir_session)
    engine.fhir_client.on_results = metrics.count_fetches
    localise.install(app, engine)  # issue 25: catalogues read and checked at start-up
    app.register_blueprint(api.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(openapi.bp)
    smart_app.install(app)  # the SMART monitoring app under /app/
    health.install(app)
    api.register_errors(app)

    @app.before_request
    def _preflight():
        if request.method == "OPTIONS":
            return Response(status=204)
        return None

    app.after_request(api.add_cors)
    return app
