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
    if len(text) < 19:                    # the usual case: at most 18 digits is always in range
        return int(text)
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) >= MAX_INT:
        raise ValueError(f"integer {text[:20]}... is out of range")
    return value


def loads(raw: bytes | str):
    """json.loads, refusing NaN, Infinity and out-of-range numbers (ValueError; RecursionError if too deep)."""
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)


def has_lone_surrogate(raw: bytes, value) -> bool:
    """True if the decoded ``value`` holds a string with an unpaired surrogate (checked only if ``raw`` has one)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if b"\\" not in data:          # no escape at all (one memchr; a multi-byte needle scans far slower)
        return False
    if not _SURROGATE_ESCAPE.search(data):
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
