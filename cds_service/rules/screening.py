"""Baseline screening checklist before a patient's first systemic JAK inhibitor (decision 9).

Only when the patient has no active or past systemic JAK inhibitor on record
(the draft itself does not count). One card per order lists each missing or
out-of-date item with its code and the date of a stale result, and one
suggestion creates draft ServiceRequests for every missing orderable test
(``selectionBehavior`` at-most-one: a single all-in-one suggestion, so
accepting it cannot order a test twice). Lab gaps the card lists are not
repeated on the "could not check" card (``Finding.covers``). Data that could
not be obtained is not called missing (it may exist): it becomes a ``Missing``
gap with the same wording the threshold rules use, so the two merge.

Parts read by result (TB screening, viral serology, pregnancy test; decision
15): a current result in an accepted category (negative) satisfies the part; a
positive one does as long as the result rules read it (the latent TB, hepatitis
and HIV warnings, the pregnancy contraindication say what to do); anything else
is listed with what was found: an old result, an equivocal one to repeat, or a
record without a readable result (a tuberculin skin test recorded only as a
Procedure is not a negative screen). A result that cannot be read is a gap.
"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.facts import PatientFacts
from cds_service.findings import Finding, Missing, ProposedAction, ProposedSuggestion
from cds_service.i18n import say
from cds_service.knowledge.schemas.screening import CodeRef, ScreeningItem
from cds_service.rules.context import RuleContext
from cds_service.rules.record_parts import (
    codes_text,
    newest_of,
    order_code,
    part_gap,
    part_state,
    result_part,
    service_request,
    unreadable,
)


def _applies(item: ScreeningItem, facts: PatientFacts) -> tuple[bool, str]:
    """(applies?, note when the patient data cannot decide)."""
    notes = []
    if item.sex is not None:
        if facts.sex is None:
            notes.append(say("sex not recorded"))
        elif facts.sex != item.sex:
            return False, ""
    if item.age_from is not None or item.age_to is not None:
        if facts.age is None:
            notes.append(say("age not known"))
        elif (item.age_from is not None and facts.age < item.age_from) or (
            item.age_to is not None and facts.age > item.age_to
        ):
            return False, ""
    return True, "; ".join(notes)


def is_first_systemic_order(ctx: RuleContext) -> bool:
    draft_ids = {o.order_id for o in ctx.orders}
    return not any(
        m.drug is not None and m.drug.category == "systemic" and m.resource_id not in draft_ids
        for m in ctx.facts.medications
    )


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    k, facts = ctx.knowledge, ctx.facts
    orders = ctx.systemic_orders()
    if not orders or not is_first_systemic_order(ctx):
        return
    for card in k.rules.screening_card:
        for order in orders:
            if order.drug not in card.drugs:
                continue
            blocks: list[str] = []
            covers: list[str] = []
            sources: list[str] = list(card.sources)
            wanted: dict[str, CodeRef] = {}
            count = 0
            for item in k.rules.screening_item:
                applies, note = _applies(item, facts)
                if not applies:
                    continue
                lines = []
                for part in item.parts:
                    if part.tests:
                        why, gaps = result_part(ctx, part, item.max_age_days)
                        for check, gap_why in gaps:
                            yield Missing(item.id, check, gap_why, tuple(item.sources), order.order_id, order.drug)
                        if why is not None:
                            lines.append(f"- {part.display} ({codes_text(ctx, part)}): {why}")
                            code = order_code(ctx, part)
                            if code is not None:
                                wanted.setdefault(code.code, code)
                        continue
                    newest, _ = newest_of(ctx, part)
                    if (
                        newest is not None
                        and newest.when is not None
                        and (facts.today - newest.when).days <= item.max_age_days
                    ):
                        continue  # up to date: nothing to say
                    state = part_state(ctx, part)
                    check, why = part_gap(ctx, part, state, item.max_age_days)
                    if (state.newest is None and state.unobtainable) or unreadable(ctx, part, item.max_age_days):
                        # it may exist (could not be obtained) or it exists but cannot be read: say so on the
                        # could-not-check card, in the threshold rules' words (so the two merge), order nothing
                        yield Missing(item.id, check, why, tuple(item.sources), order.order_id, order.drug)
                        continue
                    lines.append(f"- {part.display} ({codes_text(ctx, part)}): {why}")
                    covers += [k.analytes[a].display for a in part.analytes]
                    code = order_code(ctx, part)
                    if code is not None:
                        wanted.setdefault(code.code, code)
                if lines:
                    count += len(lines)
                    sources += [s for s in item.sources if s not in sources]
                    suffix = say(" (applies unless excluded: {why})", why=note) if note else ""
                    blocks.append(f"**{item.display}**{suffix} — {item.action}\n" + "\n".join(lines))
            if not blocks:
                continue
            note = say("Baseline screening before the first dose of {drug}", drug=order.name)
            suggestions = []
            if wanted:
                actions = tuple(
                    ProposedAction(
                        "create",
                        say("Order {test} (LOINC {code})", test=c.display, code=c.code),
                        service_request(c, facts.patient_id, note),
                    )
                    for c in wanted.values()
                )
                suggestions.append(ProposedSuggestion(card.suggestion_label, actions))
            yield Finding(
                rule_id=card.id,
                concern=f"screening:{order.order_id}",
                indicator=card.indicator,
                summary=card.summary.format(drug=order.name, n=count),
                detail=card.intro + "\n\n" + "\n\n".join(blocks),
                sources=sources,
                override_set=card.override_set,
                suggestions=suggestions,
                order_id=order.order_id,
                drug=order.drug,
                covers=tuple(dict.fromkeys(covers)),
            )
