"""The cached word-list patterns answer exactly as one ``re.search`` per word did."""
from __future__ import annotations

import re

import pytest

from cds_service.knowledge.textmatch import (
    NOT_A_LETTER_AFTER,
    NOT_A_LETTER_BEFORE,
    Words,
    any_word,
)

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


@pytest.mark.parametrize("text", TEXTS)
def test_a_knowledge_word_list_answers_as_a_plain_list(text):
    """Knowledge lists (``Words``) keep their compiled pattern; the answer is the same, for every boundary style
    asked of the same list (one list is searched with different boundaries by different rules)."""
    words = Words(WORDS)
    for left, right in [(r"\b", ""), (NOT_A_LETTER_BEFORE, NOT_A_LETTER_AFTER), (r"\b", r"\b")]:
        assert any_word(text.lower(), words, left, right) is any_word(text.lower(), list(WORDS), left, right)
    assert any_word("anything", Words()) is False


def test_drug_class_atc_prefixes_and_exclusions_whatever_the_case():
    """A class written with lower-case ATC prefixes still matches; a coded member in a local form does not."""
    from cds_service.facts import MedicationFact
    from cds_service.knowledge.schemas.contraindication import DrugClass

    klass = DrugClass(display="calcineurin inhibitors", atc=["l04ad"], names=["tacrolimus"],
                      exclude_words=["ointment"], sources=["x"])

    def med(display, *codes):
        return MedicationFact(None, display, True, None, tuple(("atc", c) for c in codes), "MedicationRequest", "m")

    def in_class(medication, drug_class):
        return drug_class.contains(medication.display, medication.codes)

    assert in_class(med("Prograf 1 mg capsule", "L04AD02"), klass)
    assert in_class(med("Prograf 1 mg capsule", "l04ad02"), klass)
    assert in_class(med("tacrolimus 1 mg capsule"), klass)
    assert not in_class(med("tacrolimus 0.1% ointment", "L04AD02"), klass)
    assert not in_class(med("tacrolimus 0.1% ointment"), klass)
    assert not in_class(med("methotrexate 15 mg", "L04AX03"), klass)


def test_interacting_and_prior_therapy_classes_match_atc_codes_whatever_the_case():
    """Whole ATC codes written in lower case in the knowledge match a patient's coded medication (and only
    that code: a class's code is not a prefix here); a coded member in a local form does not count."""
    from types import SimpleNamespace

    from cds_service.facts import MedicationFact
    from cds_service.knowledge.schemas.dose import InteractingClass
    from cds_service.knowledge.schemas.positioning import TherapyClass
    from cds_service.rules.dose.situation import interacting_medications
    from cds_service.rules.positioning import prior_therapy

    interacting = InteractingClass(display="strong CYP3A4 inhibitors", atc=["j02ac02"], names=["itraconazole"],
                                   exclude_words=["cream"], sources=["x"])
    therapy = TherapyClass(display="csDMARD", members=["methotrexate"], atc=["l04ax03"], names=["methotrexate"],
                           exclude_words=["cream"], sources=["x"])

    def med(display, code):
        return MedicationFact(None, display, True, None, (("atc", code),), "MedicationRequest", "m")

    meds = [med("Sporanox capsule", "J02AC02"), med("Sporanox cream", "J02AC02"), med("Trexall", "L04AX03"),
            med("Other", "J02AC0")]
    rules = SimpleNamespace(interacting_class={"c": interacting}, therapy_class={"t": therapy})
    ctx = SimpleNamespace(knowledge=SimpleNamespace(rules=rules), facts=SimpleNamespace(medications=meds),
                          orders=[], draft_resources=[])
    assert interacting_medications(ctx, "c") == ["Sporanox capsule"]
    assert prior_therapy(ctx, "t") == ["Trexall"]


def test_each_kind_of_medication_class_matches_names_as_it_declares():
    """Prior therapy names match at a word start (a spelling variant such as "ciclosporine" counts as
    history); interacting and contraindicating names must be whole words; a drug class may also be coded by
    RxNorm; a local form is never a member."""
    from cds_service.knowledge.schemas.contraindication import DrugClass
    from cds_service.knowledge.schemas.dose import InteractingClass
    from cds_service.knowledge.schemas.positioning import TherapyClass

    therapy = TherapyClass(display="csDMARD", members=["ciclosporin"], names=["ciclosporin"],
                           exclude_words=["eye"], sources=["x"])
    interacting = InteractingClass(display="CYP3A4", names=["ritonavir"], exclude_words=["gel"], sources=["x"])
    drug_class = DrugClass(display="calcineurin", names=["tacrolimus"], rxnorm=["42316"],
                           exclude_words=["ointment"], sources=["x"])
    assert therapy.contains("Ciclosporine 100 mg", ())
    assert not therapy.contains("ciclosporin eye drops", ())
    assert interacting.contains("Ritonavir 100 mg tablet", ())
    assert not interacting.contains("ritonavirx 100 mg", ())
    assert drug_class.contains("Envarsus 1 mg", (("rxnorm", "42316"),))
    assert not drug_class.contains("tacrolimusum", ())
    assert not drug_class.contains("Protopic ointment", (("rxnorm", "42316"),))
