"""``python -m cds_service.cli.catalogues``: the translation catalogues as translators see them (docs/i18n.md).

Adds every new English text (knowledge, discovery, ``say`` templates) to ``cards/i18n/<lang>.po`` untranslated
and drops the texts no longer used; translations are kept, entries sorted by where they are used.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from cds_service.config import Settings
from cds_service.i18n import (
    LANGUAGES,
    SOURCE_LANGUAGE,
    catalogue_path,
    code_templates,
    knowledge_texts,
    locale_of,
    service_texts,
)
from cds_service.knowledge import load_knowledge
from cds_service.record.services import load_services


def all_messages(knowledge, services: dict | None = None) -> dict[str, str]:
    """Every English text a catalogue must translate -> where it is used (knowledge, discovery, code)."""
    return {
        **service_texts(services or {}),
        **knowledge_texts(knowledge),
        **{t: w for t, w in code_templates().items() if not t.startswith("<not a literal>")},
    }


def update_catalogue(path: Path, language: str, messages: dict[str, str]) -> tuple[int, int]:
    """Bring ``path`` up to date with ``messages``: new texts added untranslated (msgstr ""), texts no longer
    used dropped, translations kept; entries sorted by where they are used. Returns (added, dropped)."""
    old: dict[str, str] = {}
    if path.exists():
        with path.open("rb") as handle:
            # a plural entry's id and string are tuples: the catalogues hold none (start-up refuses them)
            old = {str(m.id): str(m.string or "") for m in read_po(handle, locale=language) if m.id}
    catalog = Catalog(
        locale=language,
        project="jak-cds",
        charset="utf-8",
        fuzzy=False,
        version="1",
        creation_date=datetime(2026, 1, 1),
        revision_date=datetime(2026, 1, 1),
        header_comment=f"# JAK CDS cards in {locale_of(language).english_name}: English "
        "text (msgid) -> translation (msgstr).\n# Terms: docs/i18n.md (glossary). "
        "Keep {placeholders}, **bold** and line breaks as in the English.",
    )
    for english, where in sorted(messages.items(), key=lambda item: (item[1], item[0])):
        catalog.add(english, old.get(english, ""), auto_comments=[where])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, width=0, omit_header=False, sort_output=False, include_lineno=False)
    return len(set(messages) - set(old)), len(set(old) - set(messages))


def main() -> int:
    """Add new texts to cards/i18n/*.po (untranslated) and drop unused ones."""
    settings = Settings()
    knowledge = load_knowledge(settings.knowledge_dir)
    messages = all_messages(knowledge, load_services(knowledge))
    for language in LANGUAGES:
        if language != SOURCE_LANGUAGE:
            path = catalogue_path(settings.knowledge_dir, language)
            added, dropped = update_catalogue(path, language, messages)
            print(f"{path}: {added} new text(s) to translate, {dropped} no longer used")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
