"""Dose rules: the licensed maximum for the order's indication and the lower doses a patient's situation calls
for (age, weight, kidney and liver function, interacting medicines, start vs continuation).

Reads ``[[dose]]`` (cards/rules/dose.toml), ``[[dose_halving]]`` and ``[interacting_class.*]``; the order's
induction/maintenance phase (``[dose_phase.*]``) is read with the order (``DraftOrder.phase``). For each draft
order every applicable entry is evaluated; the lowest applicable cap wins and ONE card per order (concern
``dose:<order id>``) lists every reason with the patient's values. Its suggestion edits the draft to that dose
and frequency (or, for "not recommended", removes the draft), so accepting it makes the same order pass on sign.
Data a rule needs but cannot read is reported as a ``Missing`` gap, never read as normal.

Halvings (decision 14, ``outcome = "halve"``) are caps too: the dose that otherwise applies (the lowest cap of the
order's indication, phase and patient, and the drug's ``otherwise`` doses) is stepped down along the drug's
``[[dose_halving]]`` steps once per halving group. When the order does not state its phase and the halved dose
depends on it, the lower (maintenance) dose is the limit and the card offers both corrections, each writing its
phase into the order.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from cds_service.fhir.values import codings
from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.knowledge import drugs as drugmod
from cds_service.knowledge.schemas.dose import DoseHalving, DoseRule
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.common import corrected_order, missing_reason, prac_risk_factors
from cds_service.rules.text import lab, mg, sentence

_EPS = 1e-9
_ADULT_FORMULAS = ("Cockcroft-Gault", "CKD-EPI")     # how cds_service.facts names a computed CrCl / eGFR


# -- the patient's situation ----------------------------------------------------

@dataclass
class Check:
    holds: bool = True
    evidence: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)    # (what could not be checked, why)
    phase_unknown: bool = False

    def fail(self) -> "Check":
        self.holds = False
        return self


def _band(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low - _EPS) and (high is None or value < high - _EPS)


def _band_text(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low:g}-<{high:g} {unit}"
    return f">= {low:g} {unit}" if low is not None else f"< {high:g} {unit}"


def _co_ordered(ctx: RuleContext) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(display, codes) of the other draft MedicationRequests of this request (not JAK inhibitors)."""
    jaki_ids = {o.order_id for o in ctx.orders}
    out = []
    for resource in ctx.draft_resources:
        if not isinstance(resource, dict) or resource.get("resourceType") != "MedicationRequest" \
                or str(resource.get("id")) in jaki_ids:
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
    candidates = [(m.display + (f" (since {m.start.isoformat()})" if m.start else ""), m.display, m.codes)
                  for m in ctx.facts.medications if m.active and m.drug is None]
    candidates += [(display, display, codes) for display, codes in _co_ordered(ctx)]
    return [shown for shown, display, codes in candidates if entry.contains(display, codes)]


def evaluate_when(rule: DoseRule, ctx: RuleContext, order: DraftOrder, phase: str | None) -> Check:
    """Does the rule's situation hold for this patient and order? Missing data is collected, not guessed."""
    when, facts, k = rule.when, ctx.facts, ctx.knowledge
    out = Check()
    if when.formulation is not None:
        if (when.formulation == "modified_release") != order.match.modified_release:
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
            low, high = facts.age, facts.age_max
            if _band(low, when.age_at_least, when.age_below) != _band(high, when.age_at_least, when.age_below):
                out.missing.append(("age-based dose", "the recorded birth date is partial, so the age band "
                                    f"{_band_text(when.age_at_least, when.age_below, 'years')} cannot be confirmed"))
            elif not _band(low, when.age_at_least, when.age_below):
                return out.fail()
            else:
                out.evidence.append(f"age {low} years")
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
            ("egfr", when.egfr_at_least, when.egfr_below, "eGFR", "mL/min/1.73 m²")):
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
            out.evidence.append("; ".join(c.display + (f" (since {c.onset.isoformat()}{c.how})" if c.onset else
                                                       f" ({c.how[2:]})" if c.how else "") for c in present))
        else:
            why = facts.why_unavailable("Condition")
            if why:
                out.missing.append((k.concepts[when.condition].display,
                                    f"the patient's conditions could not be obtained: {why}"))
            else:
                return out.fail()
    if when.child_pugh:
        child_pugh = facts.child_pugh
        if child_pugh is None or child_pugh.klass not in when.child_pugh:
            return out.fail()      # not recorded is not reported as a gap (see cards/hepatic-child-pugh.toml)
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
        continuing = [m for m in facts.medications if m.active and m.drug is not None
                      and m.drug.drug_id == order.drug and m.resource_id != order.order_id]
        if when.new_start and continuing:
            return out.fail()
        if not when.new_start and not continuing:
            return out.fail()
        why = facts.why_medications_unavailable()
        out.evidence.append(f"new start of {order.name}" + (
            f" (assumed: the medication list could not be obtained: {why})" if why and not continuing else ""))
    return out


# -- the dose that otherwise applies, halved (decision 14) ---------------------------

Dose = tuple[float, int]        # (mg per dose, doses a day)

_GROUP_TEXT = {"renal": "renal impairment", "hepatic": "hepatic impairment", "interaction": "interacting medicine"}


def _daily(dose: Dose) -> float:
    return dose[0] * dose[1]


@dataclass(frozen=True)
class Halved:
    """The halved limit worked out for one phase (None: stated by the order, or it makes no difference)."""

    phase: str | None
    base: Dose                       # the dose that otherwise applies
    base_reason: str
    path: tuple[Dose, ...]           # base -> ... -> limit, one step per halving group
    base_detail: str = ""            # an `otherwise` dose's detail and sources (a cap's are its rule's)
    base_sources: tuple[str, ...] = ()
    floor: bool = False              # a halving was due but the step keeps the dose (table.floor says why)
    fallback: bool = False           # no labelled step for the base: its daily dose was halved

    @property
    def limit(self) -> Dose:
        return self.path[-1]


@dataclass(frozen=True)
class Halving:
    table: DoseHalving
    groups: tuple[str, ...]
    results: tuple[Halved, ...]      # lowest first; two when the order's phase is not stated and matters
    risk_not_recorded: tuple[str, ...] = ()


def _halving_table(ctx: RuleContext, drug: str) -> DoseHalving:
    return next(h for h in ctx.knowledge.rules.dose_halving if h.drug == drug)   # checked at load


def _phase_matters(rules: list[DoseRule], table: DoseHalving) -> bool:
    return any(r.when.phase for r in rules if r.outcome == "cap") or any(o.phase for o in table.otherwise)


def _otherwise(ctx: RuleContext, order: DraftOrder, rules: list[DoseRule], table: DoseHalving,
               phase: str | None) -> tuple[Dose, str, str, tuple[str, ...]] | None:
    """The dose that otherwise applies in ``phase``: the lowest cap that holds (an unknown indication: the lowest
    of every indication, the conservative reading) and the table's ``otherwise`` doses that match."""
    candidates: list[tuple[Dose, str, str, tuple[str, ...]]] = []
    for rule in rules:
        if rule.outcome != "cap":
            continue
        if rule.indications and order.indication is not None and order.indication not in rule.indications:
            continue
        check = evaluate_when(rule, ctx, order, phase)
        if check.holds and not check.missing and not check.phase_unknown:
            candidates.append(((rule.max_mg, rule.per_day), rule.reason, "", ()))
    for other in table.otherwise:
        if other.indications and order.indication is not None and order.indication not in other.indications:
            continue
        if other.phase is not None and other.phase != phase:
            continue
        reason = other.reason
        if other.risk_groups:
            found, _ = prac_risk_factors(ctx)
            names = [f.display.split(" (")[0] for group in other.risk_groups for f, _ in found[group]]
            if not names:
                continue
            reason += f" ({', '.join(dict.fromkeys(names))})"
        candidates.append(((other.mg, other.per_day), reason, other.detail, tuple(other.sources)))
    if not candidates:
        return None
    return min(candidates, key=lambda c: (_daily(c[0]), c[0][1]))


def _step_down(table: DoseHalving, base: Dose, reason: str, times: int, phase: str | None, detail: str = "",
               sources: tuple[str, ...] = ()) -> Halved:
    path, current, floor, fallback = [base], base, False, False
    for _ in range(times):
        step = table.step_from(*current)
        if step is not None:
            lower = (step.to_mg, step.to_per_day)
        else:       # not in the table: halve the daily dose (twice daily -> once daily, else half the dose)
            fallback = True
            lower = (current[0], current[1] // 2) if current[1] % 2 == 0 else (current[0] / 2, current[1])
        if lower == current:
            floor = True
            break
        path.append(lower)
        current = lower
    return Halved(phase, base, reason, tuple(path), detail, sources, floor, fallback)


def _halving(ctx: RuleContext, order: DraftOrder, rules: list[DoseRule], halvings: list[Applied]) -> Halving | None:
    table = _halving_table(ctx, order.drug)
    groups = tuple(dict.fromkeys(a.rule.halving_group for a in halvings))
    phases = [order.phase] if order.phase is not None or not _phase_matters(rules, table) else \
        ["maintenance", "induction"]
    results = []
    for phase in phases:
        base = _otherwise(ctx, order, rules, table, phase)
        if base is not None:
            results.append(_step_down(table, *base[:2], len(groups), phase, *base[2:]))
    if not results:
        return None
    results.sort(key=lambda h: (_daily(h.limit), h.limit[1]))
    if len(results) == 2 and results[0].limit == results[1].limit:      # the phase makes no difference
        results = [replace(max(results, key=lambda h: _daily(h.base)), phase=None)]
    return Halving(table, groups, tuple(results), _risk_not_recorded(ctx, table, results, len(groups)))


def _risk_not_recorded(ctx: RuleContext, table: DoseHalving, results: list[Halved], times: int) -> tuple[str, ...]:
    """Risk data not recorded (smoking status, BMI ...) that would lower the halved dose if a risk factor were
    found: said on the card, not assumed."""
    risky = [o for o in table.otherwise if o.risk_groups]
    if not risky:
        return ()
    found, notes = prac_risk_factors(ctx)
    if not notes or any(found[g] for o in risky for g in o.risk_groups):
        return ()
    for h in results:
        for other in risky:
            lower = min(h.base, (other.mg, other.per_day), key=_daily)
            if _daily(_step_down(table, lower, "", times, h.phase).limit) < _daily(h.limit) - _EPS:
                return tuple(notes)
    return ()


def _halving_text(ctx: RuleContext, order: DraftOrder, halving: Halving) -> str:
    """What was halved from what, and why, for the card."""
    def one(h: Halved) -> str:
        steps = " → ".join(mg(*d) for d in h.path)
        text = f"{mg(*h.base)} ({h.base_reason})"
        text += f", halved: {steps}" if len(h.path) > 1 else f", not lowered further: {mg(*h.limit)}"
        return text + (f" — {h.base_detail.rstrip('.')}" if h.base_detail else "")

    table = halving.table
    reasons = "; ".join(_GROUP_TEXT[g] for g in halving.groups)
    lines = [f"**Halving (decision 14):** the dose that otherwise applies is halved once per reason ({reasons})."]
    if len(halving.results) == 1:
        lines.append(f"Dose that otherwise applies: {one(halving.results[0])}.")
    else:
        low, high = halving.results
        lines.append(f"The order does not say induction or maintenance, and the halved dose depends on it: "
                     f"{low.phase} {one(low)}; {high.phase} {one(high)}. It is checked against the {low.phase} dose "
                     f"(conservative reading: a {low.phase} order at the {high.phase} dose would exceed the "
                     f"exposure the label allows). If this is {high.phase} treatment, choose that correction: "
                     f"each suggestion writes its phase into the order.")
    if order.indication is None:
        lines.append("The indication is not recorded, so the lowest dose any indication allows is halved.")
    lines.append(table.detail)
    if len(halving.groups) > 1:
        lines.append(table.combination)
    if table.floor and any(h.floor for h in halving.results):
        lines.append(table.floor)
    if any(h.fallback for h in halving.results):
        lines.append("The dose that otherwise applies has no labelled halving step; its daily dose was halved.")
    if halving.risk_not_recorded:
        lines.append("Not recorded, so no lower-risk dose was assumed: " + "; ".join(halving.risk_not_recorded) + ".")
    return " ".join(lines)


# -- one card per order -----------------------------------------------------------

@dataclass
class Applied:
    rule: DoseRule
    check: Check
    note: str | None = None
    dose: Dose | None = None        # the limit; a cap's is its max_mg x per_day, a halving's is worked out

    def __post_init__(self) -> None:
        if self.dose is None and self.rule.max_mg is not None:
            self.dose = (self.rule.max_mg, self.rule.per_day)

    @property
    def cap(self) -> float | None:
        return None if self.dose is None else _daily(self.dose)


def _indication_applies(rule: DoseRule, order: DraftOrder) -> bool:
    if not rule.indications:
        return True
    if rule.kind == "maximum":
        return order.indication in rule.indications
    return order.indication is None or order.indication in rule.indications


def _line(applied: Applied) -> str:
    rule = applied.rule
    if rule.outcome == "not_recommended":
        target = "not recommended"
    elif rule.outcome == "note" and applied.dose is not None:
        target = f"for information: {mg(*applied.dose)} may be considered"
    elif rule.outcome == "halve" and applied.dose is not None:
        target = f"halve the dose that otherwise applies: maximum {mg(*applied.dose)}"
    elif applied.dose is not None:
        target = f"maximum {mg(*applied.dose)}"
    else:
        target = "information"
    evidence = "; ".join(applied.check.evidence)
    text = f"- **{rule.reason}**" + (f" — {evidence}" if evidence else "") + f" → {target}. {rule.detail}"
    if rule.evidence:
        text += f" *Source quality: {rule.evidence}*"
    if applied.note:
        text += f" *{applied.note}*"
    return text


def _indication_text(ctx: RuleContext, order: DraftOrder) -> str:
    if order.indication:
        display = ctx.knowledge.indications[order.indication].display
        return f"{display} (from the {order.indication_how})"
    return f"not known ({order.indication_how})"


def evaluate(ctx: RuleContext):
    for order in ctx.systemic_orders():
        yield from _evaluate_order(ctx, order, ctx.knowledge.rules.for_drug("dose", order.drug))


def _exceeds(order: DraftOrder, applied: Applied) -> bool:
    """Over the daily cap, or taken more often than the limit allows (baricitinib 2 mg twice daily is not
    the labelled 4 mg once daily, even at the same daily total)."""
    dose = order.dose
    if dose.daily_mg is None:
        return False
    too_often = dose.per_day is not None and dose.per_day > applied.dose[1] + _EPS
    return dose.daily_mg > applied.cap + _EPS or too_often


def evaluate_order(ctx: RuleContext, order: DraftOrder, rules: list[DoseRule]):
    """One order against ``rules`` (its drug's dose rules, or some of them): its dose card, or the gaps. Also
    reads the dose a patient already takes when another medicine is ordered (rules/co_prescription.py)."""
    yield from _evaluate_order(ctx, order, rules)


def _evaluate_order(ctx: RuleContext, order: DraftOrder, rules: list[DoseRule]):
    phase = order.phase
    ordered = order.dose.daily_mg
    caps: list[Applied] = []
    stops: list[Applied] = []
    notes: list[Applied] = []
    halvings: list[Applied] = []
    for rule in rules:
        if not _indication_applies(rule, order):
            continue
        check = evaluate_when(rule, ctx, order, phase)
        if not check.holds:
            continue
        if check.missing:
            for what, why in check.missing:
                yield Missing(rule.id, what, why, tuple(rule.sources), order.order_id, order.drug)
            continue
        indication_unknown = bool(rule.indications) and order.indication is None
        applied = Applied(rule, check)
        if rule.outcome == "not_recommended":
            if indication_unknown:
                applied.note = (f"Applies if the indication is {', '.join(rule.indications)}; the order's "
                                f"indication is {_indication_text(ctx, order)}.")
                notes.append(applied)
            else:
                stops.append(applied)
        elif rule.outcome == "halve":
            halvings.append(applied)
        elif rule.outcome == "note":
            if applied.cap is None or ordered is None or ordered > applied.cap + _EPS:
                notes.append(applied)
        elif check.phase_unknown:
            if ordered is not None and ordered > applied.cap + _EPS:
                applied.note = (f"Applies to a {rule.when.phase} order; the order does not say whether it is "
                                f"induction or maintenance, so this limit on its own does not flag it. Confirm the "
                                f"phase and limit the induction period.")
                notes.append(applied)
        else:
            if indication_unknown:
                applied.note = (f"This limit is for {', '.join(rule.indications)}; it is applied because the "
                                f"order's indication is {_indication_text(ctx, order)}.")
            caps.append(applied)

    halving = _halving(ctx, order, rules, halvings) if halvings else None
    if halving is not None:
        for applied in halvings:
            applied.dose = halving.results[0].limit
        caps += halvings

    if ordered is None and caps and not stops:
        binding = min(caps, key=lambda a: a.cap)
        yield Missing(binding.rule.id, f"{order.name} dose against its limit ({mg(*binding.dose)})",
                      order.dose.problem or "the ordered dose could not be read", tuple(binding.rule.sources),
                      order.order_id, order.drug)
    if ordered is not None:     # list only the limits this order exceeds (the overall maximum is not a reason)
        caps_exceeded = [a for a in caps if _exceeds(order, a)]
    else:
        caps_exceeded = [a for a in caps if a.rule.kind == "adjustment"]
    halving_shown = halving if any(a.rule.outcome == "halve" for a in caps_exceeded) else None
    if stops:
        yield _stop_finding(ctx, order, stops, caps_exceeded, notes, halving_shown)
        return
    binding = min(caps, key=lambda a: (a.cap, a.rule.outcome != "halve")) if caps else None
    if binding is not None and ordered is not None and (_exceeds(order, binding) or caps_exceeded):
        yield _reduce_finding(ctx, order, binding, caps_exceeded, notes, phase, halving_shown)
        return
    if notes:
        yield _info_finding(ctx, order, notes)


def _common_detail(ctx: RuleContext, order: DraftOrder, listed: list[Applied], halving: Halving | None) -> str:
    lines = "\n".join(_line(a) for a in listed)
    indication = _indication_text(ctx, order)
    unknown = ""
    if order.indication is None:
        unknown = ("\n\nThe order's indication is not recorded, so the dose is compared with the drug's overall "
                   "maximum and with every adjustment that cannot be ruled out. Record the indication "
                   "(reasonCode) for an indication-specific check.")
    halved = f"\n\n{_halving_text(ctx, order, halving)}" if halving is not None else ""
    return (f"**Ordered:** {order.dose.describe()} ({order.name}).  \n**Indication:** {indication}.\n\n"
            f"**Why:**\n{lines}{halved}{unknown}")


def _sources(listed: list[Applied], halving: Halving | None = None) -> list[str]:
    sources = [s for a in listed for s in a.rule.sources]
    if halving is not None:
        sources += halving.table.sources
        sources += [s for h in halving.results for s in h.base_sources]
    return list(dict.fromkeys(sources))


def _stop_finding(ctx, order: DraftOrder, stops: list[Applied], caps: list[Applied], notes: list[Applied],
                  halving: Halving | None) -> Finding:
    reasons = "; ".join(dict.fromkeys(a.rule.reason for a in stops))
    listed = stops + caps + notes
    return Finding(
        rule_id=stops[0].rule.id,
        concern=f"dose:{order.order_id}",
        indicator="warning",
        summary=f"{sentence(order.name)} is not recommended ({reasons})",
        detail=(_common_detail(ctx, order, listed, halving)
                + "\n\n**Recommended:** do not start; choose another treatment or document why it is needed."),
        sources=_sources(listed, halving),
        override_set="dose",
        suggestions=[ProposedSuggestion(
            label=f"Remove the {order.name} order",
            actions=(ProposedAction("delete", f"Remove the draft {order.name} order",
                                    resource_id=(f"MedicationRequest/{order.order_id}",)),))],
        order_id=order.order_id,
        drug=order.drug,
    )


def _keeps_modified_release(order: DraftOrder, applied: Applied) -> bool:
    """A prolonged-release order stays prolonged-release if the limit is for that form or the same tablet."""
    if not order.match.modified_release:
        return False
    return applied.rule.when.formulation == "modified_release" or applied.dose[0] == order.dose.dose_mg


def _change(order: DraftOrder, applied: Applied, dose: Dose, phase: str | None, label: str) -> ProposedSuggestion:
    target = mg(*dose) + (f" ({phase})" if phase and phase != order.phase else "")
    return ProposedSuggestion(
        label=label or f"Change to {target}",
        actions=(ProposedAction("update", f"Change the {order.name} order to {target}",
                                corrected_order(order, dose[0], dose[1], phase,
                                                _keeps_modified_release(order, replace(applied, dose=dose)))),))


def _suggestions(order: DraftOrder, binding: Applied, halving: Halving | None) -> list[ProposedSuggestion]:
    """One edit to the binding limit; for a halving whose dose depends on a phase the order does not state, one
    edit per phase, each writing its phase into the order (so either passes on sign). The first is the phase
    whose usual (un-halved) dose was ordered, else the lower dose."""
    split = (halving is not None and len(halving.results) == 2 and binding.rule.outcome == "halve")
    if not split:
        return [_change(order, binding, binding.dose, order.phase, "")]
    ordered = (order.dose.dose_mg, order.dose.per_day)
    results = sorted(halving.results, key=lambda h: h.base != ordered)      # stable: lower first otherwise
    out = []
    for h in results:
        if _daily(h.limit) + _EPS >= (order.dose.daily_mg or 0) and h.limit[1] >= (order.dose.per_day or 0):
            if order.dose.dose_mg is None or order.dose.per_day is None:
                continue
            out.append(_change(order, binding, ordered, h.phase,
                               f"Keep {order.dose.describe()}, recorded as {h.phase}"))
        else:
            out.append(_change(order, binding, h.limit, h.phase, f"Change to {mg(*h.limit)} ({h.phase})"))
    return out


def _reduce_finding(ctx, order: DraftOrder, binding: Applied, caps: list[Applied], notes: list[Applied],
                    phase: str | None, halving: Halving | None) -> Finding:
    target = mg(*binding.dose)
    binding_reasons = "; ".join(dict.fromkeys(a.rule.reason for a in caps if abs(a.cap - binding.cap) < _EPS))
    listed = sorted(caps, key=lambda a: a.cap) + notes
    only_too_often = order.dose.daily_mg is not None and order.dose.daily_mg <= binding.cap + _EPS
    verb = "Change" if only_too_often else "Reduce"
    frequency_note = (f"\n\nThe daily total is within the limit, but the order is taken "
                      f"{order.dose.per_day:g} times a day where the limit is {target}."
                      if only_too_often else "")
    suggestions = _suggestions(order, binding, halving)
    if len(suggestions) > 1:
        low, high = halving.results
        summary = (f"{verb} {order.name} to {mg(*low.limit)} ({low.phase}; {high.phase}: {mg(*high.limit)}) "
                   f"({binding_reasons})")
        recommended = (f"{mg(*low.limit)} if this is {low.phase}, {mg(*high.limit)} if it is {high.phase}; "
                       f"record the phase in the order.")
    else:
        summary = f"{verb} {order.name} to {target} ({binding_reasons})"
        recommended = f"{target} — the lowest applicable limit."
    return Finding(
        rule_id=binding.rule.id,
        concern=f"dose:{order.order_id}",
        indicator="warning",
        summary=summary,
        detail=(_common_detail(ctx, order, listed, halving) + frequency_note
                + f"\n\n**Recommended:** {recommended}"),
        sources=_sources(listed, halving),
        override_set="dose",
        suggestions=suggestions,
        order_id=order.order_id,
        drug=order.drug,
    )


def _info_finding(ctx, order: DraftOrder, notes: list[Applied]) -> Finding:
    reasons = "; ".join(dict.fromkeys(a.rule.reason for a in notes))
    return Finding(
        rule_id=notes[0].rule.id,
        concern=f"dose:{order.order_id}",
        indicator="info",
        summary=f"{sentence(order.name)} {order.dose.describe()}: check {reasons}",
        detail=_common_detail(ctx, order, notes, None),
        sources=_sources(notes),
        order_id=order.order_id,
        drug=order.drug,
    )
