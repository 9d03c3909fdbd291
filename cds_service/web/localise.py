"""The language of an HTTP call (issue 25): ``Accept-Language``, else ``JAK_CDS_LANGUAGE``.

The hook-point helpers the routes call: which language, the engine whose knowledge is in that language, the
discovery document in it. The catalogues are read and checked once per knowledge (``i18n.load_translations``),
and each translated copy of the knowledge gets its own card parts then (``cards.CardParts``).
"""

from __future__ import annotations

from dataclasses import replace

from flask import current_app, request

from cds_service import i18n
from cds_service.cards import CardParts

_LOADED: dict[tuple[int, str, str], tuple[object, i18n.Translations, dict[str, CardParts]]] = {}


def _loaded(engine) -> tuple[i18n.Translations, dict[str, CardParts]]:
    """The translations of ``engine``'s knowledge and the card parts of each translated copy, made once."""
    settings = engine.settings
    default = getattr(settings, "language", i18n.SOURCE_LANGUAGE)
    key = (id(engine.knowledge), str(settings.knowledge_dir), default)
    found = _LOADED.get(key)
    if found is None or found[0] is not engine.knowledge:  # ids can be reused after a reload
        translations = i18n.load_translations(
            engine.knowledge, settings.knowledge_dir, default, services=engine.services
        )
        parts = {
            language: CardParts.of(knowledge)
            for language, knowledge in translations.knowledge.items()
            if knowledge is not engine.knowledge
        }  # the source language: the engine's own
        found = _LOADED[key] = (engine.knowledge, translations, parts)
    return found[1], found[2]


def install(app, engine) -> None:
    """Start-up: read and check the catalogues now, so an incomplete one stops the service before it serves."""
    app.extensions["jak_i18n"], app.extensions["jak_card_parts"] = _loaded(engine)


def call_language() -> str:
    return current_app.extensions["jak_i18n"].negotiate(request.headers.get("Accept-Language"))


def engine_in(engine, language: str):
    """The engine with the knowledge in ``language`` (everything else shared)."""
    translations: i18n.Translations = current_app.extensions["jak_i18n"]
    knowledge = translations.knowledge[language]
    if knowledge is engine.knowledge:
        return engine
    return replace(engine, knowledge=knowledge, card_parts=current_app.extensions["jak_card_parts"][language])


def catalogue(language: str) -> i18n.Catalogue:
    return current_app.extensions["jak_i18n"].catalogues[language]


def services_in(services: dict, language: str) -> dict:
    """Discovery titles and descriptions in ``language``."""
    cat = catalogue(language)
    if cat.language == i18n.SOURCE_LANGUAGE:
        return services
    return {
        key: replace(s, title=cat.text(s.title), description=cat.text(s.description)) for key, s in services.items()
    }
