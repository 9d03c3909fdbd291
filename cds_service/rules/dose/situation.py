"""Does a dose rule apply to this patient and order? The patient's situation read against the rule's ``when``
(age, weight, kidney and liver function, conditions, interacting medicines, new start), and the limit an applying
rule sets (``Applied``). Data a rule needs but cannot read is collected as missing, never read as normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_service.fhir.values import codings
from cds_service.i18n import day, fixed, number, say
from cds_service.knowledge import drugs as drugmod
from cds_service.knowledge.schemas.dose import DoseRule
from cds_service.rules.common import missing_reason
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.text import lab, phase_name

EPS = 1e-9
_ADULT_FORMULAS = ("Cockcroft-Gault", "CKD-EPI")  # how cds_service.facts names a computed CrCl / eGFR

Dose = tuple[float, float]  # (mg per dose, doses a day): a limit's are whole, an order's as written


def daily(dose: Dose) -> float:
    return dose[0] * dose[1]


# -- the patient's situation ----------------------------------------------------


@dataclass
class Check:
    holds: bool = True
    evidence: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (what could not be checked, why)
    phase_unknown: bool = False

    def fail(self) -> Check:
        self.holds = False
        return self


def _band(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low - EPS) and (high is None or value < high - EPS)


def _band_text(low: float | None, high: float | None) -> str:
    """An age band in years."""
    if low is not None and high is not None:
        return say("{low}-<{high} years", low=number(low), high=number(high))
    return say(">= {low} years", low=number(low)) if low is not None else say("< {high} years", high=number(high or 0))


def _co_ordered(ctx: RuleContext) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(display, codes) of the other draft MedicationRequests of this request (not JAK inhibitors)."""
    jaki_ids = {o.order_id for o in ctx.orders}
    out = []
    for resource in ctx.draft_resources:
        if (
            not isinstance(resource, dict)
            or resource.get("resourceType") != "MedicationRequest"
            or str(resource.get("id")) in jaki_ids
        ):
            continue
        concept = resource.get("medicationCodeableConcept")
        if drugmod.recognise(ctx.knowledge, concept) is not None:
            continue
        coding = codings(concept)
        codes = tuple((drugmod.system_kind(c.get("system")) or "", str(c.get("code") or "")) for c in coding)
        display = (concept or {}).get("text") or next((c.get("display") for c in coding if c.get("display")), "")
        if display or codes:
            out.append((say("{medicine} (ordered now)", medicine=display or say("medicine")), codes))
    return out


def interacting_medications(ctx: RuleContext, class_id: str) -> list[str]:
    """Displays of the patient's active (or co-ordered) medications that belong to an interacting class."""
    entry = ctx.knowledge.rules.interacting_class[class_id]
    candidates = [
        (m.display + (say(" (since {start})", start=m.start) if m.start else ""), m.display, m.codes)
        for m in ctx.facts.medications
        if m.active and m.drug is None
    ]
    candidates += [(display, display, codes) for display, codes in _co_ordered(ctx)]
    return [shown for shown, display, codes in candidates if entry.contains(display, codes)]


def evaluate_when(rule: DoseRule, ctx: RuleContext, order: DraftOrder, phase: str | None) -> Check:
    """Does the rule's situation hold for this patient and order? Missing data is collected, not guessed."""
    when, facts, k = rule.when, ctx.facts, ctx.knowledge
    out = Check()
    if when.formulation is not None and (when.formulation == "modified_release") != order.match.modified_release:
        return out.fail()
    if when.phase is not None:
        if phase is None:
            out.phase_unknown = True
        elif phase != when.phase:
            return out.fail()
        else:
            out.evidence.append(say("{phase} order", phase=phase_name(phase)))
    if when.age_at_least is not None or when.age_below is not None:
        if facts.age is None:
            out.missing.append((say("age-based dose"), say("no date of birth on record")))
        else:
            young, old = facts.age, facts.age_max if facts.age_max is not None else facts.age  # age_max: set with age
            if _band(young, when.age_at_least, when.age_below) != _band(old, when.age_at_least, when.age_below):
                out.missing.append(
                    (
                        say("age-based dose"),
                        say(
                            "the recorded birth date is partial, so the age band {band} cannot be confirmed",
                            band=_band_text(when.age_at_least, when.age_below),
                        ),
                    )
                )
            elif not _band(young, when.age_at_least, when.age_below):
                return out.fail()
            else:
                out.evidence.append(say("age {age} years", age=str(young)))
    if when.weight_at_least_kg is not None or when.weight_below_kg is not None:
        days = k.analytes["weight"].max_age_days
        weight = facts.latest("weight", days)
        if weight is None:
            out.missing.append((say("body weight for the weight-based dose"), missing_reason(facts, k, "weight", days)))
        elif not _band(weight.value, when.weight_at_least_kg, when.weight_below_kg):
            return out.fail()
        else:
            shown = lab(weight) if weight.reported_unit == "kg" else f"{fixed(weight.value)} kg ({lab(weight)})"
            out.evidence.append(say("body weight {weight}", weight=shown))
    for metric, low, high, label, unit in (
        ("crcl", when.crcl_at_least, when.crcl_below, say("creatinine clearance"), "mL/min"),
        ("egfr", when.egfr_at_least, when.egfr_below, "eGFR", "mL/min/1.73 m²"),
    ):
        if low is None and high is None:
            continue
        derived = getattr(ctx, metric)
        if derived.value is None:
            out.missing.append(
                (
                    say("renal dose ({label})", label=label),
                    derived.missing or say("renal function could not be computed"),
                )
            )
        elif not _band(derived.value, low, high):
            return out.fail()
        else:
            dated = derived.when is not None and day(derived.when) not in derived.method
            method = derived.method + (say(" on {date}", date=derived.when) if dated else "")
            if facts.age is not None and facts.age < 18 and derived.method.startswith(_ADULT_FORMULAS):
                method += say("; an adult formula in a patient under 18: confirm with a measured clearance")
            out.evidence.append(f"{label} {fixed(derived.value, 0)} {unit}, {method}")
    if when.condition is not None:
        present = [c for c in facts.concept_present(when.condition) if c.active]
        if present:
            out.evidence.append(
                "; ".join(
                    c.display
                    + (
                        say(" (since {onset}{how})", onset=c.onset, how=c.how)
                        if c.onset
                        else f" ({c.how[2:]})"
                        if c.how
                        else ""
                    )
                    for c in present
                )
            )
        else:
            why = facts.why_unavailable("Condition")
            if why:
                out.missing.append(
                    (
                        k.concepts[when.condition].display,
                        say("the patient's conditions could not be obtained: {why}", why=why),
                    )
                )
            else:
                return out.fail()
    if when.child_pugh:
        child_pugh = facts.child_pugh
        if child_pugh is None or child_pugh.klass not in when.child_pugh:
            return out.fail()  # not recorded is not reported as a gap (see cards/hepatic-child-pugh.toml)
        out.evidence.append(child_pugh.describe())
    if when.interacting:
        for class_id in when.interacting:
            meds = interacting_medications(ctx, class_id)
            display = k.rules.interacting_class[class_id].display
            if meds:
                out.evidence.append(f"{display}: {', '.join(meds)}")
                continue
            why = facts.why_medications_unavailable()
            if why:
                out.missing.append(
                    (say("interacting medicines"), say("the medication list could not be obtained: {why}", why=why))
                )
            else:
                return out.fail()
    if when.new_start is not None:
        continuing = [
            m
            for m in facts.medications
            if m.active and m.drug is not None and m.drug.drug_id == order.drug and m.resource_id != order.order_id
        ]
        if when.new_start and continuing:
            return out.fail()
        if not when.new_start and not continuing:
            return out.fail()
        why = facts.why_medications_unavailable()
        out.evidence.append(
            say("new start of {drug}", drug=order.name)
            + (
                say(" (assumed: the medication list could not be obtained: {why})", why=why)
                if why and not continuing
                else ""
            )
        )
    return out


# -- a rule that applies, and its limit -------------------------------------------


@dataclass
class Applied:
    rule: DoseRule
    check: Check
    note: str | None = None
    dose: Dose | None = None  # the limit; a cap's is its max_mg x per_day, a halving's is worked out

    def __post_init__(self) -> None:
        if self.dose is None:
            self.dose = self.rule.limit

    @property
    def cap(self) -> float | None:
        return None if self.dose is None else daily(self.dose)

    @property
    def limit(self) -> Dose:
        """The limit of a rule that has one: a cap, or a halving once worked out (``evaluate_order``)."""
        if self.dose is None:
            raise ValueError(f"dose rule {self.rule.id} has no limit here")
        return self.dose

    @property
    def limit_daily(self) -> float:
        return daily(self.limit)
