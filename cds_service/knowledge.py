"""Load and validate the clinical knowledge in ``cards/``.

Every dose, threshold, code and schedule the rules use lives in TOML files
there, each entry naming its source. They are validated with pydantic at
start-up and indexed once (code -> drug, LOINC -> analyte ...), so a
malformed file stops the service with a clear message and the hot path does
dictionary look-ups only.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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

    @model_validator(mode="after")
    def _canonical_listed(self) -> "AnalyteEntry":
        if self.units.get(self.canonical_unit) != 1.0:
            raise ValueError(f"canonical unit {self.canonical_unit!r} must be in units with factor 1.0")
        return self


class CodedConcept(_Strict):
    display: str
    snomed: list[str] = []
    icd10: list[str] = []
    active_only: bool = False
    sources: list[str] = []


class IndicationEntry(_Strict):
    display: str
    snomed: list[str] = []
    icd10: list[str] = []


class DoseWhen(_Strict):
    age_at_least: float | None = Field(default=None, ge=0, le=130)
    age_below: float | None = Field(default=None, ge=0, le=130)


class DoseRule(_Strict):
    id: str
    drug: str
    indications: list[str] = []
    when: DoseWhen
    max_mg: float = Field(gt=0)
    per_day: int = Field(ge=1, le=4)
    reason: str
    detail: str
    sources: list[str] = Field(min_length=1)


class LabThreshold(_Strict):
    id: str
    analyte: str
    phase: list[Literal["start", "on_treatment"]] = Field(min_length=1)
    drugs: list[str] = Field(min_length=1)
    below: dict[str, float] | None = None
    above: dict[str, float] | None = None
    indicator: Literal["info", "warning", "critical"]
    action: str
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_direction(self) -> "LabThreshold":
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' or 'above'")
        return self

    @property
    def direction(self) -> str:
        return "below" if self.below is not None else "above"

    @property
    def limits(self) -> dict[str, float]:
        return self.below if self.below is not None else self.above  # type: ignore[return-value]


class ConditionRule(_Strict):
    id: str
    concept: str
    drugs: list[str] = Field(min_length=1)
    indicator: Literal["info", "warning", "critical"]
    summary: str
    action: str
    sources: list[str] = Field(min_length=1)


class OverrideReason(_Strict):
    code: str
    display: str


class OverrideSet(_Strict):
    reasons: list[OverrideReason] = Field(min_length=1)


class OverridesFile(_Strict):
    system: str
    sets: dict[str, OverrideSet]


class RuleFiles(_Strict):
    dose: list[DoseRule] = []
    lab_threshold: list[LabThreshold] = []
    condition_rule: list[ConditionRule] = []


@dataclass
class Knowledge:
    """Validated knowledge plus the look-up indexes the hot path needs."""

    sources: dict[str, SourceEntry]
    drugs: dict[str, DrugEntry]
    analytes: dict[str, AnalyteEntry]
    concepts: dict[str, CodedConcept]
    indications: dict[str, IndicationEntry]
    rules: RuleFiles
    overrides: OverridesFile
    version: str
    # indexes
    loinc_to_analyte: dict[str, str] = field(default_factory=dict)
    atc_to_drug: dict[str, str] = field(default_factory=dict)
    rxnorm_to_drug: dict[str, tuple[str, RxNormCode]] = field(default_factory=dict)
    snomed_to_drug: dict[str, str] = field(default_factory=dict)
    name_to_drug: list[tuple[str, str]] = field(default_factory=list)
    snomed_to_concepts: dict[str, list[str]] = field(default_factory=dict)
    icd10_to_concepts: dict[str, list[str]] = field(default_factory=dict)
    snomed_to_indication: dict[str, str] = field(default_factory=dict)
    icd10_to_indication: dict[str, str] = field(default_factory=dict)

    def source(self, source_id: str) -> SourceEntry:
        return self.sources[source_id]


def _read(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise KnowledgeError(f"knowledge file missing: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError(f"knowledge file {path} is not valid TOML: {exc}") from exc


def _validate(model, data, path: Path):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise KnowledgeError(f"knowledge file {path} is malformed:\n{exc}") from exc


def _entries(model, data: dict, key: str, path: Path) -> dict:
    return {name: _validate(model, value, path) for name, value in data.get(key, {}).items()}


def load_knowledge(directory: Path) -> Knowledge:
    """Read, validate, cross-check and index every knowledge file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KnowledgeError(f"knowledge directory not found: {directory}")
    digest = hashlib.sha256()
    raw: dict[str, dict] = {}
    for path in sorted(directory.rglob("*.toml")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
        raw[path.relative_to(directory).as_posix()] = _read(path)

    def need(name: str) -> tuple[dict, Path]:
        if name not in raw:
            raise KnowledgeError(f"knowledge file missing: {directory / name}")
        return raw[name], directory / name

    data, path = need("sources.toml")
    sources = _entries(SourceEntry, data, "sources", path)
    data, path = need("drugs.toml")
    drugs = _entries(DrugEntry, data, "drugs", path)
    data, path = need("labs.toml")
    analytes = _entries(AnalyteEntry, data, "analytes", path)
    data, path = need("concepts.toml")
    concepts = _entries(CodedConcept, data, "concepts", path)
    data, path = need("indications.toml")
    indications = _entries(IndicationEntry, data, "indications", path)
    data, path = need("overrides.toml")
    overrides = _validate(OverridesFile, data, path)

    merged: dict[str, list] = {}
    rule_paths: dict[str, Path] = {}
    for name, content in raw.items():
        if name.startswith("rules/"):
            for key, items in content.items():
                if key not in RuleFiles.model_fields:
                    raise KnowledgeError(f"{directory / name}: unknown rule table [[{key}]]")
                merged.setdefault(key, []).extend(items)
                rule_paths[key] = directory / name
    rules = _validate(RuleFiles, merged, directory / "rules")

    knowledge = Knowledge(sources=sources, drugs=drugs, analytes=analytes, concepts=concepts,
                          indications=indications, rules=rules, overrides=overrides,
                          version=digest.hexdigest()[:12])
    _cross_check(knowledge)
    _index(knowledge)
    return knowledge


def _cross_check(k: Knowledge) -> None:
    """Every reference between files must resolve; rule ids must be unique."""
    problems: list[str] = []

    def check_sources(owner: str, ids: list[str]) -> None:
        for source_id in ids:
            if source_id not in k.sources:
                problems.append(f"{owner}: unknown source {source_id!r}")

    for name, drug in k.drugs.items():
        check_sources(f"drug {name}", drug.sources)
    for name, analyte in k.analytes.items():
        check_sources(f"analyte {name}", analyte.sources)
    seen: set[str] = set()
    all_rules = [*k.rules.dose, *k.rules.lab_threshold, *k.rules.condition_rule]
    for rule in all_rules:
        if rule.id in seen:
            problems.append(f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        check_sources(f"rule {rule.id}", rule.sources)
        for drug in getattr(rule, "drugs", None) or [getattr(rule, "drug")]:
            if drug not in k.drugs:
                problems.append(f"rule {rule.id}: unknown drug {drug!r}")
    for rule in k.rules.dose:
        for indication in rule.indications:
            if indication not in k.indications:
                problems.append(f"rule {rule.id}: unknown indication {indication!r}")
    thresholds: set[tuple] = set()
    for rule in k.rules.lab_threshold:
        analyte = k.analytes.get(rule.analyte)
        if analyte is None:
            problems.append(f"rule {rule.id}: unknown analyte {rule.analyte!r}")
            continue
        if analyte.canonical_unit not in rule.limits:
            problems.append(f"rule {rule.id}: must give a limit in the canonical unit {analyte.canonical_unit!r}")
        for unit in rule.limits:
            if unit not in analyte.units:
                problems.append(f"rule {rule.id}: unit {unit!r} is not a known unit of {rule.analyte}")
        for phase in rule.phase:
            for drug in rule.drugs:
                key = (rule.analyte, phase, drug, rule.direction)
                if key in thresholds:
                    problems.append(f"rule {rule.id}: a second {rule.direction} threshold for {key[:3]}")
                thresholds.add(key)
    for rule in k.rules.condition_rule:
        if rule.concept not in k.concepts:
            problems.append(f"rule {rule.id}: unknown concept {rule.concept!r}")
    if problems:
        raise KnowledgeError("knowledge files are inconsistent:\n  " + "\n  ".join(problems))


def _index(k: Knowledge) -> None:
    for name, analyte in k.analytes.items():
        for code in analyte.loinc:
            k.loinc_to_analyte[code] = name
    for name, drug in k.drugs.items():
        for code in drug.atc:
            k.atc_to_drug[code.upper()] = name
        for rx in drug.rxnorm:
            k.rxnorm_to_drug[rx.code] = (name, rx)
        for code in drug.snomed:
            k.snomed_to_drug[code] = name
        for text in drug.names:
            k.name_to_drug.append((text.lower(), name))
    # longest names first, so "ruxolitinib cream" wins over "ruxolitinib"
    k.name_to_drug.sort(key=lambda pair: -len(pair[0]))
    for name, concept in k.concepts.items():
        for code in concept.snomed:
            k.snomed_to_concepts.setdefault(code, []).append(name)
        for code in concept.icd10:
            k.icd10_to_concepts.setdefault(code.upper(), []).append(name)
    for name, indication in k.indications.items():
        for code in indication.snomed:
            k.snomed_to_indication[code] = name
        for code in indication.icd10:
            k.icd10_to_indication[code.upper()] = name
