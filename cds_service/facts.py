"""Patient facts: the few things the rules need, read once from the prefetch.

Resources are reduced here to small typed facts (lab results per analyte with
date and unit, recognised conditions, medications, renal function ...).
Observations whose LOINC code no rule reads are skipped after one dict
look-up, so the cost does not grow with irrelevant data in the prefetch; the
results a rule does read are dated and sorted here but each is interpreted
(value, unit, reference range) only when a rule reaches it, newest first, so
years of history cost a date each. Missing or uninterpretable values are kept
as explicit gaps, never as normal.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from operator import attrgetter, itemgetter

from cds_service.fhir.tolerant import as_list
from cds_service.fhir.values import (
    codings,
    loinc_or_unstated,
    parse_date,
    parse_date_text,
)
from cds_service.knowledge import Knowledge
from cds_service.knowledge import drugs as drugmod
from cds_service.knowledge.textmatch import WORD_START, any_word
from cds_service.knowledge.units import resolve_unit
from cds_service.record.index import PatientRecord
from cds_service.renal import ckd_epi_2021, cockcroft_gault

_BAD_STATUS = {"entered-in-error", "cancelled"}
MAX_PLAUSIBLE_AGE = 125
_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}


@dataclass(frozen=True)
class LabValue:
    analyte: str
    value: float                      # canonical unit
    reported_value: float
    reported_unit: str                # the knowledge file's spelling of the reported unit
    when: date
    ref_high: float | None = None     # canonical unit
    ref_low: float | None = None
    source_id: str | None = None
    code: str | None = None           # the analyte's LOINC code the result carried
    note: str | None = None           # how it was read (knowledge unit_notes / code_notes), shown with the value


@dataclass(frozen=True)
class Uninterpretable:
    analyte: str
    when: date | None
    why: str


@dataclass(frozen=True)
class ConditionFact:
    concepts: tuple[str, ...]
    indication: str | None
    active: bool
    onset: date | None
    display: str
    abatement: date | None = None
    by_name: bool = False     # no coding was recognised: the concepts were read from its text (decision 16)

    @property
    def how(self) -> str:
        """What the card adds after the dates: "; recognised by name" for a concept read from the text."""
        return "; recognised by name" if self.by_name else ""


@dataclass(frozen=True)
class MedicationFact:
    drug: drugmod.DrugMatch | None
    display: str
    active: bool
    start: date | None
    codes: tuple[tuple[str, str], ...]   # (system kind or raw system, code)
    resource_type: str
    resource_id: str | None
    status: str = ""                     # as recorded (active, completed, stopped, draft ...)
    end: date | None = None              # end of the dispense validity / effective period, if recorded

    @property
    def systemic_jaki_in_use(self) -> bool:
        """An active record of a systemic JAK inhibitor: what patient-view monitors."""
        return self.active and self.drug is not None and self.drug.category == "systemic"


@dataclass(frozen=True)
class Derived:
    """A computed value (CrCl, eGFR) or why it could not be computed."""

    value: float | None
    method: str
    when: date | None = None
    missing: str | None = None


@dataclass
class PatientFacts:
    today: date
    patient_id: str
    birth_date: date | None = None
    birth_date_precision: int = 10      # 4 = year only, 7 = year-month, 10 = full date
    birth_date_problem: str | None = None
    sex: str | None = None
    labs: dict[str, "LabSeries"] = field(default_factory=dict)        # newest first, read on demand
    conditions: list[ConditionFact] = field(default_factory=list)
    medications: list[MedicationFact] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)          # prefetch key -> why
    gaps: dict[str, str] = field(default_factory=dict)                 # "Observation|<loinc>" / type -> why
    child_pugh: object | None = None    # hepatic.ChildPugh (latest class A/B/C) or None: not recorded
    records: dict = field(default_factory=dict)   # "loinc|code" -> coded_records.CodedRecord list, newest first
    coded_results: dict = field(default_factory=dict)  # qualitative_test id -> safety_facts.CodedResult, newest first
    immunizations: list = field(default_factory=list)  # safety_facts.ImmunizationFact
    allergies: list = field(default_factory=list)      # safety_facts.AllergyFact (active, not refuted)
    treatments: list = field(default_factory=list)     # safety_facts.TreatmentRecord (ART, TB preventive treatment)

    # -- age ----------------------------------------------------------------
    @property
    def age(self) -> int | None:
        """Completed years at the evaluation date (lowest possible if birthDate is partial)."""
        return _age_on(self.birth_date_latest, self.today) if self.birth_date else None

    @property
    def age_max(self) -> int | None:
        return _age_on(self.birth_date, self.today) if self.birth_date else None

    @property
    def birth_date_latest(self) -> date | None:
        if self.birth_date is None:
            return None
        if self.birth_date_precision == 4:
            return date(self.birth_date.year, 12, 31)
        if self.birth_date_precision == 7:
            nxt = date(self.birth_date.year + (self.birth_date.month == 12), self.birth_date.month % 12 + 1, 1)
            return date.fromordinal(nxt.toordinal() - 1)
        return self.birth_date

    # -- labs ---------------------------------------------------------------
    def latest(self, analyte: str, max_age_days: int | None = None) -> LabValue | None:
        series = self.labs.get(analyte)
        newest = series.newest() if series is not None else None
        if newest is None:
            return None
        if max_age_days is not None and (self.today - newest.when).days > max_age_days:
            return None
        return newest

    def unreadable(self, analyte: str, since: date | None = None) -> list[Uninterpretable]:
        """Results of ``analyte`` that could not be interpreted and are not older than its newest usable
        result (undated ones included), dated on or after ``since`` if given; newest first."""
        series = self.labs.get(analyte)
        return series.unreadable(since) if series is not None else []

    def unreadable_within(self, analyte: str, max_age_days: int) -> list[Uninterpretable]:
        """``unreadable`` for results at most ``max_age_days`` old (the age limit ``latest`` applies)."""
        return self.unreadable(analyte, since=self.today - timedelta(days=max_age_days))

    def concept_present(self, concept: str) -> list[ConditionFact]:
        return [c for c in self.conditions if concept in c.concepts]

    def has_data(self, key: str) -> bool:
        return key not in self.unavailable

    def why_unavailable(self, resource_type: str, codes: list[str] | tuple[str, ...] = ()) -> str | None:
        """Why data of this type (and, for Observations, these codes) could not be obtained, if it could not."""
        for code in codes:
            why = self.gaps.get(f"{resource_type}|{code}")
            if why:
                return why
        return self.gaps.get(resource_type)

    def why_medications_unavailable(self) -> str | None:
        """Why the medication list (requests or statements) could not be obtained, if it could not."""
        for resource_type in MEDICATION_TYPES:
            why = self.why_unavailable(resource_type)
            if why:
                return why
        return None


def _age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _other_date(resource: dict) -> date | None:
    """A result's date when effectiveDateTime is absent or unreadable (``_read_labs`` reads that one first)."""
    for key in ("effectiveInstant", "issued"):
        found = parse_date(resource.get(key))
        if found:
            return found
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return parse_date(period.get("start")) or parse_date(period.get("end"))
    return None


def _read_patient(facts: PatientFacts, patient: dict | None) -> None:
    if not isinstance(patient, dict):
        return
    raw = patient.get("birthDate")
    born = parse_date(raw)
    if raw is not None and born is None:
        facts.birth_date_problem = f"the birth date {str(raw)[:20]!r} could not be interpreted"
    elif born and (born > facts.today or _age_on(born, facts.today) > MAX_PLAUSIBLE_AGE):
        facts.birth_date_problem = f"the birth date {raw} gives an implausible age"
    elif born:
        facts.birth_date = born
        facts.birth_date_precision = min(len(raw), 10)
    gender = patient.get("gender")
    if gender in ("female", "male"):
        facts.sex = gender


def _quantity_value(q: dict) -> float | None:
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _interpret(analyte, analyte_name: str, obs: dict, when: date) -> LabValue | Uninterpretable:
    """One dated result -> its value in the canonical unit, or why it cannot be used."""
    quantity = obs.get("valueQuantity")
    value = _quantity_value(quantity) if isinstance(quantity, dict) else None
    if value is None:
        return Uninterpretable(analyte_name, when, "result has no numeric value")
    resolved = resolve_unit(analyte, quantity.get("code"), quantity.get("unit"))
    if resolved is None:
        unit = quantity.get("code") or quantity.get("unit") or "no unit"
        return Uninterpretable(analyte_name, when, f"unit {unit!r} is not a recognised unit for {analyte.display}")
    if value < 0:
        return Uninterpretable(analyte_name, when, f"negative value {value:g}")
    unit, factor = resolved
    ref_high = ref_low = None
    for rng in as_list(obs.get("referenceRange")):
        if not isinstance(rng, dict):
            continue
        for key in ("high", "low"):
            bound = rng.get(key)
            if isinstance(bound, dict) and _quantity_value(bound) is not None:
                bound_unit = resolve_unit(analyte, bound.get("code"), bound.get("unit")) or resolved
                converted = _quantity_value(bound) * bound_unit[1]
                if key == "high" and ref_high is None:
                    ref_high = converted
                elif key == "low" and ref_low is None:
                    ref_low = converted
        break
    code = _code_of(analyte, obs)
    notes = [n for n in (analyte.code_notes.get(code), analyte.unit_notes.get(unit)) if n]
    return LabValue(analyte_name, value * factor, value, unit, when, ref_high, ref_low, obs.get("id"), code,
                    ", ".join(notes) or None)


def _code_of(analyte, obs: dict) -> str | None:
    """The first of the analyte's LOINC codes among the result's codings (the one it was recognised by)."""
    for coding in codings(obs.get("code")):
        code = coding.get("code")
        if type(code) is str and (code := code.strip()) in analyte.loinc and loinc_or_unstated(coding.get("system")):
            return code
    return None


class LabSeries(Sequence):
    """One analyte's usable results, newest first, interpreted only as far as a rule reads.

    Built from (date, Observation) pairs; most rules want the newest result, a few walk back to a
    treatment start, so a long history costs one date per result and nothing more. Results that
    cannot be interpreted are kept apart (``unreadable``), never dropped and never read as normal.
    """

    __slots__ = ("_analyte", "_name", "_pending", "_next", "_values", "_bad")

    def __init__(self, analyte, name: str, dated: list[tuple[date, dict]], undated: list[Uninterpretable]):
        dated.sort(key=_first, reverse=True)        # stable: same-day results keep the EHR's order
        self._analyte, self._name, self._pending, self._next = analyte, name, dated, 0
        self._values: list[LabValue] = []
        self._bad: list[Uninterpretable] = list(undated)

    def _read_one(self) -> None:
        when, obs = self._pending[self._next]
        self._next += 1
        found = _interpret(self._analyte, self._name, obs, when)
        (self._values if type(found) is LabValue else self._bad).append(found)

    def _has(self, index: int) -> bool:
        """Read on until the usable result at ``index`` exists or nothing is left; does it exist?"""
        while len(self._values) <= index and self._next < len(self._pending):
            self._read_one()
        return index < len(self._values)

    def __getitem__(self, index):
        if isinstance(index, slice) or index < 0:
            return list(self)[index]
        self._has(index)
        return self._values[index]

    def __iter__(self):
        position = 0
        while self._has(position):
            yield self._values[position]
            position += 1

    def __len__(self) -> int:
        self._has(len(self._pending))
        return len(self._values)

    def __bool__(self) -> bool:
        return self._has(0)

    def newest(self) -> LabValue | None:
        """The newest usable result (the one most rules want), or None."""
        return self._values[0] if self._has(0) else None

    def __repr__(self) -> str:
        return f"LabSeries({self._name}: {len(self._pending)} dated results, {len(self._values)} read)"

    def unreadable(self, since: date | None = None) -> list[Uninterpretable]:
        """See ``PatientFacts.unreadable``: reads on until the newest usable result (and its same-day peers)."""
        pending = self._pending
        while self._next < len(pending):
            when = pending[self._next][0]
            if since is not None and when < since:
                break
            if self._values and when < self._values[0].when:
                break
            self._read_one()
        newest = self._values[0].when if self._values else None
        found = [u for u in self._bad if u.when is not None and (since is None or u.when >= since)
                 and (newest is None or u.when >= newest)]
        found.sort(key=_when_of, reverse=True)
        return found + [u for u in self._bad if u.when is None]


    def unreadable_between(self, after: date | None, until: date) -> list[Uninterpretable]:
        """Dated results after ``after`` (any age if None) and on or before ``until`` that could not be
        interpreted, newest first (e.g. a pre-treatment result newer than the baseline that was used)."""
        pending = self._pending
        while self._next < len(pending) and (after is None or pending[self._next][0] > after):
            self._read_one()
        found = [u for u in self._bad if u.when is not None and u.when <= until and (after is None or u.when > after)]
        found.sort(key=_when_of, reverse=True)
        return found


_first = itemgetter(0)                  # (date, Observation) -> date, as a sort key without a Python call
_when_of = attrgetter("when")


def _analyte_of(concept, loinc_index: dict) -> str | None:
    """The analyte named by the first LOINC (or system-less) coding that names one."""
    for coding in codings(concept):
        code = coding.get("code")
        if type(code) is str:
            analyte = loinc_index.get(code) or loinc_index.get(code.strip())
            if analyte is not None and loinc_or_unstated(coding.get("system")):
                return analyte
    return None


def _read_labs(facts: PatientFacts, knowledge: Knowledge, record: PatientRecord) -> None:
    """Group the results carrying an analyte's LOINC code by analyte, dated; interpretation waits."""
    loinc_index = knowledge.loinc_to_analyte
    dated: dict[str, list[tuple[date, dict]]] = {}
    undated: dict[str, list[Uninterpretable]] = {}
    for obs, lone in record.observations_with_codes(loinc_index):   # only results carrying an analyte code
        if lone is not None:            # its only coding, read by the index: the analyte is its code's
            analyte = loinc_index[lone[0]] if loinc_or_unstated(lone[1]) else None
        else:
            analyte = _analyte_of(obs.get("code"), loinc_index)
        if analyte is None or obs.get("status") in _BAD_STATUS:
            continue
        stated = obs.get("effectiveDateTime")     # the usual date (parse_date's own test, without its call)
        when = (type(stated) is str and len(stated) >= 4 and parse_date_text(stated)) or _other_date(obs)
        if when is None:
            undated.setdefault(analyte, []).append(Uninterpretable(analyte, None, "result has no date"))
        elif (series := dated.get(analyte)) is None:
            dated[analyte] = [(when, obs)]
        else:
            series.append((when, obs))
    for name in dated.keys() | undated.keys():
        facts.labs[name] = LabSeries(knowledge.analytes[name], name, dated.get(name, []), undated.get(name, []))


def _read_condition(facts: PatientFacts, knowledge: Knowledge, condition: dict) -> None:
    status = condition.get("verificationStatus")
    if any(c.get("code") in ("entered-in-error", "refuted") for c in codings(status)):
        return
    concepts: list[str] = []
    history: list[str] = []         # recognised through a "history of" code only (e.g. ICD-10 Z85)
    left_out: list[str] = []        # concepts a coding rules out (icd10_not: C44 is not malignancy, by name neither)
    indication = None
    code = condition.get("code")
    for coding in codings(code):
        value = str(coding.get("code") or "").strip()
        system = str(coding.get("system") or "").lower()
        if "snomed" in system:
            kind, found = "snomed", knowledge.snomed_to_concepts.get(value, [])
        elif is_icd10(system):
            kind, found = "icd10", icd10_lookup(knowledge.icd10_to_concepts, value)
            if knowledge.icd10_not_to_concepts:
                left_out += icd10_lookup(knowledge.icd10_not_to_concepts, value)
                found = [c for c in found if c not in left_out]
        else:
            kind, found = "", []
        for name in found:
            (history if _history_code(knowledge, kind, name, value) else concepts).append(name)
        indication = indication or coded_indication(knowledge, coding)
    history_only = bool(history) and not concepts
    concepts += history
    by_name = False
    if not concepts and indication is None:
        concepts, history_only = _concepts_by_name(knowledge, _condition_texts(code))
        concepts = [c for c in concepts if c not in left_out]
        by_name = bool(concepts)
    if not concepts and indication is None:
        return
    clinical = [c.get("code") for c in codings(condition.get("clinicalStatus"))]
    if clinical:
        active = any(c in _ACTIVE_CLINICAL for c in clinical)
    else:
        active = not (condition.get("abatementDateTime") or condition.get("abatementPeriod")
                      or condition.get("abatementString") or condition.get("abatementAge"))
    if history_only:
        active = False              # "history of ...": history, whatever the clinical status says
    onset = parse_date(condition.get("onsetDateTime")) or parse_date(condition.get("recordedDate"))
    display = (code or {}).get("text") or next((c.get("display") for c in codings(code) if c.get("display")), "condition")
    abatement = parse_date(condition.get("abatementDateTime")) or parse_date(
        (condition.get("abatementPeriod") or {}).get("end") if isinstance(condition.get("abatementPeriod"), dict) else None)
    facts.conditions.append(ConditionFact(tuple(dict.fromkeys(concepts)), indication, active, onset, str(display),
                                          abatement, by_name))


def _history_code(knowledge: Knowledge, kind: str, concept: str, value: str) -> bool:
    """Is this code one of the concept's "history of" codes (history_snomed / history_icd10)?"""
    history = knowledge.history_concept_codes
    if not history or not kind:
        return False
    if kind == "snomed":
        return ("snomed", concept, value) in history
    plain = value.upper().replace(".", "")
    return any(("icd10", concept, candidate) in history
               for n in range(len(plain), 2, -1)
               for candidate in (plain[:n], plain[:3] + "." + plain[3:n] if n > 3 else plain[:3]))


def _condition_texts(code) -> list[str]:
    """The words a Condition is written with: its text and every coding's display, lower-cased."""
    texts = []
    if isinstance(code, dict) and isinstance(code.get("text"), str):
        texts.append(code["text"].lower())
    for coding in codings(code):
        display = coding.get("display")
        if isinstance(display, str) and display.lower() not in texts:
            texts.append(display.lower())
    return texts


def _concepts_by_name(knowledge: Knowledge, texts: list[str]) -> tuple[list[str], bool]:
    """(concepts named in these texts, whether the texts say it is history), the last resort of decision 16.

    A concept is named by a whole word or phrase of its ``names``; the texts must hold none of its
    ``exclude_words`` and none of the shared ``[condition_text.*]`` exclusions (family history, suspected,
    screening, risk of, ruled out ...). The shared ``history_words`` ("history of", "previous") make it history."""
    if not texts or not knowledge.concept_name_words:
        return [], False
    if not any(any_word(text, knowledge.concept_name_words) for text in texts):
        return [], False
    shared = getattr(knowledge.rules, "condition_text", {}) or {}
    for words in shared.values():
        if any(any_word(text, words.exclude_words, *WORD_START) for text in texts):
            return [], False
    found = [name for name, names, exclude in knowledge.concept_names
             if any(any_word(text, names) for text in texts)
             and not any(any_word(text, exclude, *WORD_START) for text in texts)]
    history = bool(found) and any(any_word(text, words.history_words, *WORD_START)
                                  for words in shared.values() for text in texts)
    return found, history


def is_icd10(system: str) -> bool:
    system = system.lower()
    return "icd-10" in system or "icd10" in system


def coded_indication(knowledge: Knowledge, coding: dict) -> str | None:
    """The indication id (cards/indications*.toml) one SNOMED CT or ICD-10 coding names, if any."""
    value, system = str(coding.get("code") or "").strip(), str(coding.get("system") or "").lower()
    if "snomed" in system:
        return knowledge.snomed_to_indication.get(value)
    if is_icd10(system):
        found = icd10_lookup(knowledge.icd10_to_indication, value)
        return found[0] if found else None
    return None


def icd10_lookup(index: dict, code: str) -> list:
    """ICD-10 codes match themselves or any parent: A15.0 and A150 both match A15."""
    plain = code.upper().strip().replace(".", "")
    found: list = []
    for n in range(len(plain), 2, -1):
        for candidate in {plain[:n], plain[:3] + "." + plain[3:n] if n > 3 else plain[:3]}:
            hit = index.get(candidate)
            if hit:
                found.extend(h for h in (hit if isinstance(hit, list) else [hit]) if h not in found)
    return found


MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")


def read_medications(knowledge: Knowledge, record: PatientRecord) -> list[MedicationFact]:
    """Every medication request and statement of the record, recognised (entered in error or cancelled: left out)."""
    found = []
    for kind in MEDICATION_TYPES:
        for resource in record.resources(kind):
            fact = medication_fact(knowledge, resource)
            if fact is not None:
                found.append(fact)
    return found


def medication_fact(knowledge: Knowledge, resource: dict) -> MedicationFact | None:
    """One MedicationRequest or MedicationStatement, recognised (None if entered in error or cancelled)."""
    kind = resource.get("resourceType")
    status = resource.get("status")
    if status in _BAD_STATUS:
        return None
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, str):            # a bare name where R4 wants a CodeableConcept: unambiguous, read it
        concept = {"text": concept}
    elif not isinstance(concept, dict):
        concept = None
    medication = drugmod.contained_medication(resource)
    match = drugmod.recognise(knowledge, concept, medication, drugmod.route_hint(resource))
    if kind == "MedicationRequest":
        # a draft is an order being decided on (the hook's draftOrders), not a medication the patient takes
        active = status in ("active", "on-hold") and resource.get("intent") != "proposal"
        start = parse_date(resource.get("authoredOn"))
        dispense = resource.get("dispenseRequest")
        period = dispense.get("validityPeriod") if isinstance(dispense, dict) else None
    else:
        active = status in ("active", "intended")
        start = parse_date(resource.get("effectiveDateTime"))
        period = resource.get("effectivePeriod")
    period = period if isinstance(period, dict) else {}
    concepts = (concept, (medication or {}).get("code"))
    codes = tuple((drugmod.system_kind(c.get("system")) or str(c.get("system") or ""), str(c.get("code") or "").strip())
                  for cc in concepts for c in codings(cc))
    display = next((cc["text"] for cc in concepts if isinstance(cc, dict) and isinstance(cc.get("text"), str)
                    and cc["text"]), None) or next(
        (c.get("display") for cc in concepts for c in codings(cc) if c.get("display")), None) or (
        match.entry.display if match else "medication")
    return MedicationFact(match, str(display), active, start or parse_date(period.get("start")), codes, kind,
                          resource.get("id"), str(status or ""), parse_date(period.get("end")))


def build_facts(knowledge: Knowledge, record: PatientRecord, patient_id: str, today: date,
                medications: list[MedicationFact] | None = None) -> PatientFacts:
    """Reduce the completed prefetch to PatientFacts (one pass per resource list).

    ``medications``: ``read_medications`` of the same record, if the caller has read them already."""
    facts = PatientFacts(today=today, patient_id=patient_id, unavailable=dict(record.unavailable),
                         gaps=dict(record.gaps))
    for resource in record.resources("Patient"):
        _read_patient(facts, resource)
        break
    _read_labs(facts, knowledge, record)
    for condition in record.resources("Condition"):
        _read_condition(facts, knowledge, condition)
    facts.medications = read_medications(knowledge, record) if medications is None else medications
    from cds_service.hepatic import read_child_pugh
    facts.child_pugh = read_child_pugh(knowledge, record, today)
    from cds_service.coded_records import read_records
    facts.records = read_records(knowledge, record)
    from cds_service.safety_facts import read_safety_facts
    read_safety_facts(facts, knowledge, record)
    return facts


# -- renal function (decision 8) ----------------------------------------------
# CrCl and eGFR are kept apart: an eGFR (indexed to 1.73 m2, another equation) is never used as a creatinine
# clearance, and a clearance is never used as an eGFR. A value read in a unit that is not quite its own (finding 28:
# an eGFR in plain mL/min, a measured clearance per 1.73 m2) carries the knowledge's note into the text shown.

def _shown(value: LabValue) -> str:
    from cds_service.rules.text import lab  # rules.text imports this module
    return lab(value, code=True)


def creatinine_clearance(facts: PatientFacts, knowledge: Knowledge) -> Derived:
    """Measured CrCl if reported, else Cockcroft-Gault from latest creatinine (<= 90 days) and weight.

    When it cannot be computed and an eGFR is on record, the gap names that eGFR (it was seen, and is not a
    creatinine clearance), so a CrCl rule never reads the eGFR as the clearance nor the patient as normal."""
    max_days = knowledge.analytes["creatinine"].max_age_days
    measured = facts.latest("crcl", knowledge.analytes["crcl"].max_age_days)
    if measured:
        return Derived(measured.value, f"measured creatinine clearance {_shown(measured)}", measured.when)
    creat = facts.latest("creatinine", max_days)
    weight = facts.latest("weight", knowledge.analytes["weight"].max_age_days)
    gaps = []
    if creat is None:
        gaps.append(f"no serum creatinine in the last {max_days} days")
    if weight is None:
        gaps.append(f"no body weight in the last {knowledge.analytes['weight'].max_age_days} days")
    if facts.age is None:
        gaps.append("no date of birth")
    if facts.sex is None:
        gaps.append("sex not recorded as female or male")
    if gaps:
        reported = facts.latest("egfr", knowledge.analytes["egfr"].max_age_days)
        if reported is not None:
            # one clause with the first gap (not a clause of its own), so a card that lists that gap keeps it
            gaps[0] += (f" (an eGFR is on record, {_shown(reported)}, but an eGFR is not a creatinine clearance"
                        f" and is not used as one)")
        return Derived(None, "Cockcroft-Gault", None, "; ".join(gaps))
    if creat.value <= 0 or weight.value <= 0:
        return Derived(None, "Cockcroft-Gault", None, "creatinine or weight is zero")
    value = cockcroft_gault(facts.age, weight.value, creat.value, facts.sex == "female")
    return Derived(value, f"Cockcroft-Gault (creatinine {creat.reported_value:g} {creat.reported_unit} on "
                          f"{creat.when.isoformat()}, weight {weight.value:.0f} kg, age {facts.age})", creat.when)


def egfr(facts: PatientFacts, knowledge: Knowledge) -> Derived:
    """eGFR for a rule stated in eGFR: CKD-EPI 2021 from the latest serum creatinine (<= 90 days; decision 8).

    A laboratory-reported eGFR is used, and named with its code and how it was read, when there is no such
    creatinine, when it is newer than the latest creatinine (the creatinine it was made from is not in the
    record), or when CKD-EPI cannot be computed from a creatinine of the same day (decision 16). A reported eGFR
    older than the latest creatinine is never preferred to it: if CKD-EPI cannot be computed, the gap says so and
    shows both."""
    days = knowledge.analytes["creatinine"].max_age_days
    reported = facts.latest("egfr", knowledge.analytes["egfr"].max_age_days)
    creat = facts.latest("creatinine", days)

    def named(why: str) -> Derived:
        return Derived(reported.value, f"laboratory-reported eGFR {_shown(reported)}, {why}", reported.when)

    if creat is None:
        if reported is not None:
            return named(f"used because there is no serum creatinine in the last {days} days")
        return Derived(None, "CKD-EPI 2021", None, f"no eGFR or serum creatinine in the last {days} days")
    creat_text = f"{creat.reported_value:g} {creat.reported_unit} on {creat.when.isoformat()}"
    if reported is not None and reported.when > creat.when:
        return named(f"newer than the latest serum creatinine ({creat_text})")
    problem = ("age or sex not recorded" if facts.age is None or facts.sex is None
               else "creatinine is zero" if creat.value <= 0 else None)
    if problem:
        if reported is not None and reported.when == creat.when:
            return named(f"used because CKD-EPI 2021 could not be computed from the creatinine of that day ({problem})")
        older = (f"; the laboratory-reported eGFR {_shown(reported)} is older than that creatinine and is not used"
                 if reported is not None else "")
        return Derived(None, "CKD-EPI 2021", None,
                       f"CKD-EPI 2021 could not be computed from the serum creatinine {creat_text}: {problem}{older}")
    value = ckd_epi_2021(facts.age, creat.value, facts.sex == "female")
    seen = (f"; the laboratory-reported eGFR {_shown(reported)} is not newer than this creatinine and is not used"
            if reported is not None else "")
    return Derived(value, f"CKD-EPI 2021 (creatinine {creat_text}){seen}", creat.when)


def today_from(setting: str | None) -> date:
    if setting:
        return date.fromisoformat(setting)
    return datetime.utcnow().date()
