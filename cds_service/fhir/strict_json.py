"""Strict JSON for untrusted input (request bodies, FHIR server answers).

RFC 8259 JSON has no NaN or Infinity (Python's parser accepts them), and numbers
beyond 64 bits or a double are not clinical values: they are refused at parse
time instead of failing deep inside a rule (OverflowError) or, worse, passing
every comparison silently (NaN < limit is False). Unpaired UTF-16 surrogate
escapes (``"\\ud800"``) decode to strings that cannot be encoded again.

Bodies are decoded by orjson (about twice the stdlib's speed on a FHIR bundle),
which refuses everything above by itself except integer literals of 19 or more
digits (it reads those up to 2**64 as integers, beyond as floats). Bodies with
such a literal, and every body orjson refuses, go through the stdlib parser
below, so what is accepted, what is refused and each error message are the
stdlib's, exactly as before.
"""

from __future__ import annotations

import json
import math
import re

import orjson

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
MAX_INT = 2**63
DECODER = f"orjson {orjson.__version__}, stdlib json where orjson refuses or may misread"
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_INTEGER = b"0" * 19  # a run of 19 digits: the shortest that can reach MAX_INT


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]}... is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) < 19:  # the usual case: at most 18 digits is always in range
        return int(text)
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) >= MAX_INT:
        raise ValueError(f"integer {text[:20]}... is out of range")
    return value


def loads(raw: bytes | str):
    """json.loads, refusing NaN, Infinity and out-of-range numbers (ValueError; RecursionError if too deep)."""
    if isinstance(raw, bytes) and _LONG_INTEGER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the stdlib decides, with its own message
    return stdlib_loads(raw)


def stdlib_loads(raw: bytes | str):
    """The reference parser: what :func:`loads` accepts and refuses, and why."""
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)


def has_lone_surrogate(raw: bytes, value) -> bool:
    """True if the decoded ``value`` holds a string with an unpaired surrogate (checked only if ``raw`` has one)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if b"\\" not in data:  # no escape at all (one memchr; a multi-byte needle scans far slower)
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
