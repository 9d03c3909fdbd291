"""Small helpers that render values the way clinicians read them."""
from __future__ import annotations

from cds_service.facts import LabValue

_PRETTY_UNITS = {"10*9/L": "×10⁹/L", "10*3/uL": "×10³/µL", "umol/L": "µmol/L", "mL/min/{1.73_m2}": "mL/min/1.73 m²",
                 "/uL": "/µL", "[lb_av]": "lb"}


def unit(u: str) -> str:
    return _PRETTY_UNITS.get(u, u)


def lab(value: LabValue, code: bool = False) -> str:
    """'0.8 ×10⁹/L on 2026-11-01' in the unit the lab reported, with how it was read when the knowledge says so
    ('55 mL/min on ... (reported in mL/min, not per 1.73 m²: read as ...)'); ``code``: name its LOINC code too."""
    shown = f"{value.reported_value:g} {unit(value.reported_unit)} on {value.when.isoformat()}"
    extra = ", ".join(x for x in (f"LOINC {value.code}" if code and value.code else None, value.note) if x)
    return f"{shown} ({extra})" if extra else shown


def mg(dose_mg: float, per_day: float) -> str:
    freq = {1: "once daily", 2: "twice daily"}.get(per_day, f"{per_day:g} times daily")
    return f"{dose_mg:g} mg {freq}"


def sentence(text: str) -> str:
    """Upper-case the first letter only ("ALT" and "ruxolitinib cream (Opzelura)" keep their case)."""
    return text[:1].upper() + text[1:]
