"""Shared pieces for rule-table schemas."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from cds_service.knowledge.textmatch import WORD, WORD_START, WordList, any_word


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt threshold must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ATC codes are upper case; kept so (a tuple, so that a prefix test is one ``str.startswith``)
AtcCodes = Annotated[tuple[str, ...], AfterValidator(lambda codes: tuple(c.strip().upper() for c in codes))]


class MedicationClass(Strict):
    """A class of medicines a rule looks for in the record (drug_class, interacting_class, therapy_class).

    A member is coded with one of the class's ATC or RxNorm codes or named in the text, and a text naming
    a local form (cream, eye drops: ``exclude_words``) is never a member, coded or not. Each kind of class
    declares how its codes and names match; ``contains`` is the one place that reads them.
    """

    display: str
    atc: AtcCodes = ()
    rxnorm: list[str] = []
    names: WordList = ()
    exclude_words: WordList = ()

    ATC_PREFIXES: ClassVar[bool] = False  # True: L04AB matches L04AB01
    NAME_BOUNDS: ClassVar[tuple[str, str]] = WORD
    EXCLUDE_BOUNDS: ClassVar[tuple[str, str]] = WORD_START

    @cached_property
    def rxnorm_codes(self) -> frozenset[str]:
        """``rxnorm`` as a set: a class may list a hundred products (oestrogen-containing contraceptives)."""
        return frozenset(self.rxnorm)

    def contains(self, display: str, codes) -> bool:
        """Is a medication shown as ``display`` with ``codes`` ((kind, code) pairs, see drugs.py) a member?"""
        text = display.lower()
        coded = False
        for kind, code in codes:
            if kind == "atc":
                code = code.upper()
                coded = code.startswith(self.atc) if self.ATC_PREFIXES else code in self.atc
            elif kind == "rxnorm":
                coded = code in self.rxnorm_codes
            if coded:
                break
        member = coded or any_word(text, self.names, *self.NAME_BOUNDS)
        return member and not any_word(text, self.exclude_words, *self.EXCLUDE_BOUNDS)


def source_checks(knowledge, entries: dict) -> list[str]:
    """Every entry of a named table (``[table.name]``) cites known sources."""
    return [
        f"{name}: unknown source {s!r}"
        for name, entry in entries.items()
        for s in entry.sources
        if s not in knowledge.sources
    ]


def common_checks(knowledge, rule, drugs: list[str]) -> list[str]:
    """Every rule: known sources and known drugs."""
    problems = [f"rule {rule.id}: unknown source {s!r}" for s in rule.sources if s not in knowledge.sources]
    problems += [f"rule {rule.id}: unknown drug {d!r}" for d in drugs if d not in knowledge.drugs]
    return problems


def indication_checks(knowledge, rule) -> list[str]:
    """Rules limited to indications must name known ones."""
    return [f"rule {rule.id}: unknown indication {i!r}" for i in rule.indications if i not in knowledge.indications]
