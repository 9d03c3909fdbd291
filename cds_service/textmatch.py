"""Word matching in free text (drug names, class names, vaccine names), compiled once.

``any_word(text, words)`` is ``any(re.search(left + re.escape(w) + right, text) for w in words)``
as one cached alternation: the pattern for a word list is built on first use and reused, so a
rule that checks every medication against every drug class costs one regex search per pair.
"""
from __future__ import annotations

import re
from functools import lru_cache

NOT_A_LETTER_BEFORE, NOT_A_LETTER_AFTER = r"(?<![a-z])", r"(?![a-z])"


@lru_cache(maxsize=4096)
def word_pattern(words: tuple[str, ...], left: str = NOT_A_LETTER_BEFORE, right: str = NOT_A_LETTER_AFTER,
                 flags: int = 0) -> re.Pattern:
    return re.compile(left + "(?:" + "|".join(re.escape(w.lower()) for w in words) + ")" + right, flags)


def any_word(text: str, words, left: str = NOT_A_LETTER_BEFORE, right: str = NOT_A_LETTER_AFTER,
             flags: int = 0) -> bool:
    """True if any of ``words`` (lower-cased) occurs in ``text`` between ``left`` and ``right``."""
    words = tuple(words)
    if not words:
        return False
    return word_pattern(words, left, right, flags).search(text) is not None
