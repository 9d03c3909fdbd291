"""The languages, the negotiation of a call's language, and the gettext catalogues (cards/i18n/<lang>.po): read and
checked against the texts they must translate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.messages.pofile import read_po

SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "nl", "nb")
# tags that mean one of LANGUAGES: Norwegian (no), Nynorsk readers get Bokmål (nn), ISO 639-2 codes
ALIASES = {"no": "nb", "nn": "nb", "nob": "nb", "nno": "nb", "nor": "nb", "nld": "nl", "dut": "nl", "eng": "en"}
CATALOGUE_DIR = "i18n"  # under the knowledge directory: cards/i18n/nl.po, nb.po
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # cds_service/


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
