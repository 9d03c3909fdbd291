"""Realistic generated hook requests for the benchmark.

A 52-year-old woman with rheumatoid arthritis, hypertension, type 2 diabetes
and hyperlipidaemia on five current medications, followed in clinic every
two weeks for years: each visit has a blood count, a chemistry panel and
vital signs. ``observations`` results are taken newest first, so a small
record is a recent one. Each result goes into the prefetch key whose
template asks for its LOINC code; results no template asks for (heart rate,
blood pressure, temperature) go into ``vitals``, as an EHR that over-sends
would do. The ``irrelevant`` variant appends that many more such vital signs. With ``jak=False`` the
call is one we have nothing to say about, as most calls an EHR makes are: an order of another drug
(amoxicillin), the chart of a patient who takes no JAK inhibitor.
"""

from __future__ import annotations

import uuid
from typing import Any

from cds_service.record.services import default_templates
from cds_service.record.templates import what_a_query_reads
from fixtures.builders import (
    ATC,
    RXNORM,
    SNOMED,
    TODAY,
    UCUM,
    condition,
    draft_order,
    full_baseline,
    medication_request,
    obs,
    patient,
)

PID = "bench-1"
HOOKS = ("order-select", "order-sign", "patient-view")
SERVICE_FOR_HOOK = {
    "order-sign": "jak-order-sign",
    "order-select": "jak-order-select",
    "patient-view": "jak-patient-view",
}
LOINC = "http://loinc.org"
HR, BP, TEMP = "8867-4", "85354-9", "8310-5"  # vital signs no rule reads

# (loinc, value, unit) of one clinic visit
_CBC = [
    ("718-7", 13.1, "g/dL"),
    ("6690-2", 6.8, "10*9/L"),
    ("777-3", 260, "10*9/L"),
    ("751-8", 3.9, "10*9/L"),
    ("731-0", 1.8, "10*9/L"),
]
_CHEMISTRY = [
    ("2160-0", 0.82, "mg/dL"),
    ("1742-6", 24, "U/L"),
    ("1920-8", 22, "U/L"),
    ("2324-2", 28, "U/L"),
    ("2157-6", 95, "U/L"),
    ("2093-3", 190, "mg/dL"),
    ("2571-8", 140, "mg/dL"),
    ("2085-9", 55, "mg/dL"),
]


def _vital(code: str, days_ago: int, i: int) -> dict:
    """A vital sign with the vital-signs category (heart rate, blood pressure panel, temperature)."""
    if code == HR:
        resource = obs(HR, 60 + i % 30, "/min", days_ago, PID, display="Heart rate")
    elif code == TEMP:
        resource = obs(TEMP, 36.5 + (i % 8) / 10, "Cel", days_ago, PID, display="Body temperature")
    else:
        resource = obs(BP, None, None, days_ago, PID, display="Blood pressure panel")
        resource["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                "valueQuantity": {"value": 120 + i % 25, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                "valueQuantity": {"value": 75 + i % 15, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            },
        ]
    resource["category"] = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                    "display": "Vital Signs",
                }
            ]
        }
    ]
    return resource


def observations(count: int) -> list[dict]:
    """``count`` results, newest first: visits every 14 days, the latest 5 days ago, baseline screening once."""
    out: list[dict] = []
    visit = 0
    while len(out) < count:
        days = 5 + 14 * visit
        for loinc, value, unit in _CBC + _CHEMISTRY:
            out.append(obs(loinc, value, unit, days, PID))
        out.append(obs("29463-7", 72 - (visit % 5) * 0.5, "kg", days, PID))
        for j, code in enumerate((HR, BP, TEMP)):
            out.append(_vital(code, days, visit + j))
        if visit == 2:  # the pre-treatment screening, done once
            out.extend(
                o
                for o in full_baseline(PID, days, sex="female", age=52)
                if o["code"]["coding"][0]["code"] not in {c for c, _, _ in _CBC + _CHEMISTRY} | {"29463-7"}
            )
        visit += 1
    return out[:count]


def irrelevant(count: int) -> list[dict]:
    """``count`` vital signs no rule reads (heart rate, blood pressure, temperature), newest first."""
    return [_vital((HR, BP, TEMP)[i % 3], 1 + i // 24, i) for i in range(count)]


def record() -> list[dict]:
    """Everything but observations: the patient, conditions and current medications."""
    return [
        patient(PID, 52, "female"),
        condition("69896004", "Rheumatoid arthritis", PID, onset_days_ago=2200),
        condition("38341003", "Hypertensive disorder", PID, onset_days_ago=3000),
        condition("44054006", "Type 2 diabetes mellitus", PID, onset_days_ago=2500),
        condition("55822004", "Hyperlipidemia", PID, onset_days_ago=2400),
        condition("396275006", "Osteoarthritis", PID, onset_days_ago=1800),
        medication_request(
            "methotrexate 15 mg tablet weekly",
            dose_mg=15,
            per_day=None,
            pid=PID,
            authored_days_ago=700,
            codings=[{"system": RXNORM, "code": "105586"}],
        ),
        medication_request("folic acid 5 mg tablet", dose_mg=5, pid=PID, authored_days_ago=700),
        medication_request(
            "amlodipine 5 mg tablet",
            dose_mg=5,
            pid=PID,
            authored_days_ago=1500,
            codings=[{"system": RXNORM, "code": "197361"}],
        ),
        medication_request(
            "atorvastatin 20 mg tablet",
            dose_mg=20,
            pid=PID,
            authored_days_ago=1400,
            codings=[{"system": RXNORM, "code": "617312"}],
        ),
        medication_request(
            "metformin 1000 mg tablet",
            dose_mg=1000,
            per_day=2,
            pid=PID,
            authored_days_ago=2000,
            codings=[{"system": RXNORM, "code": "861004"}],
        ),
    ]


def _key_for_code(templates: dict[str, str]) -> dict[str, str]:
    by_code: dict[str, str] = {}
    for key, template in templates.items():
        if template.startswith("Observation?"):
            for item in what_a_query_reads(template):
                by_code.setdefault(item.split("|", 1)[1], key)
    return by_code


def _bundle(resources: list[dict]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }


def hook_request(
    hook: str, n_observations: int, n_irrelevant: int = 0, jak: bool = True, interacting: bool = False
) -> dict:
    """A complete CDS Hooks request for ``hook`` with every prefetch key filled (``jak``: see above;
    ``interacting``: the other drug is clarithromycin, which would interact with a JAK inhibitor the patient
    took, so the service reads the medication list, finds none, and says nothing)."""
    templates = default_templates()
    key_for = _key_for_code(templates)
    per_key: dict[str, Any] = {key: [] for key in templates}  # a list of resources, or the Patient
    for resource in observations(n_observations) + irrelevant(n_irrelevant):
        code = resource["code"]["coding"][0]["code"]
        per_key[key_for.get(code, "vitals")].append(resource)
    rest = record()
    if hook == "patient-view" and jak:  # on treatment: the JAK inhibitor is a current medication
        rest.append(
            medication_request(
                "upadacitinib 15 mg prolonged-release tablet",
                dose_mg=15,
                pid=PID,
                authored_days_ago=180,
                codings=[{"system": ATC, "code": "L04AF03"}],
                reason=(SNOMED, "69896004", "Rheumatoid arthritis"),
            )
        )
    per_key["patient"] = rest[0]
    per_key["conditions"] = [r for r in rest if r["resourceType"] == "Condition"]
    per_key["medications"] = [r for r in rest if r["resourceType"] == "MedicationRequest"]
    prefetch = {key: value if isinstance(value, dict) else _bundle(value) for key, value in per_key.items()}
    context: dict[str, Any] = {"userId": "Practitioner/dr-bench", "patientId": PID}
    if hook != "patient-view":
        if jak:
            draft = draft_order(
                "upadacitinib 15 mg prolonged-release tablet",
                15,
                pid=PID,
                rid="draft-bench-1",
                codings=[{"system": ATC, "code": "L04AF03"}],
                reason=(SNOMED, "69896004", "Rheumatoid arthritis"),
            )
        elif interacting:
            draft = draft_order(
                "clarithromycin 500 mg tablet",
                500,
                2,
                pid=PID,
                rid="draft-bench-1",
                codings=[{"system": ATC, "code": "J01FA09"}],
            )
        else:
            draft = draft_order(
                "amoxicillin 500 mg capsule",
                500,
                3,
                pid=PID,
                rid="draft-bench-1",
                codings=[{"system": ATC, "code": "J01CA04"}],
            )
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
        if hook == "order-select":
            context["selections"] = ["MedicationRequest/draft-bench-1"]
    return {
        "hook": hook,
        "hookInstance": str(uuid.UUID(int=n_observations * 10 + len(hook))),
        "context": context,
        "prefetch": prefetch,
    }


EVALUATION_DATE = TODAY.isoformat()
