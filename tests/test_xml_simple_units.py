"""Simple XSD types compiled (gateway/xml/simple.py): each type's lexical space, white space and facets,
the JSON value it reads to and the text it writes, with the exact messages clients see in a fault's
detail or a 422's errors; and round trips of generated values, text -> JSON -> text."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
import xmlschema
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.xml.simple import SAFE_INTEGER, Errors, Simple, compile_simple

XSD = "http://www.w3.org/2001/XMLSchema"
TYPES = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t">
  <xs:simpleType name="Money"><xs:restriction base="xs:decimal"><xs:totalDigits value="5"/>
    <xs:fractionDigits value="2"/><xs:minInclusive value="0"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="Code"><xs:restriction base="xs:string"><xs:pattern value="[A-Z]{2}"/></xs:restriction>
    </xs:simpleType>
  <xs:simpleType name="CodeH"><xs:restriction base="t:Code"><xs:pattern value="H.*"/></xs:restriction>
    </xs:simpleType>
  <xs:simpleType name="Colour"><xs:restriction base="xs:token"><xs:enumeration value="red"/>
    <xs:enumeration value="dark blue"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="Status"><xs:restriction base="xs:int"><xs:enumeration value="1"/>
    <xs:enumeration value="10"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="Short"><xs:restriction base="xs:string"><xs:minLength value="2"/>
    <xs:maxLength value="4"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="Ints"><xs:list itemType="xs:int"/></xs:simpleType>
  <xs:simpleType name="Words"><xs:list itemType="xs:string"/></xs:simpleType>
  <xs:simpleType name="ShortWords"><xs:list><xs:simpleType><xs:restriction base="xs:token">
    <xs:maxLength value="3"/></xs:restriction></xs:simpleType></xs:list></xs:simpleType>
  <xs:simpleType name="IntOrFlag"><xs:union memberTypes="xs:int xs:boolean"/></xs:simpleType>
  <xs:simpleType name="AmountOrNA"><xs:union memberTypes="xs:decimal"><xs:simpleType>
    <xs:restriction base="xs:token"><xs:enumeration value="N/A"/></xs:restriction></xs:simpleType>
  </xs:union></xs:simpleType>
  <xs:simpleType name="Since2000"><xs:restriction base="xs:gYear"><xs:minInclusive value="2000"/>
    </xs:restriction></xs:simpleType>
  <xs:simpleType name="Percent"><xs:restriction base="xs:double"><xs:maxInclusive value="100"/>
    </xs:restriction></xs:simpleType>
  <xs:simpleType name="Triple"><xs:restriction base="t:Ints"><xs:length value="3"/></xs:restriction>
    </xs:simpleType>
  <xs:simpleType name="Digits"><xs:restriction base="t:IntOrFlag"><xs:pattern value="[0-9]+"/>
    </xs:restriction></xs:simpleType>
</xs:schema>"""


@cache
def _schema() -> Any:
    return xmlschema.XMLSchema10(TYPES)


@cache
def simple(name: str) -> Simple:
    """The compiled type: ``xs:int`` for a built-in, ``Money`` for one of the schema above."""
    schema = _schema()
    if name.startswith("xs:"):
        return compile_simple(schema.maps.types[f"{{{XSD}}}{name[3:]}"])
    return compile_simple(schema.types[name])


def decode(name: str, text: str, node: Any = None) -> tuple[Any, Errors]:
    errors: Errors = []
    return simple(name).decode(text, "/v", errors, node), errors


def encode(name: str, value: Any, node: Any = None) -> tuple[str | None, Errors]:
    errors: Errors = []
    return simple(name).encode(value, "$.v", errors, node), errors


def message(errors: Errors) -> str:
    """The one error's message. Facet messages are xmlschema's words, passed through to clients: the
    tests below match the part that names the limit; the gateway's own messages are matched whole."""
    assert len(errors) == 1, errors
    return errors[0]["message"]


# --- xs:boolean ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), (" false\n", False), ("0", False)])
def test_boolean_reads_its_four_lexical_forms(text: str, value: bool) -> None:
    assert decode("xs:boolean", text) == (value, [])


@pytest.mark.parametrize("text", ["yes", "TRUE", "", "2"])
def test_boolean_refuses_other_text(text: str) -> None:
    """A value that breaks the type is an error, never read as false (the verdict must not lie)."""
    value, errors = decode("xs:boolean", text)
    assert value is None
    assert message(errors) == f"{text!r} is not a boolean (true, false, 1, 0)"


@pytest.mark.parametrize("value", ["true", 1, 0, None])
def test_boolean_json_must_be_true_or_false(value: Any) -> None:
    assert encode("xs:boolean", value) == (None, [{"path": "$.v", "message": "must be true or false"}])
    assert encode("xs:boolean", False) == ("false", [])


# --- integers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "value"), [
    ("xs:int", "+05", 5), ("xs:byte", " -128 ", -128), ("xs:long", "9007199254740991", SAFE_INTEGER),
    ("xs:integer", "9007199254740992", "9007199254740992"),
    ("xs:integer", "-99999999999999999999", "-99999999999999999999"),
    ("xs:unsignedLong", "18446744073709551615", "18446744073709551615"),
])
def test_integers_are_numbers_up_to_two_to_the_53(name: str, text: str, value: Any) -> None:
    """I-JSON: integers are numbers while exact in every reader, strings of digits beyond."""
    assert decode(name, text) == (value, [])


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("xs:byte", "128", "value must be -128 <= x < 128"),
    ("xs:unsignedInt", "-1", "value must be 0 <= x < 2^32"),
    ("xs:positiveInteger", "0", "positive"),
    ("xs:int", "1.0", "'1.0' is not an integer (int)"),
    ("xs:int", "1 2", "'1 2' is not an integer (int)"),
    ("Status", "2", "value must be one of [1, 10]"),
])
def test_integer_range_and_form(name: str, text: str, reason: str) -> None:
    value, errors = decode(name, text)
    assert value is None and reason in message(errors)


def test_integer_json() -> None:
    """A number or a string of digits; booleans and floats are not integers."""
    assert encode("xs:int", 7) == ("7", [])
    assert encode("xs:integer", "123456789012345678901234567890") == ("123456789012345678901234567890", [])
    for bad in (True, 1.0, "x", "1e3", None):
        assert encode("xs:int", bad) == (None, [{"path": "$.v", "message": "must be an integer (int)"}])
    assert message(encode("xs:int", "99999999999999999999")[1]) == "value must be -2^31 <= x < 2^31"


# --- decimals ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [("12.50", "12.50"), (" 0.1 ", "0.1"), ("+.5", "+.5"),
                                             ("1234.5", "1234.5")])
def test_decimal_is_the_exact_text(text: str, value: str) -> None:
    """A decimal stays a string as written (12.50 keeps its zero): JSON numbers are binary floats."""
    assert decode("Money", text) == (value, [])


@pytest.mark.parametrize(("text", "reason"), [
    ("123.456", "the number of digits has to be lesser or equal than 5"),
    ("1.234", "fraction digits"),
    ("-1", "value has to be greater or equal than Decimal('0')"),
    ("1e3", "'1e3' is not a decimal number (Money)"),
    ("12,5", "'12,5' is not a decimal number (Money)"),
    ("NaN", "'NaN' is not a decimal number (Money)"),
])
def test_decimal_facets(text: str, reason: str) -> None:
    value, errors = decode("Money", text)
    assert value is None and reason in message(errors)


@pytest.mark.parametrize(("value", "text"), [("12.50", "12.50"), (3, "3"), (0.1, "0.1"),
                                             (1e20, "100000000000000000000"), (2.5e-7, "0.00000025")])
def test_decimal_json_takes_strings_and_numbers(value: Any, text: str) -> None:
    """The canonical JSON is a string; a number is accepted and written without an exponent."""
    assert encode("xs:decimal", value) == (text, [])


@pytest.mark.parametrize("value", [math.nan, math.inf, True, None, [1]])
def test_decimal_json_refuses_what_is_not_a_number(value: Any) -> None:
    assert encode("xs:decimal", value) == (None, [{
        "path": "$.v", "message": "must be a decimal number as a string (decimal)"}])


# --- float and double ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "value"), [
    ("xs:double", "1.5", 1.5), ("xs:double", "-1E3", -1000.0), ("xs:double", "INF", "INF"),
    ("xs:double", "-INF", "-INF"), ("xs:double", "NaN", "NaN"), ("xs:double", "1e400", "INF"),
    ("xs:double", "-1e400", "-INF"), ("xs:float", "1e39", 1e39), ("Percent", "99.5", 99.5),
])
def test_floating_point_reads(name: str, text: str, value: Any) -> None:
    """Numbers as numbers; the special values (and overflow to them) as "INF", "-INF", "NaN"."""
    assert decode(name, text) == (value, [])


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("xs:double", "+INF", "'+INF' does not match the pattern of double"),
    ("xs:double", "inf", "'inf' does not match the pattern of double"),
    ("xs:double", "1,5", "'1,5' does not match the pattern of double"),
    ("Percent", "100.5", "100.0"),
])
def test_floating_point_refusals(name: str, text: str, reason: str) -> None:
    value, errors = decode(name, text)
    assert value is None and reason in message(errors)


@pytest.mark.parametrize(("value", "text"), [(1, "1.0"), (1.5, "1.5"), (math.nan, "NaN"), (math.inf, "INF"),
                                             (-math.inf, "-INF"), ("NaN", "NaN"), ("-INF", "-INF")])
def test_floating_point_json(value: Any, text: str) -> None:
    assert encode("xs:double", value) == (text, [])


@pytest.mark.parametrize("value", ["1.5", True, None])
def test_floating_point_json_refusals(value: Any) -> None:
    assert encode("xs:double", value) == (None, [{
        "path": "$.v", "message": 'must be a number, or "INF", "-INF", "NaN" (double)'}])


# --- strings, white space, patterns, enumerations, lengths -----------------------------------------------

@pytest.mark.parametrize(("name", "text", "value"), [
    ("xs:string", " a\tb\n ", " a\tb\n "),
    ("xs:normalizedString", "a\tb\nc\r", "a b c "),
    ("xs:token", "  a \t b  ", "a b"),
    ("Colour", "  dark \n blue ", "dark blue"),
    ("xs:anySimpleType", " x ", " x "),
])
def test_white_space_follows_the_type(name: str, text: str, value: str) -> None:
    """xs:string keeps white space, normalizedString replaces it, token (and its restrictions) collapse it."""
    assert decode(name, text) == (value, [])


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("Code", "abc", "'abc' does not match the pattern of Code"),
    ("CodeH", "AB", "'AB' does not match the pattern of CodeH"),
    ("Colour", "green", "value must be one of ['red', 'dark blue']"),
    ("Short", "a", "value length cannot be lesser than 2"),
    ("Short", "abcde", "value length cannot be greater than 4"),
    ("xs:language", "not a tag", "'not a tag' does not match the pattern of language"),
])
def test_string_facets(name: str, text: str, reason: str) -> None:
    """Patterns of every derivation step apply, with enumerations and lengths."""
    value, errors = decode(name, text)
    assert value is None and reason in message(errors)


def test_string_pattern_of_each_step_must_match() -> None:
    assert decode("CodeH", "HN") == ("HN", [])


def test_string_json() -> None:
    assert encode("Short", "abc") == ("abc", [])
    assert encode("xs:string", 5) == (None, [{"path": "$.v", "message": "must be a string (string)"}])
    assert encode("xs:string", "a\x01b") == (None, [{"path": "$.v",
                                                     "message": "contains characters XML cannot carry"}])
    assert encode("xs:string", "\ud800") == (None, [{"path": "$.v",
                                                     "message": "contains characters XML cannot carry"}])
    assert message(encode("Colour", "green")[1]) == "value must be one of ['red', 'dark blue']"


# --- dates, durations, binary: the text, checked ------------------------------------------------------

@pytest.mark.parametrize(("name", "text"), [
    ("xs:date", "2026-11-21"), ("xs:date", "2026-11-21+07:00"), ("xs:dateTime", "2026-11-21T09:00:00Z"),
    ("xs:time", "23:59:59.5"), ("xs:duration", "P1Y2M3DT4H"), ("xs:gYear", "2026"),
    ("xs:base64Binary", "AAA="), ("xs:hexBinary", "0FA1"), ("Since2000", "2026"),
])
def test_dates_and_binary_are_their_text(name: str, text: str) -> None:
    assert decode(name, text) == (text, [])


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("xs:date", "2026-02-30", "'2026-02-30' is not a valid date"),
    ("xs:date", "21/11/2026", "'21/11/2026' is not a valid date"),
    ("xs:dateTime", "2026-11-21", "'2026-11-21' is not a valid dateTime"),
    ("xs:duration", "P", "'P' is not a valid duration"),
    ("xs:base64Binary", "A", "'A' is not a valid base64Binary"),
    ("xs:hexBinary", "0FA", "'0FA' is not a valid hexBinary"),
    ("Since2000", "1999", "value has to be greater or equal than GregorianYear10(2000)"),
])
def test_dates_and_binary_refusals(name: str, text: str, reason: str) -> None:
    value, errors = decode(name, text)
    assert value is None and reason in message(errors)


def test_date_json_is_checked_before_writing() -> None:
    """Nothing invalid is ever written: the text is read back by the type first."""
    assert encode("xs:date", "2026-11-21") == ("2026-11-21", [])
    assert encode("xs:date", "2026-02-30") == (None, [{"path": "$.v",
                                                       "message": "'2026-02-30' is not a valid date"}])


# --- QName -------------------------------------------------------------------------------------------

def _node(nsmap: dict[str | None, str]) -> Any:
    return etree.Element("{urn:x}n", nsmap=nsmap)


def test_qname_reads_by_the_prefixes_in_scope() -> None:
    node = _node({"p": "urn:p", None: "urn:default"})
    assert decode("xs:QName", "p:code", node) == ("{urn:p}code", [])
    assert decode("xs:QName", "code", node) == ("{urn:default}code", [])
    assert decode("xs:QName", "code", _node({"p": "urn:p"})) == ("code", [])
    value, errors = decode("xs:QName", "q:code", node)
    assert value is None and message(errors) == "the prefix of 'q:code' is not declared"


def test_qname_writes_a_declared_prefix() -> None:
    node = _node({"p": "urn:p"})
    assert encode("xs:QName", "{urn:p}code", node) == ("p:code", [])
    assert encode("xs:QName", "code", node) == ("code", [])
    assert encode("xs:QName", "{}code", node) == ("code", [])
    assert message(encode("xs:QName", "{urn:q}code", node)[1]) == "no prefix is declared for urn:q"
    for bad in ("p:code", "{urn:p}1code", 5):
        assert message(encode("xs:QName", bad, node)[1]) == 'must be a name as "{namespace}local" (QName)'


# --- lists and unions ----------------------------------------------------------------------------------

def test_list_reads_to_an_array_of_typed_items() -> None:
    assert decode("Ints", " 1 +2\n\t3 ") == ([1, 2, 3], [])
    assert decode("Ints", "   ") == ([], [])
    assert decode("Ints", "1 x 3") == (None, [{"path": "/v[1]", "message": "'x' is not an integer (int)"}])
    assert decode("ShortWords", "ab cde abcd") == (None, [{"path": "/v[2]",
                                                          "message": "value length cannot be greater "
                                                                     "than 3"}])


def test_list_json() -> None:
    assert encode("Ints", [1, "2", 3]) == ("1 2 3", [])
    assert encode("Ints", []) == ("", [])
    assert encode("Ints", "1 2") == (None, [{"path": "$.v", "message": "must be an array (Ints)"}])
    assert encode("Ints", [1, True]) == (None, [{"path": "$.v[1]", "message": "must be an integer (int)"}])
    for bad in (["a b"], [""], [" "]):
        assert encode("Words", bad) == (None, [{"path": "$.v[0]",
                                               "message": "list items cannot be empty or hold spaces"}])
    assert encode("Words", [" padded "]) == ("padded", [])


def test_union_value_is_its_text() -> None:
    """Which member type reads a union's text is the reader's business: the JSON is the text."""
    assert decode("IntOrFlag", " 5 ") == ("5", [])
    assert decode("IntOrFlag", "true") == ("true", [])
    assert decode("AmountOrNA", "1.50") == ("1.50", [])
    assert decode("AmountOrNA", "N/A") == ("N/A", [])
    assert decode("IntOrFlag", "x") == (None, [{"path": "/v", "message": "'x' is not a valid IntOrFlag"}])


def test_union_json_takes_any_member_value() -> None:
    assert encode("IntOrFlag", True) == ("true", [])
    assert encode("IntOrFlag", 5) == ("5", [])
    assert encode("IntOrFlag", "7") == ("7", [])
    assert encode("AmountOrNA", 2.5) == ("2.5", [])
    assert encode("IntOrFlag", 1.5) == (None, [{"path": "$.v", "message": "'1.5' is not a valid IntOrFlag"}])
    assert encode("IntOrFlag", None) == (None, [{"path": "$.v", "message": "must be a string (IntOrFlag)"}])


def test_restricted_list_keeps_its_length_facet() -> None:
    """A restriction of a list type (GML's coordinate lists): its facets count the items."""
    assert decode("Triple", "1 2 3") == ([1, 2, 3], [])
    assert decode("Triple", "1 2")[0] is None
    assert decode("Triple", "1 2") == (None, [{"path": "/v", "message": "length has to be 3"}])
    assert decode("Triple", "1 x 3") == (None, [{"path": "/v[1]", "message": "'x' is not an integer (int)"}])
    assert encode("Triple", [1, 2, 3]) == ("1 2 3", [])
    assert encode("Triple", [1, 2, 3, 4]) == (None, [{"path": "$.v", "message": "length has to be 3"}])


def test_restricted_union_keeps_its_pattern() -> None:
    """A restriction of a union type: its pattern applies to the text, whichever member reads it."""
    assert decode("Digits", "5") == ("5", [])
    assert decode("Digits", "true")[0] is None
    assert decode("Digits", "true") == (None, [{"path": "/v", "message": "'true' does not match the pattern "
                                                "of Digits"}])
    assert encode("Digits", 7) == ("7", [])
    assert encode("Digits", False)[0] is None


# --- round trips of generated values ---------------------------------------------------------------

@given(st.integers())
def test_integer_round_trip(value: int) -> None:
    """Any integer written for xs:integer reads back as the same number, or its digits beyond 2^53."""
    text, errors = encode("xs:integer", value)
    assert errors == [] and text == str(value)
    expected: Any = value if abs(value) <= SAFE_INTEGER else str(value)
    assert decode("xs:integer", text) == (expected, [])


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int_round_trip_both_ways(value: int) -> None:
    text, _ = encode("xs:int", value)
    assert text is not None and decode("xs:int", text) == (value, [])
    assert encode("xs:int", decode("xs:int", f" +{value} " if value >= 0 else str(value))[0])[0] == str(value)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_round_trip_is_exact(value: Decimal) -> None:
    """A decimal written as its fixed-point text reads back as exactly that text, equal in value."""
    text = format(value, "f")
    written, errors = encode("xs:decimal", text)
    assert errors == [] and written == text
    read, errors = decode("xs:decimal", written)
    assert errors == [] and read == text and Decimal(read) == value


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_double_round_trip(value: float) -> None:
    """Any double goes out and back unchanged (NaN and the infinities as their names)."""
    text, errors = encode("xs:double", value)
    assert errors == [] and text is not None
    read, errors = decode("xs:double", text)
    assert errors == []
    if math.isnan(value):
        assert read == "NaN"
    elif math.isinf(value):
        assert read == ("INF" if value > 0 else "-INF")
    else:
        assert read == value and encode("xs:double", read)[0] == text


@given(st.booleans())
def test_boolean_round_trip(value: bool) -> None:
    text, _ = encode("xs:boolean", value)
    assert text is not None and decode("xs:boolean", text) == (value, [])


@given(st.dates(min_value=dt.date(1, 1, 1)), st.sampled_from(["", "Z", "+07:00", "-05:30"]))
def test_date_round_trip(day: dt.date, zone: str) -> None:
    text = day.isoformat() + zone
    assert encode("xs:date", text) == (text, [])
    assert decode("xs:date", f"\n {text} ") == (text, [])


@given(st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=6))
def test_int_list_round_trip(values: list[int]) -> None:
    text, errors = encode("Ints", values)
    assert errors == [] and text is not None
    assert decode("Ints", text) == (values, [])


@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                            exclude_characters="\ufffe\uffff"), max_size=20))
def test_token_reads_collapsed(text: str) -> None:
    """xs:token reads any text with its XML white space collapsed, and writes it back unchanged."""
    collapsed = " ".join(part for part in text.replace("\t", " ").split(" ") if part)
    read, errors = decode("xs:token", text)
    assert errors == [] and read == collapsed
    assert encode("xs:token", read) == (read, [])
