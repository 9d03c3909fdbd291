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
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from babel import Locale
from babel.dates import format_date
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from pydantic import BaseModel

if TYPE_CHECKING:
    from cds_service.knowledge import Knowledge

SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "nl", "nb")
# tags that mean one of LANGUAGES: Norwegian (no), Nynorsk readers get Bokmål (nn), ISO 639-2 codes
ALIASES = {"no": "nb", "nn": "nb", "nob": "nb", "nno": "nb", "nor": "nb", "nld": "nl", "dut": "nl", "eng": "en"}
CATALOGUE_DIR = "i18n"  # under the knowledge directory: cards/i18n/nl.po, nb.po
PACKAGE_DIR = Path(__file__).resolve().parent

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


class I18nError(SystemExit):
    """A catalogue is missing, malformed or incomplete (stops start-up, like a malformed knowledge file)."""


def language_of(tag: str | None) -> str | None:
    """A language tag ('nl-BE', 'no', 'NB') -> one of LANGUAGES, or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    primary = ALIASES.get(primary, primary)
    return primary if primary in LANGUAGES else None


def negotiate(accept_language: str | None, default: str) -> str:
    """The language of a call: the best of LANGUAGES in an ``Accept-Language`` header (q-values honoured, the
    first listed wins a tie, ``q=0`` refuses), else ``default``. A malformed header is read as absent."""
    if not accept_language or len(accept_language) > 1000:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0 or not tag.strip():
            continue
        language = default if tag.strip() == "*" else language_of(tag)
        if language is not None:
            ranked.append((-q, position, language))
    return min(ranked)[2] if ranked else default


# -- catalogues ---------------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


@dataclass(frozen=True, eq=False)
class Catalogue:
    """One language: its babel locale and its messages (English -> translation)."""

    language: str
    messages: dict[str, str]

    @property
    def locale(self) -> Locale:
        return locale_of(self.language)

    def text(self, english: str) -> str:
        if self.language == SOURCE_LANGUAGE:
            return english
        found = self.messages.get(english)
        if not found:
            raise KeyError(english)
        return found


ENGLISH = Catalogue(SOURCE_LANGUAGE, {})


@lru_cache(maxsize=8)
def locale_of(language: str) -> Locale:
    """The babel locale a language's numbers and dates are written in."""
    return Locale.parse({"en": "en_GB", "nl": "nl_NL", "nb": "nb_NO"}[language])


def catalogue_path(knowledge_dir: Path, language: str) -> Path:
    return Path(knowledge_dir) / CATALOGUE_DIR / f"{language}.po"


def read_catalogue(path: Path, language: str) -> Catalogue:
    """A .po file -> Catalogue (fuzzy entries count as untranslated: a translator has not confirmed them)."""
    try:
        with path.open("rb") as handle:
            po = read_po(handle, locale=language, abort_invalid=True)
    except FileNotFoundError as exc:
        raise I18nError(f"translation catalogue missing: {path}") from exc
    except Exception as exc:  # babel raises PoFileError and others for a malformed file
        raise I18nError(f"translation catalogue {path} is malformed: {exc}") from exc
    messages = {
        m.id: m.string
        for m in po
        if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string.strip() and not m.fuzzy
    }
    return Catalogue(language, messages)


def check_catalogue(catalogue: Catalogue, texts: dict[str, str]) -> list[str]:
    """Problems of a catalogue for the given English texts (text -> where it is used)."""
    problems = []
    for english, where in texts.items():
        translated = catalogue.messages.get(english)
        if not translated:
            problems.append(f"{catalogue.language}: no translation of {english!r} ({where})")
        elif placeholders(translated) != placeholders(english):
            problems.append(
                f"{catalogue.language}: placeholders {sorted(placeholders(translated))} in the "
                f"translation of {english!r} differ from {sorted(placeholders(english))} ({where})"
            )
    return problems


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


# -- texts built in code ----------------------------------------------------------------------------------------

_current: ContextVar[Catalogue] = ContextVar("jak_cds_language", default=ENGLISH)


@contextmanager
def using(catalogue: Catalogue) -> Iterator[Catalogue]:
    """Texts made by ``say`` inside this block are in the catalogue's language."""
    token = _current.set(catalogue)
    try:
        yield catalogue
    finally:
        _current.reset(token)


def current() -> Catalogue:
    return _current.get()


def number(value: float | int, catalogue: Catalogue | None = None) -> str:
    """A number as the locale writes it; English as ``f"{value:g}"`` (what the cards always showed)."""
    catalogue = catalogue or _current.get()
    if catalogue.language == SOURCE_LANGUAGE:
        return f"{value:g}"
    return format_decimal(value, format="#,##0.######", locale=catalogue.locale)


def fixed(value: float, digits: int = 1, sign: bool = False, catalogue: Catalogue | None = None) -> str:
    """A number with exactly ``digits`` decimals (``sign``: always signed) as the locale writes it; English as
    ``f"{value:.1f}"`` / ``f"{value:+.0f}"`` (what the cards always showed). Pass the result to ``say`` as text."""
    catalogue = catalogue or _current.get()
    if catalogue.language == SOURCE_LANGUAGE:
        return f"{value:{'+' if sign else ''}.{digits}f}"
    pattern = "0" + ("." + "0" * digits if digits else "")
    text = format_decimal(abs(value) if sign else value, format=pattern, locale=catalogue.locale)
    if sign:
        text = ("-" if value < 0 else "+") + text
    return text


def day(value: date, catalogue: Catalogue | None = None) -> str:
    """A date as the locale writes it (nl '1 nov 2026', nb '1. nov. 2026'); English ISO 8601 as before."""
    catalogue = catalogue or _current.get()
    if catalogue.language == SOURCE_LANGUAGE:
        return value.isoformat()
    return format_date(value, format="medium", locale=catalogue.locale)


def _value(value, catalogue: Catalogue) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return number(value, catalogue)
    if isinstance(value, int):
        return str(value) if catalogue.language == SOURCE_LANGUAGE else format_decimal(value, locale=catalogue.locale)
    if isinstance(value, datetime):
        return day(value.date(), catalogue)
    if isinstance(value, date):
        return day(value, catalogue)
    return str(value)


def say(template: str, /, **values) -> str:
    """A message made in code, in the language of the call: ``template`` is English with ``{named}``
    placeholders (extracted by ``code_templates``); numbers and dates among ``values`` are formatted for the
    locale, strings are inserted as given (translate them first if they are text)."""
    catalogue = _current.get()
    text = catalogue.text(template) if catalogue.language != SOURCE_LANGUAGE else template
    return text.format(**{name: _value(value, catalogue) for name, value in values.items()}) if values else text


def code_templates(root: Path = PACKAGE_DIR) -> dict[str, str]:
    """Every ``say("...")`` template in the code -> where it is (file:line); a call whose template is not a
    literal string is listed under ``<not a literal>`` so that the check fails."""
    out: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "say(" not in source:
            continue
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "say":
                where = f"{path.relative_to(root.parent).as_posix()}:{node.lineno}"
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    out.setdefault(first.value, where)
                elif path.name != "i18n.py":
                    out.setdefault(f"<not a literal> {where}", where)
    return out


# -- start-up -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Translations:
    """The knowledge and catalogue of each language, built and checked once at start-up."""

    default: str
    catalogues: dict[str, Catalogue]
    knowledge: dict[str, Knowledge]

    def negotiate(self, accept_language: str | None) -> str:
        return negotiate(accept_language, self.default)


def service_texts(services: dict | None) -> dict[str, str]:
    """Discovery titles and descriptions (record/services.toml) -> where."""
    out: dict[str, str] = {}
    for key, service in (services or {}).items():
        out.setdefault(service.title, f"services.{key}.title")
        out.setdefault(service.description, f"services.{key}.description")
    return out


def load_translations(
    knowledge,
    knowledge_dir: Path,
    default: str = SOURCE_LANGUAGE,
    languages: tuple[str, ...] = LANGUAGES,
    services: dict | None = None,
) -> Translations:
    """Read every catalogue, check it covers every knowledge text, discovery text and ``say`` template, and
    translate the knowledge once per language. Raises I18nError listing every problem."""
    if default not in languages:
        raise I18nError(f"JAK_CDS_LANGUAGE={default!r} is not one of {', '.join(languages)}")
    texts = {**service_texts(services), **knowledge_texts(knowledge)}
    templates = code_templates()
    problems = [
        f"say() template is not a literal string at {where}"
        for text, where in templates.items()
        if text.startswith("<not a literal>")
    ]
    catalogues = {SOURCE_LANGUAGE: ENGLISH}
    for language in languages:
        if language == SOURCE_LANGUAGE:
            continue
        catalogue = read_catalogue(catalogue_path(knowledge_dir, language), language)
        problems += check_catalogue(catalogue, texts)
        problems += check_catalogue(
            catalogue, {t: w for t, w in templates.items() if not t.startswith("<not a literal>")}
        )
        catalogues[language] = catalogue
    if problems:
        shown = problems[:40] + ([f"... and {len(problems) - 40} more"] if len(problems) > 40 else [])
        raise I18nError("translation catalogues are incomplete (cards/i18n/*.po):\n  " + "\n  ".join(shown))
    return Translations(
        default, catalogues, {lang: translate_knowledge(knowledge, cat) for lang, cat in catalogues.items()}
    )
