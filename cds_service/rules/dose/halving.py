"""Halvings (decision 14, ``outcome = "halve"``): the dose that otherwise applies (the lowest cap of the order's
indication, phase and patient, and the drug's ``otherwise`` doses) stepped down along the drug's
``[[dose_halving]]`` steps once per halving group, and the text that says so on the card. When the order does not
state its phase and the halved dose depends on it, both phases are worked out (the lower one is the limit).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cds_service.i18n import say
from cds_service.knowledge.schemas.dose import DoseHalving, DoseRule
from cds_service.rules.common import prac_risk_factors
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.dose.situation import EPS, Applied, Dose, daily, evaluate_when
from cds_service.rules.text import mg, phase_name


def _group_text(group: str) -> str:
    if group == "renal":
        return say("renal impairment")
    if group == "hepatic":
        return say("hepatic impairment")
    return say("interacting medicine")


@dataclass(frozen=True)
class Halved:
    """The halved limit worked out for one phase (None: stated by the order, or it makes no difference)."""

    phase: str | None
    base: Dose  # the dose that otherwise applies
    base_reason: str
    path: tuple[Dose, ...]  # base -> ... -> limit, one step per halving group
    base_detail: str = ""  # an `otherwise` dose's detail and sources (a cap's are its rule's)
    base_sources: tuple[str, ...] = ()
    floor: bool = False  # a halving was due but the step keeps the dose (table.floor says why)
    fallback: bool = False  # no labelled step for the base: its daily dose was halved

    @property
    def limit(self) -> Dose:
        return self.path[-1]


@dataclass(frozen=True)
class Halving:
    table: DoseHalving
    groups: tuple[str, ...]
    results: tuple[Halved, ...]  # lowest first; two when the order's phase is not stated and matters
    risk_not_recorded: tuple[str, ...] = ()


def _halving_table(ctx: RuleContext, drug: str) -> DoseHalving:
    table: DoseHalving = next(h for h in ctx.knowledge.rules.dose_halving if h.drug == drug)  # checked at load
    return table


def _phase_matters(rules: list[DoseRule], table: DoseHalving) -> bool:
    return any(r.when.phase for r in rules if r.outcome == "cap") or any(o.phase for o in table.otherwise)


def _otherwise(
    ctx: RuleContext, order: DraftOrder, rules: list[DoseRule], table: DoseHalving, phase: str | None
) -> tuple[Dose, str, str, tuple[str, ...]] | None:
    """The dose that otherwise applies in ``phase``: the lowest cap that holds (an unknown indication: the lowest
    of every indication, the conservative reading) and the table's ``otherwise`` doses that match."""
    candidates: list[tuple[Dose, str, str, tuple[str, ...]]] = []
    for rule in rules:
        if rule.outcome != "cap":
            continue
        if rule.indications and order.indication is not None and order.indication not in rule.indications:
            continue
        check = evaluate_when(rule, ctx, order, phase)
        limit = rule.limit  # a cap has one (DoseRule)
        if limit is not None and check.holds and not check.missing and not check.phase_unknown:
            candidates.append((limit, rule.reason, "", ()))
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
    return min(candidates, key=lambda c: (daily(c[0]), c[0][1]))


def _step_down(
    table: DoseHalving,
    base: Dose,
    reason: str,
    times: int,
    phase: str | None,
    detail: str = "",
    sources: tuple[str, ...] = (),
) -> Halved:
    path, current, floor, fallback = [base], base, False, False
    for _ in range(times):
        step = table.step_from(*current)
        if step is not None:
            lower: Dose = (step.to_mg, step.to_per_day)
        else:  # not in the table: halve the daily dose (twice daily -> once daily, else half the dose)
            fallback = True
            lower = (current[0], current[1] // 2) if current[1] % 2 == 0 else (current[0] / 2, current[1])
        if lower == current:
            floor = True
            break
        path.append(lower)
        current = lower
    return Halved(phase, base, reason, tuple(path), detail, sources, floor, fallback)


def halve(ctx: RuleContext, order: DraftOrder, rules: list[DoseRule], halvings: list[Applied]) -> Halving | None:
    table = _halving_table(ctx, order.drug)
    groups = tuple(dict.fromkeys(g for a in halvings if (g := a.rule.halving_group) is not None))  # set on a halving
    phases = (
        [order.phase] if order.phase is not None or not _phase_matters(rules, table) else ["maintenance", "induction"]
    )
    results = []
    for phase in phases:
        base = _otherwise(ctx, order, rules, table, phase)
        if base is not None:
            results.append(_step_down(table, *base[:2], len(groups), phase, *base[2:]))
    if not results:
        return None
    results.sort(key=lambda h: (daily(h.limit), h.limit[1]))
    if len(results) == 2 and results[0].limit == results[1].limit:  # the phase makes no difference
        results = [replace(max(results, key=lambda h: daily(h.base)), phase=None)]
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
            lower = min(h.base, (other.mg, other.per_day), key=daily)
            if daily(_step_down(table, lower, "", times, h.phase).limit) < daily(h.limit) - EPS:
                return tuple(notes)
    return ()


def halving_text(ctx: RuleContext, order: DraftOrder, halving: Halving) -> str:
    """What was halved from what, and why, for the card."""

    def one(h: Halved) -> str:
        steps = " → ".join(mg(*d) for d in h.path)
        text = f"{mg(*h.base)} ({h.base_reason})"
        text += (
            say(", halved: {steps}", steps=steps)
            if len(h.path) > 1
            else say(", not lowered further: {dose}", dose=mg(*h.limit))
        )
        return text + (f" — {h.base_detail.rstrip('.')}" if h.base_detail else "")

    table = halving.table
    reasons = "; ".join(_group_text(g) for g in halving.groups)
    lines = [
        say(
            "**Halving (decision 14):** the dose that otherwise applies is halved once per reason ({reasons}).",
            reasons=reasons,
        )
    ]
    if len(halving.results) == 1:
        lines.append(say("Dose that otherwise applies: {dose}.", dose=one(halving.results[0])))
    else:
        low, high = halving.results
        lines.append(
            say(
                "The order does not say induction or maintenance, and the halved dose depends on it: "
                "{low_phase} {low}; {high_phase} {high}. It is checked against the {low_phase} dose "
                "(conservative reading: a {low_phase} order at the {high_phase} dose would exceed the "
                "exposure the label allows). If this is {high_phase} treatment, choose that correction: "
                "each suggestion writes its phase into the order.",
                low_phase=phase_name(low.phase or ""),
                low=one(low),
                high_phase=phase_name(high.phase or ""),
                high=one(high),
            )
        )
    if order.indication is None:
        lines.append(say("The indication is not recorded, so the lowest dose any indication allows is halved."))
    lines.append(table.detail)
    if len(halving.groups) > 1:
        lines.append(table.combination)
    if table.floor and any(h.floor for h in halving.results):
        lines.append(table.floor)
    if any(h.fallback for h in halving.results):
        lines.append(say("The dose that otherwise applies has no labelled halving step; its daily dose was halved."))
    if halving.risk_not_recorded:
        lines.append(
            say("Not recorded, so no lower-risk dose was assumed: {risks}.", risks="; ".join(halving.risk_not_recorded))
        )
    return " ".join(lines)
