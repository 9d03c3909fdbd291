"""Dose rules: the licensed maximum for the order's indication and the lower doses a patient's situation calls
for (age, weight, kidney and liver function, interacting medicines, start vs continuation).

Reads ``[[dose]]`` (cards/rules/dose.toml) and ``[interacting_class.*]``; the order's induction/maintenance phase
(``[dose_phase.*]``) is read with the order (``DraftOrder.phase``). For each draft order every applicable entry
is evaluated; the lowest applicable cap wins and ONE card per order (concern ``dose:<order id>``) lists every
reason with the patient's values. Its suggestion edits the draft to that dose
and frequency (or, for "not recommended", removes the draft), so accepting it makes the same order pass on sign.
Data a rule needs but cannot read is reported as a ``Missing`` gap, never read as normal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cds_service import drugs as drugmod
from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.evidence import corrected_order
from cds_service.rules.lab_thresholds import missing_reason
from cds_service.rules.text import lab, mg, sentence
from cds_service.schemas.dose import DoseRule

_EPS = 1e-9


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
        coding = drugmod._codings(concept)
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
            out.evidence.append(f"{label} {derived.value:.0f} {unit}, {method}")
    if when.condition is not None:
        present = [c for c in facts.concept_present(when.condition) if c.active]
        if present:
            out.evidence.append("; ".join(c.display + (f" (since {c.onset.isoformat()})" if c.onset else "")
                                          for c in present))
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


# -- one card per order -----------------------------------------------------------

@dataclass
class Applied:
    rule: DoseRule
    check: Check
    note: str | None = None

    @property
    def cap(self) -> float | None:
        return None if self.rule.max_mg is None else self.rule.max_mg * self.rule.per_day


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
    elif rule.outcome == "note" and rule.max_mg is not None:
        target = f"for information: {mg(rule.max_mg, rule.per_day)} may be considered"
    elif rule.max_mg is not None:
        target = f"maximum {mg(rule.max_mg, rule.per_day)}"
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
    too_often = dose.per_day is not None and dose.per_day > applied.rule.per_day + _EPS
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
        elif rule.outcome == "note":
            if applied.cap is None or ordered is None or ordered > applied.cap + _EPS:
                notes.append(applied)
        elif check.phase_unknown:
            if ordered is not None and ordered > applied.cap + _EPS:
                applied.note = (f"Applies to a {rule.when.phase} order; the order does not say whether it is "
                                f"induction or maintenance, so it is not flagged. Confirm the phase and limit "
                                f"the induction period.")
                notes.append(applied)
        else:
            if indication_unknown:
                applied.note = (f"This limit is for {', '.join(rule.indications)}; it is applied because the "
                                f"order's indication is {_indication_text(ctx, order)}.")
            caps.append(applied)

    if ordered is None and caps and not stops:
        binding = min(caps, key=lambda a: a.cap)
        yield Missing(binding.rule.id, f"{order.name} dose against its limit ({mg(binding.rule.max_mg, binding.rule.per_day)})",
                      order.dose.problem or "the ordered dose could not be read", tuple(binding.rule.sources),
                      order.order_id, order.drug)
    if ordered is not None:     # list only the limits this order exceeds (the overall maximum is not a reason)
        caps_exceeded = [a for a in caps if _exceeds(order, a)]
    else:
        caps_exceeded = [a for a in caps if a.rule.kind == "adjustment"]
    if stops:
        yield _stop_finding(ctx, order, stops, caps_exceeded, notes)
        return
    binding = min(caps, key=lambda a: a.cap) if caps else None
    if binding is not None and ordered is not None and (_exceeds(order, binding) or caps_exceeded):
        yield _reduce_finding(ctx, order, binding, caps_exceeded, notes, phase)
        return
    if notes:
        yield _info_finding(ctx, order, notes)


def _common_detail(ctx: RuleContext, order: DraftOrder, listed: list[Applied]) -> str:
    lines = "\n".join(_line(a) for a in listed)
    indication = _indication_text(ctx, order)
    unknown = ""
    if order.indication is None:
        unknown = ("\n\nThe order's indication is not recorded, so the dose is compared with the drug's overall "
                   "maximum and with every adjustment that cannot be ruled out. Record the indication "
                   "(reasonCode) for an indication-specific check.")
    return (f"**Ordered:** {order.dose.describe()} ({order.name}).  \n**Indication:** {indication}.\n\n"
            f"**Why:**\n{lines}{unknown}")


def _sources(listed: list[Applied]) -> list[str]:
    return list(dict.fromkeys(s for a in listed for s in a.rule.sources))


def _stop_finding(ctx, order: DraftOrder, stops: list[Applied], caps: list[Applied], notes: list[Applied]) -> Finding:
    reasons = "; ".join(dict.fromkeys(a.rule.reason for a in stops))
    listed = stops + caps + notes
    return Finding(
        rule_id=stops[0].rule.id,
        concern=f"dose:{order.order_id}",
        indicator="warning",
        summary=f"{sentence(order.name)} is not recommended ({reasons})",
        detail=(_common_detail(ctx, order, listed)
                + "\n\n**Recommended:** do not start; choose another treatment or document why it is needed."),
        sources=_sources(listed),
        override_set="dose",
        suggestions=[ProposedSuggestion(
            label=f"Remove the {order.name} order",
            actions=(ProposedAction("delete", f"Remove the draft {order.name} order",
                                    resource_id=(f"MedicationRequest/{order.order_id}",)),))],
        order_id=order.order_id,
        drug=order.drug,
    )


def _keeps_modified_release(order: DraftOrder, rule: DoseRule) -> bool:
    """A prolonged-release order stays prolonged-release if the limit is for that form or the same tablet."""
    if not order.match.modified_release:
        return False
    return rule.when.formulation == "modified_release" or rule.max_mg == order.dose.dose_mg


def _reduce_finding(ctx, order: DraftOrder, binding: Applied, caps: list[Applied], notes: list[Applied],
                    phase: str | None) -> Finding:
    rule = binding.rule
    target = mg(rule.max_mg, rule.per_day)
    binding_reasons = "; ".join(dict.fromkeys(a.rule.reason for a in caps if abs(a.cap - binding.cap) < _EPS))
    listed = sorted(caps, key=lambda a: a.cap) + notes
    only_too_often = order.dose.daily_mg is not None and order.dose.daily_mg <= binding.cap + _EPS
    verb = "Change" if only_too_often else "Reduce"
    frequency_note = (f"\n\nThe daily total is within the limit, but the order is taken "
                      f"{order.dose.per_day:g} times a day where the limit is {target}."
                      if only_too_often else "")
    return Finding(
        rule_id=rule.id,
        concern=f"dose:{order.order_id}",
        indicator="warning",
        summary=f"{verb} {order.name} to {target} ({binding_reasons})",
        detail=(_common_detail(ctx, order, listed) + frequency_note
                + f"\n\n**Recommended:** {target} — the lowest applicable limit."),
        sources=_sources(listed),
        override_set="dose",
        suggestions=[ProposedSuggestion(
            label=f"Change to {target}",
            actions=(ProposedAction("update", f"Change the {order.name} order to {target}",
                                    corrected_order(order, rule.max_mg, rule.per_day, phase,
                                                    _keeps_modified_release(order, rule))),))],
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
        detail=_common_detail(ctx, order, notes),
        sources=_sources(notes),
        order_id=order.order_id,
        drug=order.drug,
    )
