"""Patient facts for the contraindication, PRAC and infection rules, read once from the prefetch.

- coded results (``[qualitative_test.*]``): HBsAg / anti-HBc / HBV DNA / HCV / HIV / IGRA / TST / hCG /
  breastfeeding status / smoking status, as a category of the test's answer set (positive, negative, current,
  former ...), newest first. A number (viral load, quantitative hCG, skin-test induration) is read with the
  test's ``quantity`` reading: units and "<" comparators included (HIV RNA "<20 copies/mL" is below the
  assay's limit);
- treatments (``[treatment_class.*]``: antiretroviral therapy, TB preventive treatment): every medication
  request or statement of such a class with its status and dates, active or not;
- immunizations (CVX / ATC / text, date, status);
- allergies and intolerances (the substance as written; recognised as a drug by the rules).

Each reader returns its values; ``build.build_facts`` puts them on ``PatientFacts``. A result whose answer cannot be read is kept with category ``None`` and the
reason, and never counted as negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.facts.medications import MedicationFact
from cds_service.fhir.tolerant import as_list
from cds_service.fhir.values import VOID_STATUS, codings, loinc_or_unstated, parse_date
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.schemas.contraindication import AnswerSet, QualitativeTest
from cds_service.knowledge.schemas.results import QuantityReading
from cds_service.knowledge.units import HasUnits, resolve_unit
from cds_service.record.index import PatientRecord

# "<20 copies/mL", "20", "> 1e6 IU/mL": a number written as text, with its comparator and unit
_NUMBER_TEXT = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*(\d+(?:[.,]\d+)?)\s*(\S.*)?$")
_COMPARATOR: dict[str | None, str] = {"≤": "<=", "≥": ">="}


@dataclass(frozen=True)
class CodedResult:
    test: str
    category: str | None  # category of the test's answer set; None: could not be read
    answer: str  # the answer as written (display/text/code, "<20 {copies}/mL"), or why unreadable
    when: date | None
    loinc: str


@dataclass(frozen=True)
class ResultReading:
    """Results of some tests: all of them newest first, the newest READABLE one (which decides), and the results
    that could not be read and are newer than it (said, never taken as negative). On the same day a readable
    result wins over an unreadable companion (a QuantiFERON report sends its interpretation and bare numbers)."""

    results: list[CodedResult]
    decisive: CodedResult | None
    unread: list[CodedResult]


def read_results(
    coded_results: Mapping[str, Sequence[CodedResult]], test_ids: Iterable[str], since: date | None = None
) -> ResultReading:
    """The results of ``test_ids`` (``[qualitative_test.*]`` ids), only those dated ``since`` or later if given."""
    found = [
        r
        for t in test_ids
        for r in coded_results.get(t, ())
        if since is None or (r.when is not None and r.when >= since)
    ]
    found.sort(key=_when, reverse=True)
    decisive = next((r for r in found if r.category is not None), None)
    unread = [r for r in found if r.category is None and (decisive is None or _when(r) > _when(decisive))]
    return ResultReading(found, decisive, unread)


def _when(result: CodedResult) -> date:
    return result.when or date.min


@dataclass(frozen=True)
class TreatmentRecord:
    """A medication request or statement of a treatment class (antiretrovirals, TB preventive treatment)."""

    classes: tuple[str, ...]  # treatment_class ids it belongs to
    display: str
    status: str  # as recorded (active, completed, stopped, on-hold, intended ...)
    active: bool  # being taken now (what decides "treated")
    start: date | None
    end: date | None
    resource_type: str


@dataclass(frozen=True)
class ImmunizationFact:
    codes: tuple[tuple[str, str], ...]  # (system, code)
    display: str
    when: date | None
    status: str


@dataclass(frozen=True)
class AllergyFact:
    code: dict[str, Any]  # AllergyIntolerance.code (CodeableConcept)
    display: str
    kind: str | None  # allergy | intolerance
    criticality: str | None
    recorded: date | None


def _written(concept: dict[str, Any]) -> str:
    return str(
        concept.get("text")
        or next((c.get("display") for c in codings(concept) if c.get("display")), None)
        or next((c.get("code") for c in codings(concept)), "coded")
    )


def _interpretation(answer_set: AnswerSet, obs: dict[str, Any]) -> tuple[str | None, str | None]:
    for interp in as_list(obs.get("interpretation")):
        for coding in codings(interp):
            code = str(coding.get("code") or "").strip()
            for name, cat in answer_set.categories.items():
                if code and code in cat.interpretation:
                    return name, f"interpretation {code}"
    return None, None


def _units_of(reading: QuantityReading, knowledge: Knowledge) -> tuple[HasUnits, str | None]:
    """(object with ``units``, canonical unit) for a quantity reading (its own units, or its analyte's)."""
    if reading.analyte is not None:
        analyte = knowledge.analytes[reading.analyte]
        return analyte, analyte.canonical_unit
    return reading, reading.canonical_unit


def _fold(unit: str) -> str:
    return unit.replace(" ", "").lower()


def _shown_unit(unit: str | None) -> str:
    """A UCUM unit as clinicians read it: "{copies}/mL" -> "copies/mL", "[IU]/mL" -> "IU/mL"."""
    if not unit:
        return say("(no unit)")
    return unit.translate(_UNIT_SHOWN).replace("Log_", "log ").replace("log_", "log ")


_UNIT_SHOWN = str.maketrans("", "", "[]{}")


def _number(
    reading: QuantityReading, knowledge: Knowledge, value: float, comparator: str | None, units: tuple[str | None, ...]
) -> tuple[str | None, str]:
    """A reported number -> (category, as written) by the test's quantity reading; (None, why) if unreadable."""
    comparator = _COMPARATOR.get(comparator, comparator)
    unit = next((u for u in units if u), None)
    written = f"{comparator or ''}{value:g} {_shown_unit(unit)}"
    if unit is None:
        return None, say("{written}: no unit given", written=written)
    holder, canonical = _units_of(reading, knowledge)
    if any(_fold(u) in {_fold(x) for x in reading.log10_units} for u in units if u):
        converted = math.pow(10.0, value)
        written += f" (= {comparator or ''}{converted:.0f} {_shown_unit(canonical)})"
    else:
        resolved = resolve_unit(holder, *units)
        if resolved is None:
            return None, say(
                "{written}: unit {unit} is not a recognised unit for this test", written=written, unit=repr(unit)
            )
        converted = value * resolved[1]
    if converted < 0:
        return None, say("{written}: negative value", written=written)
    return reading.category(converted, comparator), written


def _category(
    answer_set: AnswerSet, obs: dict[str, Any], test: QualitativeTest, knowledge: Knowledge
) -> tuple[str | None, str]:
    """The answer-set category of an Observation's value (or interpretation), and the answer as written (or,
    when the category is None, what was found and why it could not be read)."""
    reading = getattr(test, "quantity", None)
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        written = _written(concept)
        for coding in codings(concept):
            code = str(coding.get("code") or "").strip()
            for name, cat in answer_set.categories.items():
                if code and code in cat.codes:
                    return name, written
        text = " ".join(filter(None, [concept.get("text")] + [c.get("display") for c in codings(concept)]))
        found = _by_words(answer_set, text)
        if found:
            return found, written
        return None, written
    quantity = obs.get("valueQuantity")
    if (
        isinstance(quantity, dict)
        and isinstance(quantity.get("value"), (int, float))
        and not isinstance(quantity.get("value"), bool)
    ):
        value, comparator = float(quantity["value"]), quantity.get("comparator")
        units = (quantity.get("code"), quantity.get("unit"))
        if reading is not None:
            found, written = _number(reading, knowledge, value, comparator, units)
            if found is not None:
                return found, written
        else:
            written = (
                f"{_COMPARATOR.get(comparator, comparator) or ''}{value:g} "
                f"{_shown_unit(next((u for u in units if u), None))}"
            )
        by_interp, how = _interpretation(answer_set, obs)
        if by_interp:
            return by_interp, f"{written} ({how})"
        return (
            None,
            written
            if reading is not None
            else say(
                "{written} without an interpretation (this test is read from its coded answer or interpretation)",
                written=written,
            ),
        )
    if isinstance(obs.get("valueString"), str):
        text = obs["valueString"]
        found = _by_words(answer_set, text)
        if found is None and reading is not None and (match := _NUMBER_TEXT.match(text)):
            found, _ = _number(reading, knowledge, float(match[2].replace(",", ".")), match[1], (match[3],))
        if found is None:
            by_interp, how = _interpretation(answer_set, obs)
            if by_interp:
                return by_interp, f"{text} ({how})"
        return found, text
    if isinstance(obs.get("valueBoolean"), bool):
        for name, cat in answer_set.categories.items():
            if cat.boolean is obs["valueBoolean"]:
                return name, str(obs["valueBoolean"]).lower()
        return None, str(obs["valueBoolean"]).lower()
    by_interp, how = _interpretation(answer_set, obs)
    if by_interp and how:  # (both or neither)
        return by_interp, how
    return None, say("no result value")


def _by_words(answer_set: AnswerSet, text: str) -> str | None:
    folded = " ".join(str(text).lower().replace("-", " ").split())
    for name, cat in answer_set.categories.items():
        if folded in {" ".join(w.lower().replace("-", " ").split()) for w in cat.words}:
            return name
    return None


def _is_bare_panel(obs: dict[str, Any]) -> bool:
    """A panel Observation (e.g. IGRA panel 71775-1) holding only references to its members, which carry the
    results and are read on their own."""
    return (
        bool(obs.get("hasMember")) and not any(key.startswith("value") for key in obs) and not obs.get("interpretation")
    )


def read_treatments(knowledge: Knowledge, medications: Iterable[MedicationFact]) -> list[TreatmentRecord]:
    """The medications already read (``read_medications``) that belong to a treatment class."""
    classes = getattr(knowledge.rules, "treatment_class", {})
    found: list[TreatmentRecord] = []
    for med in medications if classes else ():
        if med.status == "draft":
            continue
        member = tuple(name for name, cls in classes.items() if cls.contains(med.display, med.codes))
        if member:
            found.append(
                TreatmentRecord(member, med.display, med.status, med.active, med.start, med.end, med.resource_type)
            )
    return found


def read_coded_results(knowledge: Knowledge, record: PatientRecord) -> dict[str, list[CodedResult]]:
    """``[qualitative_test.*]`` id -> its results, newest first (undated last)."""
    tests = getattr(knowledge.rules, "qualitative_test", {})
    answer_sets = getattr(knowledge.rules, "answer_set", {})
    by_loinc = {code: name for name, test in tests.items() for code in test.loinc}
    found: dict[str, list[CodedResult]] = {}
    if not by_loinc:
        return found
    for obs in record.with_codes("Observation", by_loinc):  # only results of a listed test
        if obs.get("status") in VOID_STATUS or _is_bare_panel(obs):
            continue
        for coding in codings(obs.get("code")):
            code = str(coding.get("code") or "")
            name = by_loinc.get(code)
            if name is None or not loinc_or_unstated(coding.get("system")):
                continue
            category, written = _category(answer_sets[tests[name].answers], obs, tests[name], knowledge)
            when = (
                parse_date(obs.get("effectiveDateTime"))
                or parse_date(obs.get("issued"))
                or parse_date((obs.get("effectivePeriod") or {}).get("start"))
            )
            found.setdefault(name, []).append(CodedResult(name, category, written, when, code))
            break
    for results in found.values():
        results.sort(key=lambda r: r.when or date.min, reverse=True)
    return found


def read_immunizations(record: PatientRecord) -> list[ImmunizationFact]:
    """Every Immunization of the record (CVX / ATC / text, date, status)."""
    found = []
    for imm in record.resources("Immunization"):
        concept = imm.get("vaccineCode")
        codes = tuple((str(c.get("system") or ""), str(c.get("code") or "").strip()) for c in codings(concept))
        display = (
            (concept or {}).get("text")
            or next((c.get("display") for c in codings(concept) if c.get("display")), None)
            or "vaccine"
        )
        when = parse_date(imm.get("occurrenceDateTime")) or parse_date(imm.get("recorded"))
        found.append(ImmunizationFact(codes, str(display), when, str(imm.get("status") or "")))
    return found


def read_allergies(record: PatientRecord) -> list[AllergyFact]:
    """Allergies and intolerances that stand (not entered in error or refuted, not inactive or resolved)."""
    found = []
    for allergy in record.resources("AllergyIntolerance"):
        verification = [c.get("code") for c in codings(allergy.get("verificationStatus"))]
        clinical = [c.get("code") for c in codings(allergy.get("clinicalStatus"))]
        if set(verification) & {"entered-in-error", "refuted"} or set(clinical) & {"inactive", "resolved"}:
            continue
        concept = allergy.get("code")
        if not isinstance(concept, dict):
            continue
        display = (
            concept.get("text")
            or next((c.get("display") for c in codings(concept) if c.get("display")), None)
            or "substance"
        )
        found.append(
            AllergyFact(
                concept,
                str(display),
                allergy.get("type"),
                allergy.get("criticality"),
                parse_date(allergy.get("recordedDate")),
            )
        )
    return found
