"""The language of an HTTP call (issue 25): ``Accept-Language``, else ``JAK_CDS_LANGUAGE``.

The hook-point helpers the routes call: which language, the engine whose knowledge is in that language, the
discovery document in it. The catalogues are read and checked once per knowledge (``i18n.load_translations``).
"""
from __future__ import annotations

from dataclasses import replace

from flask import current_app, request

from cds_service import i18n

_LOADED: dict[tuple[int, str, str], tuple[object, i18n.Translations]] = {}


def translations_for(engine) -> i18n.Translations:
    """The translations of ``engine``'s knowledge, loaded and checked on first use (start-up: ``install``)."""
    settings = engine.settings
    default = getattr(settings, "language", i18n.SOURCE_LANGUAGE)
    key = (id(engine.knowledge), str(settings.knowledge_dir), default)
    found = _LOADED.get(key)
    if found is None or found[0] is not engine.knowledge:       # ids can be reused after a reload
        found = (engine.knowledge, i18n.load_translations(engine.knowledge, settings.knowledge_dir, default,
                                                          services=engine.services))
        _LOADED[key] = found
    return found[1]


def install(app, engine) -> None:
    """Start-up: read and check the catalogues now, so an incomplete one stops the service before it serves."""
    app.extensions["jak_i18n"] = translations_for(engine)


def call_language() -> str:
    return current_app.extensions["jak_i18n"].negotiate(request.headers.get("Accept-Language"))


def engine_in(engine, language: str):
    """The engine with the knowledge in ``language`` (everything else shared)."""
    translations: i18n.Translations = current_app.extensions["jak_i18n"]
    knowledge = translations.knowledge[language]
    return engine if knowledge is engine.knowledge else replace(engine, knowledge=knowledge)


def catalogue(language: str) -> i18n.Catalogue:
    return current_app.extensions["jak_i18n"].catalogues[language]


def services_in(services: dict, language: str) -> dict:
    """Discovery titles and descriptions in ``language``."""
    cat = catalogue(language)
    if cat.language == i18n.SOURCE_LANGUAGE:
        return services
    return {key: replace(s, title=cat.text(s.title), description=cat.text(s.description))
            for key, s in services.items()}
