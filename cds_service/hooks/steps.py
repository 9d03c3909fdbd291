"""The steps every hook kind takes: read the record, read the facts, run the rule families, answer with cards.

Each step is a function of the previous step's output; nothing reaches back. The order and patient-view
modules decide which steps a call needs and in which order (``hooks/order.py``, ``hooks/patient_view.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_service import cards as cardmod
from cds_service.errors import CdsError
from cds_service.facts import MEDICATION_TYPES, MedicationFact, PatientFacts, build_facts, read_medications, today_from
from cds_service.findings import Finding, Missing
from cds_service.hooks.call import Call, HookResult
from cds_service.i18n import say
from cds_service.record.completion import Prefetch
from cds_service.record.index import PatientRecord
from cds_service.rules import RuleFamily
from cds_service.rules.context import RuleContext
from cds_service.smart_app.link import card_link
from cds_service.wire import HookRequest, Link, cards_response


def medications_first(engine, request: HookRequest, sent: Prefetch) -> list[MedicationFact]:
    """The medication list alone (most patients take no JAK inhibitor: the rest of their record is not read)."""
    return read_medications(engine.knowledge, PatientRecord.of_types(sent.by_key, MEDICATION_TYPES, request.patient_id))


def read_record(engine, request: HookRequest, prefetch: Prefetch) -> PatientRecord:
    """The completed prefetch read once; results no rule reads cost one look-up."""
    return PatientRecord(
        prefetch.by_key,
        request.patient_id,
        keep=engine.knowledge.observation_codes,
        unavailable=prefetch.unavailable,
        gaps=prefetch.gaps,
    )


def read_facts(
    engine, request: HookRequest, record: PatientRecord, medications: list[MedicationFact] | None = None
) -> PatientFacts:
    return build_facts(
        engine.knowledge, record, request.patient_id, today_from(engine.settings.evaluation_date), medications
    )


def record_problems(facts: PatientFacts, record: PatientRecord) -> list[Missing]:
    """Patient-level problems with the record itself, said on the could-not-check card."""
    problems = []
    if facts.birth_date_problem:
        problems.append(Missing("patient-age", say("the patient's age"), facts.birth_date_problem, ("PRAC-2022",)))
    if record.foreign:
        problems.append(
            Missing(
                "foreign-records",
                say("part of the patient record"),
                say(
                    "{count} resource(s) from the EHR named a different patient and were left out; "
                    "the EHR's search may have ignored the patient filter",
                    count=record.foreign,
                ),
                ("CDS-HOOKS",),
            )
        )
    return problems


def nothing_obtained(prefetch: Prefetch) -> CdsError:
    reasons = sorted(set(prefetch.unavailable.values()))
    return CdsError(412, "no patient data could be obtained: " + "; ".join(reasons), code="not-found")


def run_rules(
    ctx: RuleContext, families: Iterable[RuleFamily], gaps: list[Missing], findings: list[Finding] | None = None
) -> tuple[list[Finding], list[Missing]]:
    """What the rule families find for this call, added to the findings and gaps already known."""
    findings = list(findings or ())
    for family in families:
        for item in family.evaluate(ctx):
            if isinstance(item, Missing):
                gaps.append(item)
            else:
                findings.append(item)
    return findings, gaps


def app_link(engine, call: Call | None, request: HookRequest) -> Link | None:
    """The "Open JAK monitoring" link for cards about a patient on a JAK inhibitor (none outside a web call)."""
    if call is None:
        return None
    return card_link(engine.settings, engine.app_ticket_key, call.base_url, call.authenticated, request.patient_id)


def answer(
    engine,
    request: HookRequest,
    findings: list[Finding],
    gaps: list[Missing],
    drug_names: dict | None = None,
    app_link: Link | None = None,
    app_link_on_gaps: bool = False,
) -> HookResult:
    issued = cardmod.build_cards(
        engine.knowledge, engine.card_parts, findings, gaps, drug_names or {}, app_link, app_link_on_gaps
    )
    return HookResult(cards_response([i.card for i in issued]), issued, request)
