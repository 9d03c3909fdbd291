"""Cards in the prescriber's language (issue 25): English, Dutch (``nl``) and Norwegian Bokmål (``nb``).

English is the source language: the knowledge (``cards/*.toml``) and the message templates in the code stay
English, and each other language is a gettext catalogue next to the knowledge (``cards/i18n/<lang>.po``, English
text as msgid), read with babel at start-up. Two kinds of text are translated:

- **knowledge texts** (summaries, details, actions, labels, override reasons, source labels, checklist items,
  analyte and concept names ...): ``translate_knowledge`` gives one copy of the knowledge per language in which
  every clinician-facing text field (``TEXT_FIELDS``) is replaced by its translation, so the rules read the
  prescriber's language from the knowledge they already get and need no change;
- **texts built in code**: ``say("Neutrophils {value} below {limit}", value=..., limit=...)`` translates the
  template with the language of the call (``using``) and formats the values for its locale (numbers with the
  locale's decimal sign, dates as the locale writes them; English output is exactly what an f-string gave).

Start-up refuses (``I18nError``) a catalogue that misses, or leaves empty, any knowledge text or any ``say``
template found in the code, or whose translation names other ``{placeholders}`` than the English: a missing
translation is an error, never an English fallback. See docs/i18n.md.

The parts: catalogues (languages, negotiation, reading and checking a catalogue), formatting (``say``, numbers,
dates), knowledge (the translated knowledge) and startup (the checks and ``load_translations``).
"""

from __future__ import annotations

from cds_service.i18n.catalogues import (
    ALIASES,
    CATALOGUE_DIR,
    ENGLISH,
    LANGUAGES,
    PACKAGE_DIR,
    SOURCE_LANGUAGE,
    Catalogue,
    I18nError,
    catalogue_path,
    check_catalogue,
    language_of,
    locale_of,
    negotiate,
    placeholders,
    read_catalogue,
)
from cds_service.i18n.formatting import (
    current,
    day,
    fixed,
    number,
    say,
    using,
)
from cds_service.i18n.knowledge import (
    NOT_TEXT,
    TEXT_FIELDS,
    knowledge_texts,
    translate_knowledge,
)
from cds_service.i18n.startup import (
    Translations,
    code_templates,
    load_translations,
    service_texts,
)

__all__ = [
    "ALIASES",
    "CATALOGUE_DIR",
    "ENGLISH",
    "LANGUAGES",
    "NOT_TEXT",
    "PACKAGE_DIR",
    "SOURCE_LANGUAGE",
    "TEXT_FIELDS",
    "Catalogue",
    "I18nError",
    "Translations",
    "catalogue_path",
    "check_catalogue",
    "code_templates",
    "current",
    "day",
    "fixed",
    "knowledge_texts",
    "language_of",
    "load_translations",
    "locale_of",
    "negotiate",
    "number",
    "placeholders",
    "read_catalogue",
    "say",
    "service_texts",
    "translate_knowledge",
    "using",
]
