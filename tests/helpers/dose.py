"""Dose-rule patients and card readers, shared by tests/rules/test_dose_rules.py and test_dose_halving.py."""
from __future__ import annotations

from cds_service.config import Settings
from cds_service.knowledge import load_knowledge
from fixtures.builders import condition, full_baseline, medication_request, obs, patient
from tests.helpers.hooks import alerts, rule_of

RA = condition("69896004", "Rheumatoid arthritis")
AD = condition("24079001", "Atopic dermatitis")
UC = condition("64766004", "Ulcerative colitis")

MALE_AGE, MALE_WEIGHT = 50, 80   # Cockcroft-Gault for this man: CrCl = (140-50) x 80 / (72 x Scr) = 100 / Scr


def _loinc(resource: dict) -> str | None:
    codings = (resource.get("code") or {}).get("coding") or [{}]
    return codings[0].get("code")


def record(age=45, sex="female", drop=(), extra=(), weight=None):
    """A clean patient with a complete normal work-up; ``drop`` removes LOINC codes from it."""
    drop = set(drop) | ({"29463-7"} if weight is not None else set())
    labs = [o for o in full_baseline(sex=sex, age=age) if _loinc(o) not in drop]
    if weight is not None:
        labs.append(obs("29463-7", weight, "kg"))
    return [patient(age=age, sex=sex), *labs, *extra]


def renal(crcl: float, *, creatinine_unit="mg/dL", weight_unit="kg", extra=(), age=MALE_AGE):
    """A man whose Cockcroft-Gault creatinine clearance is ``crcl`` (age 50, 80 kg)."""
    scr = 100.0 / crcl * (140 - age) / 90
    value = scr if creatinine_unit == "mg/dL" else scr * 88.42
    weight = MALE_WEIGHT if weight_unit == "kg" else MALE_WEIGHT / 0.45359237
    loinc = "2160-0" if creatinine_unit == "mg/dL" else "14682-9"
    return record(age=age, sex="male", drop=["2160-0", "29463-7"],
                  extra=[obs(loinc, round(value, 4), creatinine_unit), obs("29463-7", round(weight, 2), weight_unit),
                         *extra])


def egfr_obs(value):
    return obs("98979-8", value, "mL/min/{1.73_m2}", days_ago=5)


def active_med(text, *codings, status="active", rid=None):
    return medication_request(text, codings=list(codings) or None, status=status, rid=rid)


def child_pugh(value=None, *, score=None):
    resource = obs("98153-0", None, None, days_ago=20, display="Child-Pugh panel")
    if score is not None:
        resource["valueInteger"] = score
    else:
        resource["valueString"] = value
    return resource


DOSE_RULES = {r.id for r in load_knowledge(Settings().knowledge_dir).rules.dose}


def dose_cards(cards) -> list[dict]:
    """Cards of this family (other families, e.g. PRAC risk groups or screening, may add their own)."""
    return [c for c in cards if rule_of(c) in DOSE_RULES]


def dose_alerts(cards) -> list[dict]:
    return alerts(dose_cards(cards))


def said_out_loud(cards) -> str:
    """Details of the warning cards that say what could not be checked (the could-not-check card, or the
    baseline checklist that absorbs gaps caused by the results it lists)."""
    return "\n".join(c["detail"] for c in alerts(cards) if rule_of(c) not in DOSE_RULES).replace("**", "")


def only_alert(cards) -> dict:
    """The one warning dose card (or the one could-not-check card when no dose card is expected)."""
    found = dose_alerts(cards)
    assert len(found) == 1, [(c["summary"], rule_of(c)) for c in found]
    return found[0]


def suggested_dose(card) -> tuple[float, int]:
    resource = card["suggestions"][0]["actions"][0]["resource"]
    dosage = resource["dosageInstruction"][0]
    return dosage["doseAndRate"][0]["doseQuantity"]["value"], dosage["timing"]["repeat"]["frequency"]


def accept_and_resign(hook, resources, card):
    """Apply the card's update suggestion to the draft and sign again: no alert may remain."""
    corrected = card["suggestions"][0]["actions"][0]["resource"]
    record_only = [r for r in resources if not (r.get("resourceType") == "MedicationRequest" and r.get("status") == "draft")]
    return dose_alerts(hook(record_only, drafts=[corrected]))
