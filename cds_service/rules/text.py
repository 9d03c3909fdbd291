"""Small helpers that render values the way clinicians read them."""

from __future__ import annotations

from cds_service.facts import lab_text, pretty_unit

# a lab value and a unit as clinicians read them: the facts layer renders them too (renal derivations), so they
# live there, once, and are named here for the rules
lab = lab_text
unit = pretty_unit


def mg(dose_mg: float, per_day: float) -> str:
    words: dict[float, str] = {1: "once daily", 2: "twice daily"}
    freq = words.get(per_day, f"{per_day:g} times daily")
    return f"{dose_mg:g} mg {freq}"


def sentence(text: str) -> str:
    """Upper-case the first letter only ("ALT" and "ruxolitinib cream (Opzelura)" keep their case)."""
    return text[:1].upper() + text[1:]
