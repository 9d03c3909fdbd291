"""Texts built in code: ``say`` in the language of the call (``using``), numbers and dates as its locale writes them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime

from babel.dates import format_date
from babel.numbers import format_decimal

from cds_service.i18n.catalogues import (
    ENGLISH,
    SOURCE_LANGUAGE,
    Catalogue,
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
