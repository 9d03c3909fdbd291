"""Small helpers that render values the way clinicians read them."""

from __future__ import annotations

from cds_service.facts import lab_text, pretty_unit
from cds_service.i18n import number, say

# a lab value and a unit as clinicians read them: the facts layer renders them too (renal derivations), so they
# live there, once, and are named here for the rules
lab = lab_text
unit = pretty_unit


def mg(dose_mg: float, per_day: float) -> str:
    if per_day == 1:
        return say("{dose} mg once daily", dose=number(dose_mg))
    if per_day == 2:
        return say("{dose} mg twice daily", dose=number(dose_mg))
    return say("{dose} mg {times} times daily", dose=number(dose_mg), times=number(per_day))


def phase_name(phase: str | None) -> str:
    """An order's phase ("induction" / "maintenance", a code) as the card says it ("" for none)."""
    if phase == "induction":
        return say("induction")
    if phase == "maintenance":
        return say("maintenance")
    return phase or ""


def sentence(text: str) -> str:
    """Upper-case the first letter only ("ALT" and "ruxolitinib cream (Opzelura)" keep their case)."""
    return text[:1].upper() + text[1:]
