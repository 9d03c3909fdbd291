"""The cached word-list patterns answer exactly as one ``re.search`` per word did."""
from __future__ import annotations

import re

import pytest

from cds_service.textmatch import NOT_A_LETTER_AFTER, NOT_A_LETTER_BEFORE, any_word

WORDS = ["Ketoconazole", "st. john's wort", "c++", "5-fu", "itraconazol"]
TEXTS = ["ketoconazole 200 mg", "St. John's wort tea", "pre-ketoconazole", "ketoconazolex", "c++ tablet",
         "capecitabine (5-fu prodrug)", "itraconazole 100 mg", "nothing here", ""]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("left,right", [(NOT_A_LETTER_BEFORE, NOT_A_LETTER_AFTER), (r"\b", ""), (r"\b", r"\b")])
def test_same_answer_as_one_search_per_word(text, left, right):
    lowered = text.lower()
    expected = any(re.search(left + re.escape(w.lower()) + right, lowered) for w in WORDS)
    assert any_word(lowered, WORDS, left, right) is expected


def test_no_words_match_nothing():
    assert any_word("anything", []) is False
    assert any_word("", ()) is False


def test_examples():
    assert any_word("ketoconazole 200 mg", ["ketoconazole"])
    assert not any_word("ketoconazolex", ["ketoconazole"])            # a longer word is not the name
    assert any_word("itraconazole", ["itraconazol"], r"\b", "")        # prefix match where asked for
    assert not any_word("itraconazole", ["itraconazol"], r"\b", r"\b")
