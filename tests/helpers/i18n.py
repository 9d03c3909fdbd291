"""The English detector of the language tests (tests/test_i18n.py for the cards, tests/smart_app/test_smart_app_i18n_browser.py
for the monitoring app): a sentence with two or more English stop words is English left in a translated text."""
from __future__ import annotations

import re

# words that are English and neither Dutch nor Norwegian (so a translated sentence never trips the detector)
ENGLISH = re.compile(r"\b(the|and|with|not|could|this|before|after|from|were|should|which|"
                     r"when|than|only|must|been|have|has|done|does|there)\b", re.IGNORECASE)


def english_sentences(text: str) -> list[str]:
    """The sentences (or lines) of ``text`` that read as English."""
    return [s for s in re.split(r"(?<=[.:;!?])\s+|\n", text) if len(ENGLISH.findall(s)) >= 2]
