"""Renal function: Cockcroft-Gault creatinine clearance and CKD-EPI 2021 eGFR.

Formulas as in the knowledge file, section F. Inputs are canonical units
(creatinine mg/dL, weight kg); callers decide which measurement to trust.
"""
from __future__ import annotations


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
    egfr = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938 ** age_years
    return egfr * 1.012 if female else egfr
