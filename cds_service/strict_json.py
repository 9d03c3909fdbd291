"""Strict JSON for untrusted input (request bodies, FHIR server answers).

RFC 8259 JSON has no NaN or Infinity (Python's parser accepts them), and numbers
beyond 64 bits or a double are not clinical values: they are refused at parse
time instead of failing deep inside a rule (OverflowError) or, worse, passing
every comparison silently (NaN < limit is False). Unpaired UTF-16 surrogate
escapes (``"\\ud800"``) decode to strings that cannot be encoded again.
"""
from __future__ import annotations

import json
import math
import re

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
MAX_INT = 2 ** 63


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]}... is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) >= MAX_INT:
        raise ValueError(f"integer {text[:20]}... is out of range")
    return value


# A number can only be out of range with a run of 19+ digits (|int| >= 2**63 needs 19; a float past
# 1.8e308 needs 309 integer digits) or a 3-digit exponent. Bodies without either (nearly all) are parsed
# by the C parser alone; the others take the per-number checks. Strings may match too: merely slower.
_MAYBE_OUT_OF_RANGE = re.compile(r"\d{19}|[eE][+-]?\d{3}")
_MAYBE_OUT_OF_RANGE_BYTES = re.compile(rb"\d{19}|[eE][+-]?\d{3}")


def loads(raw: bytes | str):
    """json.loads, refusing NaN, Infinity and out-of-range numbers (ValueError; RecursionError if too deep)."""
    probe = _MAYBE_OUT_OF_RANGE_BYTES if isinstance(raw, (bytes, bytearray)) else _MAYBE_OUT_OF_RANGE
    if probe.search(raw) is None:
        return json.loads(raw, parse_constant=_no_constant)
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)


def has_lone_surrogate(raw: bytes, value) -> bool:
    """True if the decoded ``value`` holds a string with an unpaired surrogate (checked only if ``raw`` has one)."""
    if not _SURROGATE_ESCAPE.search(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")):
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
