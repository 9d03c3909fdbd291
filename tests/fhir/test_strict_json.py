"""The fast JSON decoder must accept, refuse and read exactly what the stdlib reference does.

Request bodies and FHIR server answers are decoded by orjson for speed; a body
that decodes differently there (an out-of-range number let through, a value read
as another type, a body an EHR sends that the stdlib accepts refused) would
change what the rules see. Each case is decoded both ways and compared,
types included (1 and 1.0 are equal in Python but not the same reading).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.fhir import strict_json

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "fhir").glob("*.json"))


def _reading(raw: bytes, decode=strict_json.loads):
    """What a decoder (the service's, unless given) makes of ``raw``: ('ok', value) or ('refused', the error
    and its message)."""
    try:
        return "ok", decode(raw)
    except (ValueError, RecursionError) as exc:
        return "refused", f"{type(exc).__name__}: {exc}"


def _same(a, b) -> bool:
    """Equal and of the same types throughout: the stdlib writes 1 and 1.0, 0.0 and -0.0, True and 1 apart."""
    return json.dumps(a) == json.dumps(b)


def assert_read_as_reference(raw: bytes) -> None:
    got, expected = _reading(raw), _reading(raw, strict_json.stdlib_loads)
    assert got[0] == expected[0], (raw[:80], got, expected)
    assert _same(got[1], expected[1]), (raw[:80], got, expected)


VALUE = b'{"resourceType": "Observation", "valueQuantity": {"value": %s, "unit": "10*9/L"}}'
NUMBERS = ["0", "-0", "-0.0", "15", "1.5", "1e2", "1E+2", "2.5e-3", "1e-400", "1.5e308", "1.7976931348623157e308",
           "1.7976931348623159e308", "1e400", "-1e999", "2.2250738585072011e-308", "0.30000000000000004441",
           "922337203685477580", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
           "-9223372036854775809", "18446744073709551615", "18446744073709551616", "9" * 30, "9" * 5000,
           "123456789012345678901.5", "1234567890123456789e-5", "NaN", "Infinity", "-Infinity", "01", "1.", ".5",
           "+1", "1e", "-", "0x10", "1_000"]
BODIES = [b"", b" ", b"{", b"null", b"42", b'"x"', b"[]", b'{"a":1,}', b"[1,]", b"{'a':1}", b'{"a":1}x', b"\x00\x01\x02",
          b"\xff\xfe\xfa not utf-8", b'{"a":"\xed\xa0\x80"}', b'{"a":"\xc0\x80"}', b'{"a":"x\ty"}', b'{"a":"\\x"}',
          b"\xef\xbb\xbf" + b'{"a":1}',                               # UTF-8 byte order mark: the stdlib reads it
          '{"a": "é"}'.encode("utf-16"), '{"a": 1}'.encode("utf-16-le"), '{"a": 1}'.encode("utf-32"),
          b'{"a":"\\ud800"}', b'{"a":"\\udfff x"}', b'{"\\ud800":1}', b'{"a":"\\uD800\\u0041"}',
          b'{"a":"\\ud83d\\ude00"}', b'{"a":"\\u0000"}', b'{"a":1,"a":2}', b'{"id":"12345678901234567890123-e400"}',
          b"[" * 600 + b"]" * 600, b"[" * 1100 + b"]" * 1100, b"[" * 10_000, b'{"a":' * 2000 + b"1" + b"}" * 2000]


@pytest.mark.parametrize("number", NUMBERS)
def test_every_number_is_read_or_refused_as_the_stdlib_reference_does(number):
    assert_read_as_reference(VALUE % number.encode())


def test_out_of_range_integers_stay_refused():
    """orjson alone would read these as 1e30 and 18446744073709551615; both are refused as before."""
    for number in ("9" * 30, "18446744073709551615", "-9223372036854775809"):
        with pytest.raises(ValueError, match="out of range"):
            strict_json.loads(VALUE % number.encode())


@pytest.mark.parametrize("raw", BODIES, ids=range(len(BODIES)))
def test_every_odd_body_is_read_or_refused_as_the_stdlib_reference_does(raw):
    assert_read_as_reference(raw)


def test_what_real_ehrs_send_is_still_read():
    """A byte order mark and UTF-16 are not RFC 8259 but unambiguous; the stdlib reads them, so must we."""
    assert strict_json.loads(b"\xef\xbb\xbf" + b'{"hook": "order-sign"}') == {"hook": "order-sign"}
    assert strict_json.loads('{"hook": "order-sign"}'.encode("utf-16")) == {"hook": "order-sign"}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_every_fixture_is_read_as_the_stdlib_reference_reads_it(path):
    raw = path.read_bytes()
    assert _reading(raw)[0] == "ok"
    assert_read_as_reference(raw)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, ascii_only=st.booleans())
def test_generated_documents_are_read_as_the_stdlib_reference_reads_them(value, ascii_only):
    assert_read_as_reference(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(literal=st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?\Z"))
def test_generated_number_literals_are_read_as_the_stdlib_reference_reads_them(literal):
    assert_read_as_reference(VALUE % literal.encode())
