"""order-select and order-sign: the draft orders decide what is read.

Orders of every drug reach us: the drafts alone tell whether there is anything to say. A recognised JAK
inhibitor order is checked against the whole record (decision 18: said plainly when no part of it could be
read); an order of another medicine only if it interacts with a JAK inhibitor the patient already takes
(decision 17, the co-prescription path, whose cards carry the link to the monitoring app).
"""

from __future__ import annotations

from cds_service import orders as ordermod
from cds_service.facts import MEDICATION_TYPES
from cds_service.findings import Finding, Missing
from cds_service.hooks import steps
from cds_service.hooks.call import Call, HookResult
from cds_service.record.completion import Completion
from cds_service.record.services import Service
from cds_service.rules import NOTICE_RULES, ORDER_RULES, co_prescription, unreadable
from cds_service.rules.context import RuleContext
from cds_service.wire import HookRequest


def evaluate(engine, service: Service, request: HookRequest, call: Call | None = None) -> HookResult:
    all_drafts = ordermod.draft_resources(request.context)
    drafts = ordermod.selected(all_drafts, request.context) if service.hook == "order-select" else all_drafts
    recognised, gaps = ordermod.recognise_drafts(engine.knowledge, drafts)
    if recognised:
        return _jak_orders(engine, service, request, call, all_drafts, recognised, gaps)
    return _other_orders(engine, service, request, call, all_drafts, drafts, gaps)


def _jak_orders(
    engine,
    service: Service,
    request: HookRequest,
    call: Call | None,
    all_drafts: list[dict],
    recognised: list[ordermod.RecognisedDraft],
    gaps: list[Missing],
) -> HookResult:
    knowledge = engine.knowledge
    prefetch = Completion(request, service.prefetch, engine.fhir_client).fill()
    if prefetch.nothing_usable and not (request.prefetch or request.fhirServer):
        raise steps.nothing_obtained(prefetch)
    record = steps.read_record(engine, request, prefetch)
    facts = steps.read_facts(engine, request, record)
    orders = ordermod.read_orders(knowledge, recognised, facts)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook=request.hook, orders=orders, draft_resources=all_drafts)
    if prefetch.nothing_usable:
        # decision 18: no part of the record could be read: say that no safety check was run, and why (the
        # notices that need no record, such as "this JAK inhibitor is not checked", still apply)
        found, gaps = steps.run_rules(
            ctx, NOTICE_RULES, gaps, unreadable.findings(knowledge, recognised, prefetch.unavailable)
        )
    elif ctx.systemic_orders():
        found, gaps = steps.run_rules(ctx, ORDER_RULES, gaps + steps.record_problems(facts, record))
    else:
        found, gaps = steps.run_rules(ctx, NOTICE_RULES, gaps)
    # a patient already on a systemic JAK inhibitor (another order than these drafts): the cards link to the
    # monitoring app, where that treatment's results are drawn
    drafts = {o.order_id for o in ctx.orders}
    on_one = any(m.systemic_jaki_in_use and m.resource_id not in drafts for m in facts.medications)
    link = steps.app_link(engine, call, request) if on_one and found else None
    return steps.answer(engine, request, found, gaps, {o.order_id: o.name for o in ctx.orders}, app_link=link)


def _other_orders(
    engine,
    service: Service,
    request: HookRequest,
    call: Call | None,
    all_drafts: list[dict],
    drafts: list[dict],
    gaps: list[Missing],
) -> HookResult:
    """Decision 17: an order of another medicine matters only if it interacts with a systemic JAK inhibitor the
    patient takes. Any other order is answered from the drafts alone; one that could interact, after reading the
    medication list; the rest of the record only for a patient who takes a JAK inhibitor."""
    knowledge = engine.knowledge
    found = co_prescription.candidates(knowledge, drafts)
    if not found:
        return steps.answer(engine, request, [], gaps)
    completion = Completion(request, service.prefetch, engine.fhir_client)
    medications = steps.medications_first(engine, request, completion.fill(MEDICATION_TYPES))
    if not any(m.systemic_jaki_in_use for m in medications):
        return steps.answer(engine, request, [], gaps)  # not on a JAK inhibitor, or not known to be: nothing to say
    record = steps.read_record(engine, request, completion.fill())
    facts = steps.read_facts(engine, request, record, medications)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook=request.hook, draft_resources=all_drafts)
    resources = {(kind, str(r.get("id"))): r for kind in MEDICATION_TYPES for r in record.resources(kind)}
    items = list(co_prescription.evaluate(ctx, found, resources))
    findings = [i for i in items if isinstance(i, Finding)]
    gaps += [i for i in items if isinstance(i, Missing)]
    link = steps.app_link(engine, call, request) if findings else None  # the patient takes a JAK inhibitor
    return steps.answer(engine, request, findings, gaps, {c.order_id: c.display for c in found}, link)
