"""Patient facts for the contraindication and PRAC rules, read once from the prefetch.

- coded results (``[qualitative_test.*]``): HBsAg / HCV / HIV / hCG / breastfeeding status / smoking status,
  as a category of the test's answer set (positive, negative, current, former ...), newest first;
- immunizations (CVX / ATC / text, date, status);
- allergies and intolerances (the substance as written; recognised as a drug by the rules).

Called from ``facts.build_facts``. A result whose answer cannot be read is kept with category ``None``
and never counted as negative.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.facts import PatientFacts, codings, loinc_or_unstated, parse_date
from cds_service.tolerant import as_list

_BAD_STATUS = {"entered-in-error", "cancelled"}


@dataclass(frozen=True)
class CodedResult:
    test: str
    category: str | None          # category of the test's answer set; None: could not be read
    answer: str                   # the answer as written (display/text/code)
    when: date | None
    loinc: str


@dataclass(frozen=True)
class ImmunizationFact:
    codes: tuple[tuple[str, str], ...]     # (system, code)
    display: str
    when: date | None
    status: str


@dataclass(frozen=True)
class AllergyFact:
    code: dict                     # AllergyIntolerance.code (CodeableConcept)
    display: str
    kind: str | None               # allergy | intolerance
    criticality: str | None
    recorded: date | None


def _category(answer_set, obs: dict) -> tuple[str | None, str]:
    """The answer set category of an Observation's value (or interpretation), and the answer as written."""
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        written = str(concept.get("text") or next((c.get("display") for c in codings(concept) if c.get("display")),
                                                   None) or next((c.get("code") for c in codings(concept)), "coded"))
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
    if isinstance(obs.get("valueString"), str):
        return _by_words(answer_set, obs["valueString"]), obs["valueString"]
    if isinstance(obs.get("valueBoolean"), bool):
        for name, cat in answer_set.categories.items():
            if cat.boolean is obs["valueBoolean"]:
                return name, str(obs["valueBoolean"]).lower()
        return None, str(obs["valueBoolean"]).lower()
    for interp in as_list(obs.get("interpretation")):
        for coding in codings(interp):
            code = str(coding.get("code") or "").strip()
            for name, cat in answer_set.categories.items():
                if code and code in cat.interpretation:
                    return name, f"interpretation {code}"
    if isinstance(obs.get("valueQuantity"), dict):
        return None, "a number (a coded result was expected)"
    return None, "no result value"


def _by_words(answer_set, text: str) -> str | None:
    folded = " ".join(str(text).lower().replace("-", " ").split())
    for name, cat in answer_set.categories.items():
        if folded in {" ".join(w.lower().replace("-", " ").split()) for w in cat.words}:
            return name
    return None


def read_safety_facts(facts: PatientFacts, knowledge, prefetched) -> None:
    """Fill ``coded_results``, ``immunizations`` and ``allergies`` on ``facts``."""
    tests = getattr(knowledge.rules, "qualitative_test", {})
    answer_sets = getattr(knowledge.rules, "answer_set", {})
    by_loinc = {code: name for name, test in tests.items() for code in test.loinc}
    if by_loinc:
        with_codes = getattr(prefetched, "with_codes", None)      # only results of a listed test, if indexed
        observations = with_codes("Observation", by_loinc) if with_codes else prefetched.resources("Observation")
        for obs in observations:
            if obs.get("status") in _BAD_STATUS:
                continue
            for coding in codings(obs.get("code")):
                code = str(coding.get("code") or "")
                name = by_loinc.get(code)
                if name is None or not loinc_or_unstated(coding.get("system")):
                    continue
                category, written = _category(answer_sets[tests[name].answers], obs)
                when = (parse_date(obs.get("effectiveDateTime")) or parse_date(obs.get("issued"))
                        or parse_date((obs.get("effectivePeriod") or {}).get("start")))
                facts.coded_results.setdefault(name, []).append(CodedResult(name, category, written, when, code))
                break
        for results in facts.coded_results.values():
            results.sort(key=lambda r: r.when or date.min, reverse=True)
    for imm in prefetched.resources("Immunization"):
        concept = imm.get("vaccineCode")
        codes = tuple((str(c.get("system") or ""), str(c.get("code") or "").strip()) for c in codings(concept))
        display = (concept or {}).get("text") or next((c.get("display") for c in codings(concept) if c.get("display")),
                                                      None) or "vaccine"
        when = parse_date(imm.get("occurrenceDateTime")) or parse_date(imm.get("recorded"))
        facts.immunizations.append(ImmunizationFact(codes, str(display), when, str(imm.get("status") or "")))
    for allergy in prefetched.resources("AllergyIntolerance"):
        verification = [c.get("code") for c in codings(allergy.get("verificationStatus"))]
        clinical = [c.get("code") for c in codings(allergy.get("clinicalStatus"))]
        if set(verification) & {"entered-in-error", "refuted"} or set(clinical) & {"inactive", "resolved"}:
            continue
        concept = allergy.get("code")
        if not isinstance(concept, dict):
            continue
        display = concept.get("text") or next((c.get("display") for c in codings(concept) if c.get("display")),
                                              None) or "substance"
        facts.allergies.append(AllergyFact(concept, str(display), allergy.get("type"), allergy.get("criticality"),
                                           parse_date(allergy.get("recordedDate"))))
