"""Translated knowledge: every clinician-facing text field of the knowledge (``TEXT_FIELDS``) found, and replaced
by its translation in one copy of the knowledge per language."""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel

from cds_service.i18n.catalogues import (
    SOURCE_LANGUAGE,
    Catalogue,
)

# Fields of the knowledge whose text a clinician reads (on a card, a link, a discovery entry, the rule catalogue).
# Every other ``str`` field of a knowledge schema is a code, an id, a unit or a word that the rules match, and is
# listed in NOT_TEXT_FIELDS; tests/test_i18n.py fails for a string field in neither set, so a new text field
# is classified (and translated) before it ships.
TEXT_FIELDS = frozenset(
    {
        "summary",
        "detail",
        "action",
        "note",
        "intro",
        "reason",
        "evidence",
        "combination",
        "floor",
        "label",
        "suggestion_label",
        "remove_label",
        "display",
        "headlines",
        "drug_notes",
        "unit_notes",
        "code_notes",
        "no_evidence",
        "caveat",
        "scope_note",
        "prac_summary",
        "vte_summary",
        "prac_action",
        "vte_action",
        "findings",
        "dose",
        "title",
        "description",
    }
)
# per model: a field named like a text field that is not one (a drug's display is its name and brand)
NOT_TEXT = {"DrugEntry": frozenset({"display"}), "CodeRef": frozenset({"display"})}


# -- knowledge texts --------------------------------------------------------------------------------------------


def _is_text_field(model: BaseModel, name: str) -> bool:
    return name in TEXT_FIELDS and name not in NOT_TEXT.get(type(model).__name__, ())


def _texts_in(value, where: str, out: dict[str, str], text: bool = False) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _texts_in(getattr(value, name), f"{where}.{name}", out, _is_text_field(value, name))
    elif isinstance(value, str):
        if text and value.strip():
            out.setdefault(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _texts_in(item, f"{where}.{key}", out, text)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _texts_in(item, f"{where}[{i}]", out, text)


def knowledge_texts(knowledge) -> dict[str, str]:
    """Every clinician-facing text of the knowledge -> where it is first used (for messages)."""
    out: dict[str, str] = {}
    for name in ("sources", "drugs", "analytes", "concepts", "indications"):
        _texts_in(getattr(knowledge, name), name, out)
    _texts_in(knowledge.overrides, "overrides", out)
    _texts_in(knowledge.rules.tables, "rules", out)
    return out


def _translated(value, catalogue: Catalogue, text: bool = False):
    if isinstance(value, BaseModel):
        changes = {}
        for name in type(value).model_fields:
            old = getattr(value, name)
            new = _translated(old, catalogue, _is_text_field(value, name))
            if new is not old:
                changes[name] = new
        if not changes:
            return value
        copy = value.model_copy(update=changes)
        copy.__dict__.pop("rxnorm_codes", None)  # cached_property values are recomputed on the copy
        return copy
    if isinstance(value, str):
        return catalogue.text(value) if text and value.strip() else value
    if isinstance(value, dict):
        items = {key: _translated(item, catalogue, text) for key, item in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, (list, tuple)):
        members = [_translated(item, catalogue, text) for item in value]
        if all(a is b for a, b in zip(members, value, strict=True)):
            return value
        return type(value)(members) if isinstance(value, tuple) else members
    return value


def translate_knowledge(knowledge, catalogue: Catalogue):
    """A copy of the knowledge with every text field in the catalogue's language (the indexes, codes and rule
    logic shared); the caller has checked the catalogue is complete (``check_catalogue``)."""
    if catalogue.language == SOURCE_LANGUAGE:
        return knowledge
    tables = {name: _translated(table, catalogue) for name, table in knowledge.rules.tables.items()}
    return replace(
        knowledge,
        sources=_translated(knowledge.sources, catalogue),
        drugs=_translated(knowledge.drugs, catalogue),
        analytes=_translated(knowledge.analytes, catalogue),
        concepts=_translated(knowledge.concepts, catalogue),
        indications=_translated(knowledge.indications, catalogue),
        rules=knowledge.rules.with_tables(tables),
        overrides=_translated(knowledge.overrides, catalogue),
    )
