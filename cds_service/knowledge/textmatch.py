"""Word matching in free text (drug names, class names, vaccine names), compiled once.

``any_word(text, words)`` is ``any(re.search(left + re.escape(w) + right, text) for w in words)``
as one alternation. A knowledge word list is a ``Words`` (schemas declare it as ``WordList``): it
carries its compiled patterns, so a rule that checks every medication against every drug class costs
one regex search per pair and no look-up. Any other list or tuple uses a cache keyed by its words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator

NOT_A_LETTER_BEFORE, NOT_A_LETTER_AFTER = r"(?<![a-z])", r"(?![a-z])"
# (left, right) bounds of a word, for ``any_word(text, words, *BOUNDS)``
LETTERS = (NOT_A_LETTER_BEFORE, NOT_A_LETTER_AFTER)  # not inside a longer run of letters (the default)
WORD = (r"\b", r"\b")  # a whole word
WORD_START = (r"\b", "")  # at a word's start: "ciclosporin" in "ciclosporine"


@lru_cache(maxsize=4096)
def word_pattern(
    words: tuple[str, ...], left: str = NOT_A_LETTER_BEFORE, right: str = NOT_A_LETTER_AFTER, flags: int = 0
) -> re.Pattern[str]:
    return re.compile(left + "(?:" + "|".join(re.escape(w.lower()) for w in words) + ")" + right, flags)


class Words(tuple[str, ...]):
    """An immutable word list that keeps the pattern of each boundary style it was searched with."""

    _patterns: dict[tuple[str, str, int], re.Pattern[str]]

    def __new__(cls, words: Iterable[str] = ()) -> Words:
        self = super().__new__(cls, words)
        self._patterns = {}
        return self


WordList = Annotated[tuple[str, ...], AfterValidator(Words)]  # a knowledge field holding a Words


def any_word(
    text: str, words: Iterable[str], left: str = NOT_A_LETTER_BEFORE, right: str = NOT_A_LETTER_AFTER, flags: int = 0
) -> bool:
    """True if any of ``words`` (lower-cased) occurs in ``text`` between ``left`` and ``right``."""
    if not words:
        return False
    if type(words) is Words:
        pattern = words._patterns.get((left, right, flags))
        if pattern is None:
            pattern = words._patterns[(left, right, flags)] = word_pattern(words, left, right, flags)
    else:
        pattern = word_pattern(tuple(words), left, right, flags)
    return pattern.search(text) is not None
