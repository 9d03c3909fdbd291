"""Load and validate the clinical knowledge in ``cards/``.

Every dose, threshold, code and schedule the rules use lives in TOML files
there, each entry naming its source. They are validated with pydantic at
start-up and indexed once (code -> drug, LOINC -> analyte ...), so a
malformed file stops the service with a clear message and the hot path does
dictionary look-ups only.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cds_service.knowledge import schemas
from cds_service.knowledge.model import (
    AnalyteEntry,
    CodedConcept,
    DrugEntry,
    IndicationEntry,
    KnowledgeError,
    OverridesFile,
    RxNormCode,
    SourceEntry,
    expand_icd10,
)
from cds_service.knowledge.textmatch import Words


class Rules:
    """Rule tables by name (``knowledge.rules.dose``); a registered table that no file fills is empty."""

    def __init__(self, tables: dict[str, list | dict]):
        self._tables = tables
        for name, table in tables.items():  # plain attributes: no look-up function on the hot path
            if hasattr(type(self), name):
                raise ValueError(f"rule table name {name!r} is reserved")
            self.__dict__[name] = table
        self._for_drug: dict[tuple[str, str | None], list] = {}

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            """The tables, set as plain attributes above (for the type checker only)."""

    @property
    def tables(self) -> dict[str, list | dict]:
        """Every table by name (read-only by convention: the knowledge does not change after loading)."""
        return self._tables

    def with_tables(self, tables: dict[str, list | dict]) -> Rules:
        """The same kind of rules over other tables (a translated copy of the knowledge)."""
        return type(self)(tables)

    def for_drug(self, name: str, drug: str | None) -> list:
        """The entries of list table ``name`` that apply to ``drug`` (its ``drug`` or one of its ``drugs``),
        in file order; computed once per table and drug (the knowledge does not change after loading)."""
        key = (name, drug)
        found = self._for_drug.get(key)
        if found is None:
            found = [
                entry
                for entry in self._tables[name]
                if getattr(entry, "drug", None) == drug or drug in (getattr(entry, "drugs", None) or ())
            ]
            self._for_drug[key] = found
        return found

    def all_rules(self) -> list:
        return [entry for table in self._tables.values() if isinstance(table, list) for entry in table]


@dataclass
class Knowledge:
    """Validated knowledge plus the look-up indexes the hot path needs."""

    sources: dict[str, SourceEntry]
    drugs: dict[str, DrugEntry]
    analytes: dict[str, AnalyteEntry]
    concepts: dict[str, CodedConcept]
    indications: dict[str, IndicationEntry]
    rules: Rules
    overrides: OverridesFile
    version: str
    # indexes
    loinc_to_analyte: dict[str, str] = field(default_factory=dict)
    atc_to_drug: dict[str, str] = field(default_factory=dict)
    rxnorm_to_drug: dict[str, tuple[str, RxNormCode]] = field(default_factory=dict)
    snomed_to_drug: dict[str, str] = field(default_factory=dict)
    name_to_drug: list[tuple[str, str]] = field(default_factory=list)
    drug_names: tuple[str, ...] = ()  # the names of name_to_drug (a Words), for one pattern that rules most out
    snomed_to_concepts: dict[str, list[str]] = field(default_factory=dict)
    icd10_to_concepts: dict[str, list[str]] = field(default_factory=dict)  # ranges expanded to categories
    icd10_not_to_concepts: dict[str, list[str]] = field(default_factory=dict)  # codes a concept leaves out
    history_concept_codes: set[tuple[str, str, str]] = field(default_factory=set)  # ("snomed"|"icd10", concept, code)
    # (concept, names, exclude_words), each list a Words (the schema's WordList validates into one)
    concept_names: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    concept_name_words: tuple[str, ...] = ()  # every concept name (a Words): one search rules most texts out
    snomed_to_indication: dict[str, str] = field(default_factory=dict)
    icd10_to_indication: dict[str, str] = field(default_factory=dict)
    # every LOINC-shaped code named anywhere in the knowledge: an Observation coded only with other
    # LOINC codes is read by no rule and is dropped once, right after prefetch completion
    observation_codes: frozenset[str] = frozenset()
    # resource type -> every code some rule reads in resources of that type (decision 16): the coded prefetch
    # templates ask for exactly these (cds_service/discovery.py), so a code the knowledge recognises is fetched
    codes_read: dict[str, frozenset[str]] = field(default_factory=dict)
    # every "system|code" a rule table asks about in coded records (tables expose ``record_keys()``), and the
    # same codes without their system (how the record's code index is searched)
    record_keys: frozenset[str] = frozenset()
    record_codes: frozenset[str] = frozenset()

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

    if "overrides.toml" not in raw:
        raise KnowledgeError(f"knowledge file missing: {directory / 'overrides.toml'}")
    overrides = _validate(OverridesFile, raw.pop("overrides.toml"), directory / "overrides.toml")

    def collect(key: str, model) -> dict:
        """Entries of ``[key.name]`` from every file (so each area can keep its own file)."""
        out: dict = {}
        for name, content in raw.items():
            for entry_name, value in (content.pop(key, None) or {}).items():
                if entry_name in out:
                    raise KnowledgeError(f"{directory / name}: {key}.{entry_name} is defined twice")
                out[entry_name] = _validate(model, value, directory / name)
        if not out:
            raise KnowledgeError(f"no [{key}.*] entries found in {directory}")
        return out

    sources = collect("sources", SourceEntry)
    drugs = collect("drugs", DrugEntry)
    analytes = collect("analytes", AnalyteEntry)
    concepts = collect("concepts", CodedConcept)
    indications = collect("indications", IndicationEntry)

    registry = schemas.load_all()
    tables: dict[str, list | dict] = {t.name: ([] if t.kind == "list" else {}) for t in registry.values()}
    for name, content in raw.items():
        for key, items in content.items():
            table = registry.get(key)
            if table is None:
                raise KnowledgeError(f"{directory / name}: unknown table {key!r} (known: {sorted(registry)})")
            target = tables[key]
            if isinstance(target, list):  # (made a list above for a table of kind "list")
                if not isinstance(items, list):
                    raise KnowledgeError(f"{directory / name}: {key!r} must be an array of tables [[{key}]]")
                target.extend(_validate(table.model, item, directory / name) for item in items)
            else:
                if not isinstance(items, dict):
                    raise KnowledgeError(f"{directory / name}: {key!r} must be a table of tables [{key}.name]")
                for entry_name, item in items.items():
                    if entry_name in target:
                        raise KnowledgeError(f"{directory / name}: {key}.{entry_name} defined twice")
                    target[entry_name] = _validate(table.model, item, directory / name)
    rules = Rules(tables)

    knowledge = Knowledge(
        sources=sources,
        drugs=drugs,
        analytes=analytes,
        concepts=concepts,
        indications=indications,
        rules=rules,
        overrides=overrides,
        version=digest.hexdigest()[:12],
    )
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
    for rule in k.rules.all_rules():
        rule_id = getattr(rule, "id", None)
        if rule_id is None:
            continue
        if rule_id in seen:
            problems.append(f"duplicate rule id {rule_id!r}")
        seen.add(rule_id)
    for table in schemas.REGISTRY.values():
        if table.check is not None:
            problems.extend(table.check(k, getattr(k.rules, table.name)))
    if problems:
        raise KnowledgeError("knowledge files are inconsistent:\n  " + "\n  ".join(problems))


_LOINC_SHAPED = re.compile(r"\d{1,7}-\d")


def _strings(value):
    """Every string inside validated knowledge (models, dicts, lists, tuples), recursively."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)


def _loinc_codes(k: Knowledge) -> frozenset[str]:
    """LOINC-shaped codes in any knowledge entry or rule table (found by shape, so new tables are covered): whole
    values only, so a range in a sentence ("weeks 2-4") is not taken for a code."""
    parts = [k.analytes, k.concepts, k.indications, k.drugs, k.rules._tables]
    return frozenset(text.strip() for text in _strings(parts) if _LOINC_SHAPED.fullmatch(text.strip()))


# record types read by presence and date (cds_service/facts/coded_records.py) that a coded search fetches; an
# Immunization is fetched whole (no code filter), so its CVX codes are not listed here
CODED_RECORD_TYPES = ("Observation", "DiagnosticReport", "Procedure")


def _codes_read(k: Knowledge) -> dict[str, frozenset[str]]:
    """Resource type -> the codes rules read in it, from every analyte, every rule-table entry that declares
    ``codes_read()`` ({resource type: codes}) or ``record_keys()`` ("system|code" read in any coded record),
    and, for Observations, every LOINC-shaped code anywhere in the knowledge (a safety net for new tables)."""
    found: dict[str, set[str]] = {"Observation": set(k.observation_codes)}
    for analyte in k.analytes.values():
        found["Observation"].update(analyte.loinc)
    for table in k.rules._tables.values():
        entries = table if isinstance(table, list) else table.values()
        for entry in entries:
            declared = getattr(entry, "codes_read", None)
            for resource_type, codes in (declared() if callable(declared) else {}).items():
                found.setdefault(resource_type, set()).update(codes)
            record_keys = getattr(entry, "record_keys", None)
            for key in record_keys() if callable(record_keys) else ():
                system, _, code = key.partition("|")
                if system != "cvx":
                    # where such a record may be (a checklist item: any; a surgery: a Procedure)
                    for resource_type in getattr(entry, "RECORD_TYPES", CODED_RECORD_TYPES):
                        found.setdefault(resource_type, set()).add(code)
    return {resource_type: frozenset(codes) for resource_type, codes in found.items()}


def _index(k: Knowledge) -> None:
    k.observation_codes = _loinc_codes(k)
    k.codes_read = _codes_read(k)
    k.record_keys = frozenset(
        key
        for entry in k.rules.all_rules()
        if callable(record_keys := getattr(entry, "record_keys", None))
        for key in record_keys()
    )
    k.record_codes = frozenset(key.split("|", 1)[-1] for key in k.record_keys)
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
    k.drug_names = Words(name for name, _ in k.name_to_drug)
    for name, concept in k.concepts.items():
        unknown = [s for s in concept.sources if s not in k.sources]
        if unknown:
            raise KnowledgeError(f"concept {name}: unknown source(s) {unknown}")
        for code in concept.snomed:
            k.snomed_to_concepts.setdefault(code, []).append(name)
        for code in concept.history_snomed:
            k.snomed_to_concepts.setdefault(code, []).append(name)
            k.history_concept_codes.add(("snomed", name, code))
        for entry in concept.icd10:
            for code in expand_icd10(entry):
                k.icd10_to_concepts.setdefault(code, []).append(name)
        for entry in concept.history_icd10:
            for code in expand_icd10(entry):
                k.icd10_to_concepts.setdefault(code, []).append(name)
                k.history_concept_codes.add(("icd10", name, code))
        for entry in concept.icd10_not:
            for code in expand_icd10(entry):
                k.icd10_not_to_concepts.setdefault(code, []).append(name)
        if concept.names:
            k.concept_names.append((name, concept.names, concept.exclude_words))
    # the names of every concept in one list: a Condition whose text names none of them costs one search
    k.concept_name_words = Words(word for _, names, _ in k.concept_names for word in names)
    for name, indication in k.indications.items():
        for code in indication.snomed:
            k.snomed_to_indication[code] = name
        for code in indication.icd10:
            k.icd10_to_indication[code.upper()] = name
