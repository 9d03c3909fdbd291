"""Evidence readers shared by several rule families (one place, so no family imports another).

- conditions of a concept that count (active, or history within a window);
- current medicines of a drug class;
- the PRAC 2022 risk factors of the patient (decision 7), read once per hook call: the PRAC card shows them
  and the dose rules need to know whether a lower-risk dose applies;
- the draft order rewritten to another dose (the edit a dose suggestion proposes);
- why a lab value is missing (the wording the threshold, dose and screening rules share, so their gaps merge);
- whether an immunization is a live vaccine.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

from cds_service import i18n
from cds_service.facts import ConditionFact, ImmunizationFact, MedicationFact, PatientFacts
from cds_service.findings import Finding, Indicator
from cds_service.i18n import say
from cds_service.knowledge import Knowledge
from cds_service.knowledge.schemas.contraindication import LiveVaccines
from cds_service.knowledge.schemas.prac import PracFactor
from cds_service.knowledge.textmatch import any_word
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.text import lab, mg, phase_name

UCUM = "http://unitsofmeasure.org"


class _Noted(Protocol):
    """A knowledge rule with an optional note (where sources disagree)."""

    @property
    def note(self) -> str | None: ...

    @property
    def sources(self) -> Sequence[str]: ...

    @property
    def override_set(self) -> str | None: ...


def on_record_finding(
    rule: _Noted,
    order: DraftOrder,
    *,
    rule_id: str,
    concern: str,
    indicator: Indicator,
    summary: str,
    lines: list[str],
    action: str,
    covers: tuple[str, ...] = (),
) -> Finding:
    """The card of a rule that found something on record: the summary, "**On record:**" with one line per piece
    of evidence, the rule's action and its note (where sources disagree)."""
    listed = "\n".join(f"- {line}" for line in lines)
    note = "\n\n" + say("**Note:** {note}", note=rule.note) if rule.note else ""
    return Finding(
        rule_id=rule_id,
        concern=concern,
        indicator=indicator,
        summary=summary[:1].upper() + summary[1:],
        detail=say("**On record:**") + f"\n{listed}\n\n{action}{note}",
        sources=list(rule.sources),
        override_set=rule.override_set,
        order_id=order.order_id,
        drug=order.drug,
        covers=covers,
    )


def condition_evidence(ctx: RuleContext, concepts: list[str], history_within_days: int | None) -> list[str]:
    """Conditions of these concepts that count: active ones, and history if the concept allows it."""
    k, facts = ctx.knowledge, ctx.facts
    found: list[str] = []
    seen: set[int] = set()
    for name in concepts:
        concept = k.concepts[name]
        for cond in facts.concept_present(name):
            if id(cond) in seen:
                continue
            text = _condition_text(cond, facts, concept.active_only, history_within_days, concept.stale_after_days)
            if text:
                seen.add(id(cond))
                found.append(text)
    return found


def _condition_text(
    cond: ConditionFact, facts: PatientFacts, active_only: bool, window: int | None, stale_after_days: int | None = None
) -> str | None:
    since = say("since {onset}", onset=cond.onset) if cond.onset else say("onset not recorded")
    how = cond.how  # "; recognised by name" when read from the text (decision 16)
    if cond.active:
        age = (facts.today - cond.onset).days if cond.onset else None
        stale = ""
        if stale_after_days is not None and age is not None and age > stale_after_days:
            stale = say(
                " — still recorded as active {duration} after its onset: confirm it has resolved and update "
                "the problem list, or treat it as current",
                duration=_duration(age),
            )
        return say("{condition} (active, {since}{how})", condition=cond.display, since=since, how=how) + stale
    if active_only:
        return None
    last = max((d for d in (cond.abatement, cond.onset) if d), default=None)
    resolved = say(", resolved {when}", when=cond.abatement) if cond.abatement else ""
    if window is None or (last is not None and (facts.today - last).days <= window):
        return say(
            "{condition} (history, {since}{resolved}{how})",
            condition=cond.display,
            since=since,
            resolved=resolved,
            how=how,
        )
    if last is None:
        return say(
            "{condition} (history; dates not recorded, so it cannot be placed outside the window{how})",
            condition=cond.display,
            how=how,
        )
    return None


def _duration(days: int) -> str:
    if days >= 730:
        return say("{n} years", n=days // 365)
    return say("{n} months", n=days // 30) if days >= 60 else say("{n} days", n=days)


def class_evidence(ctx: RuleContext, class_ids: list[str]) -> list[str]:
    classes = ctx.knowledge.rules.drug_class
    found: dict[
        tuple[str, str], list[MedicationFact]
    ] = {}  # (medicine, class) -> its active records (re-orders: one line)
    for med in ctx.facts.medications:
        if not med.active:
            continue
        for class_id in class_ids:
            if classes[class_id].contains(med.display, med.codes):
                found.setdefault((med.display, class_id), []).append(med)
                break
    lines = []
    for (display, class_id), meds in found.items():
        starts = sorted(m.start for m in meds if m.start)
        kinds = "/".join(dict.fromkeys(m.resource_type for m in meds))
        since = say(", since {start}", start=starts[0]) if starts else ""
        records = say(", {n} active records", n=len(meds)) if len(meds) > 1 else ""
        lines.append(
            say(
                "{medicine} ({drug_class}; active {records}{since}{count})",
                medicine=display,
                drug_class=classes[class_id].display,
                records=kinds,
                since=since,
                count=records,
            )
        )
    return lines


def bmi(ctx: RuleContext) -> tuple[float | None, str]:
    """BMI reported (LOINC 39156-5) or computed from the latest weight and height; and how it was obtained."""
    k, facts = ctx.knowledge, ctx.facts
    reported = facts.latest("bmi", k.analytes["bmi"].max_age_days)
    weight = facts.latest("weight", k.analytes["weight"].max_age_days)
    height = facts.latest("height", k.analytes["height"].max_age_days)
    if reported and (weight is None or height is None or reported.when >= weight.when):
        return reported.value, say("BMI {bmi} kg/m² on {when}", bmi=i18n.fixed(reported.value, 1), when=reported.when)
    if weight and height and height.value > 0:
        value = weight.value / (height.value / 100) ** 2
        return value, say(
            "BMI {bmi} kg/m² from weight {weight} and height {height}",
            bmi=i18n.fixed(value, 1),
            weight=lab(weight),
            height=lab(height),
        )
    return None, say("no BMI, or weight and height, on record")


def factor_evidence(ctx: RuleContext, factor: PracFactor) -> tuple[list[str], str | None]:
    """(evidence lines, a note on data that is not recorded)."""
    facts = ctx.facts
    if factor.age_at_least is not None:
        if facts.age is None:
            return [], say("age: no usable date of birth")
        if facts.age >= factor.age_at_least:
            return [say("age {age}", age=facts.age)], None
        if facts.age_max is not None and facts.age_max >= factor.age_at_least:
            return [], say("age: the birth date is partial, the patient may be {age}", age=float(factor.age_at_least))
        return [], None
    if factor.smoking and factor.smoking_test:  # PracFactor: smoking needs smoking_test
        results = facts.coded_results.get(factor.smoking_test) or []
        if not results:
            return [], say("smoking status: not recorded")
        newest = results[0]
        when = i18n.day(newest.when) if newest.when else say("date not recorded")
        if newest.category in factor.smoking:
            return [say("smoking status '{answer}' on {when}", answer=newest.answer, when=when)], None
        if newest.category is None:
            return [], say("smoking status: '{answer}' on {when} could not be read", answer=newest.answer, when=when)
        if newest.category == "unknown":
            return [], say("smoking status: recorded as unknown on {when}", when=when)
        return [], None
    if factor.bmi_at_least is not None:
        value, how = bmi(ctx)
        if value is not None:
            return ([how] if value >= factor.bmi_at_least else []), None
        recorded = condition_evidence(ctx, factor.concepts, factor.history_within_days) if factor.concepts else []
        return recorded, (None if recorded else f"BMI: {how}")
    if factor.concepts:
        return condition_evidence(ctx, factor.concepts, factor.history_within_days), None
    if factor.medication_classes:
        return class_evidence(ctx, factor.medication_classes), None
    if factor.procedure_snomed:
        return procedure_evidence(ctx, factor)
    return [], None


def procedure_evidence(ctx: RuleContext, factor: PracFactor) -> tuple[list[str], str | None]:
    """Procedures of the factor's codes performed in the last ``procedure_within_days`` days (recent major
    surgery); a note when the procedure list could not be obtained or a matching one has no date."""
    facts = ctx.facts
    found: list[str] = []
    notes: list[str] = []
    seen: set[tuple[str, object]] = set()
    for code in factor.procedure_snomed:
        for record in facts.records.get(f"snomed|{code}", ()):
            if record.resource_type != "Procedure" or (record.display, record.when) in seen:
                continue
            seen.add((record.display, record.when))
            if record.when is None:
                notes.append(
                    say(
                        "{factor}: '{record}' (SNOMED CT {code}) has no date",
                        factor=factor.display,
                        record=record.display,
                        code=code,
                    )
                )
                continue
            ago = (facts.today - record.when).days
            if 0 <= ago <= (factor.procedure_within_days or 0):  # PracFactor: set with procedure_snomed
                found.append(
                    say(
                        "{record} (SNOMED CT {code}) on {when}, {days} days ago",
                        record=record.display,
                        code=code,
                        when=record.when,
                        days=ago,
                    )
                )
    why = facts.why_unavailable("Procedure", factor.procedure_snomed)
    if why:
        notes.append(say("{factor}: the procedure list could not be obtained ({why})", factor=factor.display, why=why))
    return found, "; ".join(notes) or None


def prac_risk_factors(ctx: RuleContext) -> tuple[dict[str, list[tuple[PracFactor, list[str]]]], list[str]]:
    """({"prac": [(factor, evidence)], "vte": [...]}, notes on data not recorded), read once per hook call."""
    cached = ctx.memo.get("prac_risk_factors")
    if cached is None:
        found: dict[str, list[tuple[PracFactor, list[str]]]] = {"prac": [], "vte": []}
        not_recorded: list[str] = []
        for factor in ctx.knowledge.rules.prac_factor:
            evidence, note = factor_evidence(ctx, factor)
            if evidence:
                found[factor.group].append((factor, evidence))
            if note:
                not_recorded.append(note)
        cached = ctx.memo["prac_risk_factors"] = (found, not_recorded)
    return cached


# -- the corrected order --------------------------------------------------------


def corrected_order(
    order: DraftOrder, dose_mg: float, per_day: float, phase: str | None = None, modified_release: bool | None = None
) -> dict[str, Any]:
    """The draft MedicationRequest with dose and frequency replaced (for an update action).

    The induction/maintenance word is kept so the corrected order is judged in the same phase; the
    prolonged-release form is kept only when ``modified_release`` (default: the order's own form) says so
    (e.g. tofacitinib 11 mg XR -> 5 mg once daily is an immediate-release tablet)."""
    if modified_release is None:
        modified_release = order.match.modified_release
    resource = copy.deepcopy(order.resource)
    dosages = resource.get("dosageInstruction")
    if isinstance(dosages, dict):
        dosages = [dosages]
    if not isinstance(dosages, list) or not dosages or not isinstance(dosages[0], dict):
        dosages = [{}]
    dosage = dict(dosages[0])
    form = " prolonged-release" if modified_release else ""
    dosage["text"] = f"{order.name}{form} {mg(dose_mg, per_day)}" + (f" ({phase_name(phase)})" if phase else "")
    dosage["timing"] = {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}
    dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}]
    resource["dosageInstruction"] = [dosage, *list(dosages[1:])]
    strength = order.match.strength_mg
    if strength is not None and strength != dose_mg and "medicationCodeableConcept" in resource:
        # the coded product no longer matches the dose: keep the ingredient, drop the strength-specific code
        concept = resource["medicationCodeableConcept"]
        codings = [
            c
            for c in (concept.get("coding") or [])
            if isinstance(c, dict) and "rxnorm" not in str(c.get("system", "")).lower()
        ]
        new_concept: dict[str, object] = {"text": f"{order.name}{form} {dose_mg:g} mg"}
        if codings:
            new_concept["coding"] = codings
        resource["medicationCodeableConcept"] = new_concept
    return resource


def missing_reason(facts: PatientFacts, knowledge: Knowledge, analyte: str, max_days: int) -> str:
    """Why there is no usable value: unavailable data, uninterpretable, stale, or none."""
    bad = facts.unreadable_within(analyte, max_days)
    values = facts.labs.get(analyte)
    if bad:
        if bad[0].when:
            return say("the result of {when} could not be interpreted: {why}", when=bad[0].when, why=bad[0].why)
        return say("the result could not be interpreted: {why}", why=bad[0].why)
    if values:
        return say("the latest result ({result}) is older than {days} days", result=lab(values[0]), days=max_days)
    why = facts.why_unavailable("Observation", knowledge.analytes[analyte].loinc)
    if why:
        return say("lab results could not be obtained: {why}", why=why)
    return say("no result in the last {days} days", days=max_days)


def is_live_vaccine(imm: ImmunizationFact | MedicationFact, vaccines: LiveVaccines) -> bool:
    """Is this immunization (or a drafted medicine) a live vaccine of the ``[live_vaccine.*]`` list (CVX, ATC, or by name)?"""
    for system, code in imm.codes:
        s = system.lower()
        if "cvx" in s and code in vaccines.cvx:
            return True
        if (
            ("atc" in s or "whocc" in s)
            and code.upper().startswith(vaccines.atc)
            and not code.upper().startswith(vaccines.atc_not)
        ):
            return True
    return any_word(imm.display.lower(), vaccines.names)
