"""Renal function: creatinine clearance and eGFR, each with how it was obtained or why it could not be.

Formulas as in the knowledge file, section F (Cockcroft-Gault, race-free CKD-EPI 2021). Inputs are canonical
units (creatinine mg/dL, weight kg); which measurement to trust is decided here (decision 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.facts.labs import LabValue, lab_text
from cds_service.facts.model import PatientFacts
from cds_service.i18n import fixed, number, say
from cds_service.knowledge import Knowledge


@dataclass(frozen=True)
class Derived:
    """A computed value (CrCl, eGFR) or why it could not be computed."""

    value: float | None
    method: str
    when: date | None = None
    missing: str | None = None


def cockcroft_gault(age_years: float, weight_kg: float, creatinine_mg_dl: float, female: bool) -> float:
    """CrCl (mL/min) = (140 - age) x weight x (0.85 if female) / (72 x Scr)."""
    if creatinine_mg_dl <= 0 or weight_kg <= 0:
        raise ValueError("creatinine and weight must be positive")
    crcl = (140.0 - age_years) * weight_kg / (72.0 * creatinine_mg_dl)
    return crcl * 0.85 if female else crcl


def ckd_epi_2021(age_years: float, creatinine_mg_dl: float, female: bool) -> float:
    """Race-free CKD-EPI 2021 eGFR in mL/min/1.73 m2."""
    if creatinine_mg_dl <= 0:
        raise ValueError("creatinine must be positive")
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    ratio = creatinine_mg_dl / kappa
    egfr: float = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age_years
    return egfr * 1.012 if female else egfr


# -- renal function (decision 8) ----------------------------------------------
# CrCl and eGFR are kept apart: an eGFR (indexed to 1.73 m2, another equation) is never used as a creatinine
# clearance, and a clearance is never used as an eGFR. A value read in a unit that is not quite its own (finding 28:
# an eGFR in plain mL/min, a measured clearance per 1.73 m2) carries the knowledge's note into the text shown.


def _shown(value: LabValue) -> str:
    return lab_text(value, code=True)


def creatinine_clearance(facts: PatientFacts, knowledge: Knowledge) -> Derived:
    """Measured CrCl if reported, else Cockcroft-Gault from latest creatinine (<= 90 days) and weight.

    When it cannot be computed and an eGFR is on record, the gap names that eGFR (it was seen, and is not a
    creatinine clearance), so a CrCl rule never reads the eGFR as the clearance nor the patient as normal."""
    max_days = knowledge.analytes["creatinine"].max_age_days
    measured = facts.latest("crcl", knowledge.analytes["crcl"].max_age_days)
    if measured:
        return Derived(
            measured.value, say("measured creatinine clearance {value}", value=_shown(measured)), measured.when
        )
    creat = facts.latest("creatinine", max_days)
    weight = facts.latest("weight", knowledge.analytes["weight"].max_age_days)
    gaps: list[str] = []
    if creat is None:
        gaps.append(
            say("no {analyte} in the last {days} days", analyte=knowledge.analytes["creatinine"].display, days=max_days)
        )
    if weight is None:
        weight_entry = knowledge.analytes["weight"]
        gaps.append(
            say("no {analyte} in the last {days} days", analyte=weight_entry.display, days=weight_entry.max_age_days)
        )
    if facts.age is None:
        gaps.append(say("no date of birth"))
    if facts.sex is None:
        gaps.append(say("sex not recorded as female or male"))
    if creat is None or weight is None or facts.age is None or facts.sex is None:  # there is a gap
        reported = facts.latest("egfr", knowledge.analytes["egfr"].max_age_days)
        if reported is not None:
            # one clause with the first gap (not a clause of its own), so a card that lists that gap keeps it
            gaps[0] += say(
                " (an eGFR is on record, {value}, but an eGFR is not a creatinine clearance and is not used as one)",
                value=_shown(reported),
            )
        return Derived(None, "Cockcroft-Gault", None, "; ".join(gaps))
    if creat.value <= 0 or weight.value <= 0:
        return Derived(None, "Cockcroft-Gault", None, say("creatinine or weight is zero"))
    value = cockcroft_gault(facts.age, weight.value, creat.value, facts.sex == "female")
    return Derived(
        value,
        say(
            "Cockcroft-Gault (creatinine {value} {unit} on {date}, weight {weight} kg, age {age})",
            value=number(creat.reported_value),
            unit=creat.reported_unit,
            date=creat.when,
            weight=fixed(weight.value, 0),
            age=str(facts.age),
        ),
        creat.when,
    )


def egfr(facts: PatientFacts, knowledge: Knowledge) -> Derived:
    """eGFR for a rule stated in eGFR: CKD-EPI 2021 from the latest serum creatinine (<= 90 days; decision 8).

    A laboratory-reported eGFR is used, and named with its code and how it was read, when there is no such
    creatinine, when it is newer than the latest creatinine (the creatinine it was made from is not in the
    record), or when CKD-EPI cannot be computed from a creatinine of the same day (decision 16). A reported eGFR
    older than the latest creatinine is never preferred to it: if CKD-EPI cannot be computed, the gap says so and
    shows both."""
    days = knowledge.analytes["creatinine"].max_age_days
    reported = facts.latest("egfr", knowledge.analytes["egfr"].max_age_days)
    creat = facts.latest("creatinine", days)

    def named(reported: LabValue, why: str) -> Derived:
        return Derived(
            reported.value,
            say("laboratory-reported eGFR {value}, {why}", value=_shown(reported), why=why),
            reported.when,
        )

    if creat is None:
        if reported is not None:
            return named(reported, say("used because there is no serum creatinine in the last {days} days", days=days))
        return Derived(
            None, "CKD-EPI 2021", None, say("no eGFR or serum creatinine in the last {days} days", days=days)
        )
    creat_text = say(
        "{value} {unit} on {date}", value=number(creat.reported_value), unit=creat.reported_unit, date=creat.when
    )
    if reported is not None and reported.when > creat.when:
        return named(reported, say("newer than the latest serum creatinine ({creatinine})", creatinine=creat_text))
    problem = (
        say("age or sex not recorded")
        if facts.age is None or facts.sex is None
        else say("creatinine is zero")
        if creat.value <= 0
        else None
    )
    if problem or facts.age is None:  # (no age is a problem: said again for the type checker)
        if reported is not None and reported.when == creat.when:
            return named(
                reported,
                say(
                    "used because CKD-EPI 2021 could not be computed from the creatinine of that day ({problem})",
                    problem=problem,
                ),
            )
        older = (
            say(
                "; the laboratory-reported eGFR {value} is older than that creatinine and is not used",
                value=_shown(reported),
            )
            if reported is not None
            else ""
        )
        return Derived(
            None,
            "CKD-EPI 2021",
            None,
            say(
                "CKD-EPI 2021 could not be computed from the serum creatinine {creatinine}: {problem}{older}",
                creatinine=creat_text,
                problem=problem,
                older=older,
            ),
        )
    value = ckd_epi_2021(facts.age, creat.value, facts.sex == "female")
    seen = (
        say(
            "; the laboratory-reported eGFR {value} is not newer than this creatinine and is not used",
            value=_shown(reported),
        )
        if reported is not None
        else ""
    )
    return Derived(
        value, say("CKD-EPI 2021 (creatinine {creatinine}){seen}", creatinine=creat_text, seen=seen), creat.when
    )
