"""patient-view: the monitoring of a patient who takes a systemic JAK inhibitor.

Most charts opened are of patients who take no JAK inhibitor: their medications are read first (fetched first
when not sent), the rest of the record only for a patient who takes one; others get no cards at all. Every card
is about a patient on a JAK inhibitor, so every card carries the link to the monitoring app.
"""

from __future__ import annotations

from cds_service.facts import MEDICATION_TYPES
from cds_service.hooks import steps
from cds_service.hooks.call import Call, HookResult
from cds_service.record.completion import Completion
from cds_service.record.services import Service
from cds_service.rules import PATIENT_VIEW_RULES
from cds_service.rules.context import RuleContext
from cds_service.wire import HookRequest


def evaluate(engine, service: Service, request: HookRequest, call: Call | None = None) -> HookResult:
    completion = Completion(request, service.prefetch, engine.fhir_client)
    sent = completion.fill(MEDICATION_TYPES)
    medications = None
    if sent.by_key:  # else nothing could be obtained: the 412 below says so
        medications = steps.medications_first(engine, request, sent)
        if not any(m.systemic_jaki_in_use for m in medications):
            return steps.answer(engine, request, [], [])
    prefetch = completion.fill()
    if prefetch.nothing_usable:
        raise steps.nothing_obtained(prefetch)
    record = steps.read_record(engine, request, prefetch)
    facts = steps.read_facts(engine, request, record, medications)
    if not any(m.systemic_jaki_in_use for m in facts.medications):
        return steps.answer(engine, request, [], [])
    ctx = RuleContext(knowledge=engine.knowledge, facts=facts, hook=request.hook)
    findings, gaps = steps.run_rules(ctx, PATIENT_VIEW_RULES, steps.record_problems(facts, record))
    link = steps.app_link(engine, call, request) if findings or gaps else None
    return steps.answer(engine, request, findings, gaps, app_link=link, app_link_on_gaps=True)
