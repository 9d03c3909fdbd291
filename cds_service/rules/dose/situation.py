"""Does a dose rule apply to this patient and order? The patient's situation read against the rule's ``when``
(age, weight, kidney and liver function, conditions, interacting medicines, new start), and the limit an applying
rule sets (``Applied``). Data a rule needs but cannot read is collected as missing, never read as normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_service.fhir.values import codings
from cds_service.knowledge import drugs as drugmod
from cds_service.knowledge.schemas.dose import DoseRule
from cds_service.rules.common import missing_reason
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.text import lab

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


def _band_text(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low:g}-<{high:g} {unit}"
    return f">= {low:g} {unit}" if low is not None else f"< {high:g} {unit}"


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
            out.append((f"{display or 'medicine'} (ordered now)", codes))
    return out


def interacting_medications(ctx: RuleContext, class_id: str) -> list[str]:
    """Displays of the patient's active (or co-ordered) medications that belong to an interacting class."""
    entry = ctx.knowledge.rules.interacting_class[class_id]
    candidates = [
        (m.display + (f" (since {m.start.isoformat()})" if m.start else ""), m.display, m.codes)
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
            out.evidence.append(f"{phase} order")
    if when.age_at_least is not None or when.age_below is not None:
        if facts.age is None:
            out.missing.append(("age-based dose", "no date of birth on record"))
        else:
            young, old = facts.age, facts.age_max if facts.age_max is not None else facts.age  # age_max: set with age
            if _band(young, when.age_at_least, when.age_below) != _band(old, when.age_at_least, when.age_below):
                out.missing.append(
                    (
                        "age-based dose",
                        "the recorded birth date is partial, so the age band "
                        f"{_band_text(when.age_at_least, when.age_below, 'years')} cannot be confirmed",
                    )
                )
            elif not _band(young, when.age_at_least, when.age_below):
                return out.fail()
            else:
                out.evidence.append(f"age {young} years")
    if when.weight_at_least_kg is not None or when.weight_below_kg is not None:
        days = k.analytes["weight"].max_age_days
        weight = facts.latest("weight", days)
        if weight is None:
            out.missing.append(("body weight for the weight-based dose", missing_reason(facts, k, "weight", days)))
        elif not _band(weight.value, when.weight_at_least_kg, when.weight_below_kg):
            return out.fail()
        else:
            shown = lab(weight) if weight.reported_unit == "kg" else f"{weight.value:.1f} kg ({lab(weight)})"
            out.evidence.append(f"body weight {shown}")
    for metric, low, high, label, unit in (
        ("crcl", when.crcl_at_least, when.crcl_below, "creatinine clearance", "mL/min"),
        ("egfr", when.egfr_at_least, when.egfr_below, "eGFR", "mL/min/1.73 m²"),
    ):
        if low is None and high is None:
            continue
        derived = getattr(ctx, metric)
        if derived.value is None:
            out.missing.append((f"renal dose ({label})", derived.missing or "renal function could not be computed"))
        elif not _band(derived.value, low, high):
            return out.fail()
        else:
            dated = derived.when is not None and derived.when.isoformat() not in derived.method
            method = derived.method + (f" on {derived.when.isoformat()}" if dated else "")
            if facts.age is not None and facts.age < 18 and derived.method.startswith(_ADULT_FORMULAS):
                method += "; an adult formula in a patient under 18: confirm with a measured clearance"
            out.evidence.append(f"{label} {derived.value:.0f} {unit}, {method}")
    if when.condition is not None:
        present = [c for c in facts.concept_present(when.condition) if c.active]
        if present:
            out.evidence.append(
                "; ".join(
                    c.display
                    + (f" (since {c.onset.isoformat()}{c.how})" if c.onset else f" ({c.how[2:]})" if c.how else "")
                    for c in present
                )
            )
        else:
            why = facts.why_unavailable("Condition")
            if why:
                out.missing.append(
                    (k.concepts[when.condition].display, f"the patient's conditions could not be obtained: {why}")
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
                out.missing.append(("interacting medicines", f"the medication list could not be obtained: {why}"))
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
            f"new start of {order.name}"
            + (f" (assumed: the medication list could not be obtained: {why})" if why and not continuing else "")
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
