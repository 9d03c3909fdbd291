"""One hook call, step by step.

request -> prefetch completion -> patient facts -> draft orders -> rules
-> findings -> cards. Each step is a function of the previous step's output;
nothing reaches back.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from cds_service import cards as cardmod
from cds_service.cards import IssuedCard
from cds_service import orders as ordermod
from cds_service.record.completion import Completion, Prefetch
from cds_service.record.index import PatientRecord
from cds_service.record.services import Service
from cds_service.errors import CdsError
from cds_service.facts import (
    MEDICATION_TYPES,
    PatientFacts,
    build_facts,
    read_medications,
    today_from,
)
from cds_service.findings import Finding, Missing
from cds_service.rules import (
    NOTICE_RULES,
    ORDER_RULES,
    PATIENT_VIEW_RULES,
    RuleFamily,
    co_prescription,
    unreadable,
)
from cds_service.rules.context import RuleContext
from cds_service.wire import HookRequest, cards_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookResult:
    """The response body and each card issued with its rule id, for the request answered."""

    body: dict
    cards: list[IssuedCard]
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


def _record_problems(facts, record: PatientRecord) -> list[Missing]:
    """Patient-level problems with the record itself, said on the could-not-check card."""
    problems = []
    if facts.birth_date_problem:
        problems.append(Missing("patient-age", "the patient's age", facts.birth_date_problem, ("PRAC-2022",)))
    if record.foreign:
        problems.append(Missing(
            "foreign-records", "part of the patient record",
            f"{record.foreign} resource(s) from the EHR named a different patient and were left out; "
            "the EHR's search may have ignored the patient filter", ("CDS-HOOKS",)))
    return problems


def evaluate(engine, service: Service, body) -> HookResult:
    request = parse_request(body, service)
    if service.hook == "patient-view":
        return _patient_view(engine, service, request)
    # orders of every drug reach us: the drafts alone tell whether there is anything to say
    all_drafts = ordermod.draft_resources(request.context)
    drafts = ordermod.selected(all_drafts, request.context) if service.hook == "order-select" else all_drafts
    recognised, gaps = ordermod.recognise_drafts(engine.knowledge, drafts)
    if recognised:
        return _jak_orders(engine, service, request, all_drafts, recognised, gaps)
    return _other_orders(engine, service, request, all_drafts, drafts, gaps)


def _patient_view(engine, service: Service, request: HookRequest) -> HookResult:
    """Most charts opened are of patients who take no JAK inhibitor: their medications are read first (fetched
    first when not sent), the rest of the record only for a patient who takes one."""
    knowledge = engine.knowledge
    completion = Completion(request, service.prefetch, engine.fhir_client)
    sent = completion.fill(MEDICATION_TYPES)
    medications = None
    if sent.by_key:                        # else nothing could be obtained: the 412 below says so
        medications = read_medications(knowledge, PatientRecord.of_types(sent.by_key, MEDICATION_TYPES,
                                                                         request.patient_id))
        if not any(m.systemic_jaki_in_use for m in medications):
            return _answer(knowledge, request, [], [])
    prefetch = completion.fill()
    if prefetch.nothing_usable:
        raise _nothing_obtained(prefetch)
    record = read_record(engine, request, prefetch)
    facts = _facts(engine, request, record, medications)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook=request.hook)
    # patient-view serves patients on a systemic JAK inhibitor only (others get no cards at all)
    families = PATIENT_VIEW_RULES if any(m.systemic_jaki_in_use for m in facts.medications) else ()
    return _run(ctx, request, families, _record_problems(facts, record) if families else [])


def _jak_orders(engine, service: Service, request: HookRequest, all_drafts: list[dict],
                recognised: list[ordermod.RecognisedDraft], gaps: list[Missing]) -> HookResult:
    knowledge = engine.knowledge
    prefetch = Completion(request, service.prefetch, engine.fhir_client).fill()
    if prefetch.nothing_usable and not (request.prefetch or request.fhirServer):
        raise _nothing_obtained(prefetch)
    record = read_record(engine, request, prefetch)
    facts = _facts(engine, request, record)
    orders = ordermod.read_orders(knowledge, recognised, facts)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook=request.hook, orders=orders, draft_resources=all_drafts)
    if prefetch.nothing_usable:
        # decision 18: no part of the record could be read: say that no safety check was run, and why (the
        # notices that need no record, such as "this JAK inhibitor is not checked", still apply)
        why = unreadable.findings(knowledge, recognised, prefetch.unavailable)
        return _run(ctx, request, NOTICE_RULES, gaps, why)
    if ctx.systemic_orders():
        gaps.extend(_record_problems(facts, record))
        return _run(ctx, request, ORDER_RULES, gaps)
    return _run(ctx, request, NOTICE_RULES, gaps)


def _other_orders(engine, service: Service, request: HookRequest, all_drafts: list[dict], drafts: list[dict],
                  gaps: list[Missing]) -> HookResult:
    """Decision 17: an order of another medicine matters only if it interacts with a systemic JAK inhibitor the
    patient takes. Any other order is answered from the drafts alone; one that could interact, after reading the
    medication list; the rest of the record only for a patient who takes a JAK inhibitor."""
    knowledge = engine.knowledge
    found = co_prescription.candidates(knowledge, drafts)
    if not found:
        return _answer(knowledge, request, [], gaps)
    completion = Completion(request, service.prefetch, engine.fhir_client)
    sent = completion.fill(MEDICATION_TYPES)
    medications = read_medications(knowledge, PatientRecord.of_types(sent.by_key, MEDICATION_TYPES, request.patient_id))
    if not any(m.systemic_jaki_in_use for m in medications):
        return _answer(knowledge, request, [], gaps)     # not on a JAK inhibitor, or not known to be: nothing to say
    record = read_record(engine, request, completion.fill())
    facts = _facts(engine, request, record, medications)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook=request.hook, draft_resources=all_drafts)
    resources = {(kind, str(r.get("id"))): r for kind in MEDICATION_TYPES for r in record.resources(kind)}
    items = list(co_prescription.evaluate(ctx, found, resources))
    findings = [i for i in items if isinstance(i, Finding)]
    gaps += [i for i in items if isinstance(i, Missing)]
    return _answer(knowledge, request, findings, gaps, {c.order_id: c.display for c in found})


def _nothing_obtained(prefetch: Prefetch) -> CdsError:
    reasons = sorted(set(prefetch.unavailable.values()))
    return CdsError(412, "no patient data could be obtained: " + "; ".join(reasons), code="not-found")


def read_record(engine, request: HookRequest, prefetch: Prefetch) -> PatientRecord:
    """The completed prefetch read once; results no rule reads cost one look-up."""
    return PatientRecord(prefetch.by_key, request.patient_id, keep=engine.knowledge.observation_codes,
                         unavailable=prefetch.unavailable, gaps=prefetch.gaps)


def _facts(engine, request: HookRequest, record: PatientRecord, medications=None) -> PatientFacts:
    return build_facts(engine.knowledge, record, request.patient_id,
                       today_from(engine.settings.evaluation_date), medications)


def _run(ctx: RuleContext, request: HookRequest, families: Iterable[RuleFamily], gaps: list[Missing],
         findings: list[Finding] | None = None) -> HookResult:
    findings = list(findings or ())
    for family in families:
        for item in family.evaluate(ctx):
            (gaps if isinstance(item, Missing) else findings).append(item)
    return _answer(ctx.knowledge, request, findings, gaps, {o.order_id: o.name for o in ctx.orders})


def _answer(knowledge, request: HookRequest, findings: list[Finding], gaps: list[Missing],
            drug_names: dict | None = None) -> HookResult:
    issued = cardmod.build_cards(knowledge, findings, gaps, drug_names or {})
    return HookResult(cards_response([i.card for i in issued]), issued, request)
