"""The entries of the knowledge files (``cards/``): sources, drugs, analytes, coded concepts, indications and
override reasons, each validated with pydantic (unknown keys are errors). Rule tables have their own schemas
(``knowledge/schemas``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cds_service.knowledge.textmatch import WordList


class KnowledgeError(SystemExit):
    """Raised when the knowledge files are missing or malformed (stops start-up)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceEntry(_Strict):
    label: str = Field(min_length=3)
    url: str = Field(pattern=r"^https?://")


class RxNormCode(_Strict):
    code: str = Field(pattern=r"^\d+$")
    kind: Literal["ingredient", "product"] = "product"
    strength_mg: float | None = Field(default=None, gt=0)
    modified_release: bool = False
    verified: bool = True


class DrugEntry(_Strict):
    display: str
    brands: list[str] = []
    category: Literal["systemic", "topical", "out_of_scope", "not_class", "unsupported"]
    indications: list[str] = []
    atc: list[str] = []
    names: list[str] = Field(min_length=1)
    strengths_mg: list[float] = []
    sources: list[str] = Field(min_length=1)
    rxnorm: list[RxNormCode] = []
    snomed: list[str] = []


class AnalyteEntry(_Strict):
    display: str
    loinc: list[str] = Field(min_length=1)
    canonical_unit: str
    units: dict[str, float]
    max_age_days: int = Field(gt=0)
    sources: list[str] = Field(min_length=1)
    # how a value in this unit (or under this code) was read, shown next to it on every card (finding 28: an
    # eGFR in plain mL/min, a clearance per 1.73 m2; a race-coded eGFR equation)
    unit_notes: dict[str, str] = {}
    code_notes: dict[str, str] = {}

    @model_validator(mode="after")
    def _canonical_listed(self) -> AnalyteEntry:
        if self.units.get(self.canonical_unit) != 1.0:
            raise ValueError(f"canonical unit {self.canonical_unit!r} must be in units with factor 1.0")
        stray = [u for u in self.unit_notes if u not in self.units] + [
            c for c in self.code_notes if c not in self.loinc
        ]
        if stray:
            raise ValueError(f"unit_notes/code_notes name units or codes the analyte does not list: {stray}")
        if len(set(self.loinc)) != len(self.loinc):
            raise ValueError("a LOINC code is listed twice")
        return self


_SNOMED_CODE = re.compile(r"\d{6,18}")
# an ICD-10 (WHO or -CM) code: a letter, two characters (C50, C4A, O9A), optionally a dot and up to four more
_ICD10_CODE = re.compile(r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?")


def expand_icd10(entry: str) -> list[str]:
    """One ICD-10 entry of a value set -> the codes it stands for: "C50" -> ["C50"]; a range of categories
    "C00-C43" -> ["C00", ..., "C43"]; a range below one category "K74.3-K74.6" -> ["K74.3", ..., "K74.6"].
    Each code also stands for everything below it (icd10_lookup). Raises ValueError for anything else."""
    entry = entry.strip().upper()
    first, dash, last = entry.partition("-")
    if not _ICD10_CODE.fullmatch(first) or (dash and not _ICD10_CODE.fullmatch(last)):
        raise ValueError(f"{entry!r} is not an ICD-10 code or range (e.g. C50, C50.9, C00-C43, K74.3-K74.6)")
    if not dash:
        return [first]
    head_a, _, tail_a = first.rpartition(".") if "." in first else ("", "", first)
    head_b, _, tail_b = last.rpartition(".") if "." in last else ("", "", last)
    if "." in first:  # K74.3-K74.6: same category, numeric last part
        same = head_a == head_b and len(tail_a) == len(tail_b) and tail_a.isdigit() and tail_b.isdigit()
        start, end, width, prefix = (int(tail_a), int(tail_b), len(tail_a), head_a + ".") if same else (0, -1, 0, "")
    else:  # C00-C43: same chapter letter, numeric categories
        same = first[0] == last[0] and first[1:].isdigit() and last[1:].isdigit()
        start, end, width, prefix = (int(first[1:]), int(last[1:]), 2, first[0]) if same else (0, -1, 0, "")
    if not same or start > end:
        raise ValueError(f"ICD-10 range {entry!r} must run upwards within one chapter letter or one category")
    return [f"{prefix}{n:0{width}d}" for n in range(start, end + 1)]


class CodedConcept(_Strict):
    """A clinical concept recognised in Conditions (decision 16).

    By code first: any SNOMED CT code listed (exact), any ICD-10 code at or below an ``icd10`` entry (codes or
    ranges "C00-C43") unless at or below an ``icd10_not`` entry. ``history_snomed``/``history_icd10``: codes that
    say the concept is history ("personal history of malignant neoplasm"): recognised, never active.
    By name as the last resort: when no coding of a Condition is recognised by code, a whole word or phrase of
    ``names`` in its text or a display, unless one of ``exclude_words`` (or the shared ``[condition_text.*]``
    exclusions: family history, suspected, screening ...) is there too; the card then says "recognised by name".
    """

    display: str
    snomed: list[str] = []
    icd10: list[str] = []
    icd10_not: list[str] = []
    history_snomed: list[str] = []
    history_icd10: list[str] = []
    names: WordList = ()
    exclude_words: WordList = ()
    active_only: bool = False
    # an acute concept (sepsis, pneumonia ...) still "active" this long after its onset is probably a problem list
    # that was never updated: the card says so (it still counts: absence of an end date is not evidence it ended)
    stale_after_days: int | None = Field(default=None, gt=0)
    sources: list[str] = []

    @model_validator(mode="after")
    def _codes(self) -> CodedConcept:
        for code in (*self.snomed, *self.history_snomed):
            if not _SNOMED_CODE.fullmatch(code):
                raise ValueError(f"{code!r} is not a SNOMED CT concept id")
        for entry in (*self.icd10, *self.icd10_not, *self.history_icd10):
            expand_icd10(entry)  # raises with the entry named
        if self.exclude_words and not self.names:
            raise ValueError("exclude_words apply to names: give names too")
        return self


class IndicationEntry(_Strict):
    display: str
    snomed: list[str] = []
    icd10: list[str] = []


class OverrideReason(_Strict):
    code: str
    display: str


class OverrideSet(_Strict):
    reasons: list[OverrideReason] = Field(min_length=1)


class OverridesFile(_Strict):
    system: str
    sets: dict[str, OverrideSet]
