"""Accept what real EHRs send: fix the unambiguous deviations from R4.

Only repairs that cannot change meaning are made (a single object where R4
wants a list; a number sent as a string). Anything else is left for
validation to report.
"""

from __future__ import annotations

# R4 elements that are arrays in the resources this service reads.
LIST_FIELDS = frozenset(
    {
        "coding",
        "dosageInstruction",
        "doseAndRate",
        "reasonCode",
        "reasonReference",
        "identifier",
        "note",
        "contained",
        "category",
        "entry",
        "link",
        "referenceRange",
        "ingredient",
        "extension",
        "name",
        "telecom",
        "address",
        "given",
        "prefix",
        "suffix",
        "line",
        "component",
        "interpretation",
        "basedOn",
        "supportingInformation",
        "additionalInstruction",
        "reaction",
        "manifestation",
        "protocolApplied",
        "targetDisease",
        "performer",
        "partOf",
        "insurance",
        "detectedIssue",
        "eventHistory",
        "modifierExtension",
        "instantiatesCanonical",
        "instantiatesUri",
        "when",
        "dayOfWeek",
        "timeOfDay",
        "event",
        "bodySite",
        "evidence",
        "stage",
        "asNeededFor",
        "derivedFrom",
        "hasMember",
        "specimen",
        "dosage",
        "reasonCodeableConcept",
    }
)
_NUMERIC_FIELDS = frozenset({"value", "frequency", "frequencyMax", "period", "periodMax", "count", "low", "high"})


def as_list(value) -> list:
    """A list for an R4 array element that a client may send as a single object (None -> [])."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def normalise(value, key: str | None = None):
    """Return a copy with single objects wrapped into lists where R4 wants a list."""
    if isinstance(value, dict):
        out = {k: normalise(v, k) for k, v in value.items()}
        return [out] if key in LIST_FIELDS else out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if key in LIST_FIELDS and value is not None:
        return [value]
    if key in _NUMERIC_FIELDS and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    return value
