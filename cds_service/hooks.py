"""One hook call, step by step.

request -> prefetch completion -> patient facts -> draft orders -> rules
-> findings -> cards. Each step is a function of the previous step's output;
nothing reaches back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from cds_service import cards as cardmod
from cds_service import orders as ordermod
from cds_service import prefetch as prefetchmod
from cds_service.discovery import Service
from cds_service.errors import CdsError
from cds_service.facts import MEDICATION_TYPES, build_facts, read_medications, today_from
from cds_service.findings import Finding, Missing
from cds_service.rules import NOTICE_RULES, ORDER_RULES, PATIENT_VIEW_RULES
from cds_service.rules.context import RuleContext
from cds_service.wire import Card, HookRequest, cards_response

log = logging.getLogger(__name__)


@dataclass
class HookResult:
    body: dict
    cards: list[Card]
    rule_ids: list[str]
    request: HookRequest


def parse_request(body, service: Service) -> HookRequest:
    if not isinstance(body, dict):
        raise CdsError(400, "the request body must be a JSON object (a CDS Hooks request)")
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = first.get("msg", "invalid")
        raise CdsError(400, f"invalid CDS Hooks request: {where + ': ' if where else ''}{message}",
                       expression=[where] if where else None) from None
    if request.hook != service.hook:
        raise CdsError(400, f"service {service.id} answers the {service.hook} hook, not {request.hook!r}",
                       expression=["hook"])
    return request


def _record_problems(facts, prefetched) -> list[Missing]:
    """Patient-level problems with the record itself, said on the could-not-check card."""
    problems = []
    if facts.birth_date_problem:
        problems.append(Missing("patient-age", "the patient's age", facts.birth_date_problem, ("PRAC-2022",)))
    if prefetched.foreign:
        problems.append(Missing(
            "foreign-records", "part of the patient record",
            f"{prefetched.foreign} resource(s) from the EHR named a different patient and were left out; "
            "the EHR's search may have ignored the patient filter", ("CDS-HOOKS",)))
    return problems


def evaluate(engine, service: Service, body) -> HookResult:
    request = parse_request(body, service)
    knowledge = engine.knowledge
    gaps: list[Missing] = []
    medications = None
    if service.hook == "patient-view":
        # most charts opened are of patients who take no JAK inhibitor: their medications are read first
        # (fetched first when not sent), the rest of the record only for a patient who takes one
        completion = prefetchmod.Completion(request, service.prefetch, engine.fhir_client)
        sent = completion.fill(MEDICATION_TYPES)
        if sent.by_key:                        # else nothing could be obtained: the 412 below says so
            medications = read_medications(knowledge, sent.only(MEDICATION_TYPES))
            if not any(m.systemic_jaki_in_use for m in medications):
                return _answer(knowledge, request, [], gaps)
    else:
        # orders of every drug reach us: the drafts alone tell whether there is anything to say
        all_drafts = ordermod.draft_resources(request.context)
        drafts = ordermod.selected(all_drafts, request.context) if service.hook == "order-select" else all_drafts
        recognised, gaps = ordermod.recognise_drafts(knowledge, drafts)
        if not recognised:
            return _answer(knowledge, request, [], gaps)
        completion = prefetchmod.Completion(request, service.prefetch, engine.fhir_client)
    prefetched = completion.fill()
    if prefetched.nothing_usable:
        reasons = sorted(set(prefetched.unavailable.values()))
        raise CdsError(412, "no patient data could be obtained: " + "; ".join(reasons), code="not-found")
    prefetched.keep_observations(knowledge.observation_codes)   # results no rule reads cost one look-up
    facts = build_facts(knowledge, prefetched, request.patient_id, today_from(engine.settings.evaluation_date),
                        medications)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook=request.hook)
    if service.hook == "patient-view":
        # patient-view serves patients on a systemic JAK inhibitor only (others get no cards at all)
        families = PATIENT_VIEW_RULES if any(m.systemic_jaki_in_use for m in facts.medications) else ()
    else:
        ctx.draft_resources = all_drafts
        conditions_by_id = {c.get("id"): c for c in prefetched.resources("Condition")}
        ctx.orders = ordermod.read_orders(knowledge, recognised, facts, conditions_by_id)
        families = ORDER_RULES if ctx.systemic_orders() else NOTICE_RULES
    if families and families is not NOTICE_RULES:
        gaps.extend(_record_problems(facts, prefetched))
    findings: list[Finding] = []
    for family in families:
        for item in family.evaluate(ctx):
            (gaps if isinstance(item, Missing) else findings).append(item)
    return _answer(knowledge, request, findings, gaps, ctx.orders)


def _answer(knowledge, request: HookRequest, findings: list[Finding], gaps: list[Missing],
            orders=()) -> HookResult:
    drug_names = {o.order_id: o.name for o in orders}
    cards, rule_ids = cardmod.build_cards(knowledge, findings, gaps, drug_names)
    return HookResult(cards_response(cards), cards, rule_ids, request)
