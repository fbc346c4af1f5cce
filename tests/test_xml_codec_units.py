"""Schema-driven XML <-> JSON for elements and content models (gateway/xml/codec.py), one behaviour at
a time: xsi:nil, fixed values, attributes (required, wildcard, same local name twice), simple content,
choices, arrays and their bounds, wildcards strict and lax, untyped content, ordered "#content", and
the exact path and message of each problem; then a real schema of the population database, and
generated citizens through JSON -> XML -> JSON."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.xml import safe
from gateway.xml.catalog import load_xsd
from gateway.xml.codec import MAX_ERRORS, Compiler, Element, TranslationError, compile_element, untyped
from tests.conftest import fixtures_dir

C = "urn:lienthong:test:codec"
OTHER = "urn:lienthong:test:other"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:c="{C}" targetNamespace="{C}"
           elementFormDefault="qualified">
  <xs:attribute name="lang" type="xs:language"/>
  <xs:element name="Note" type="xs:string"/>
  <xs:element name="Person">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="name" type="xs:string"/>
        <xs:element name="phone" type="xs:string" minOccurs="0" maxOccurs="3"/>
        <xs:element name="age" type="xs:int" minOccurs="0"/>
        <xs:element name="version" type="xs:string" fixed="1.0" minOccurs="0"/>
        <xs:element name="remark" type="xs:string" minOccurs="0" nillable="true"/>
      </xs:sequence>
      <xs:attribute name="id" type="xs:int" use="required"/>
      <xs:attribute name="kind" type="xs:string" fixed="citizen"/>
      <xs:attribute name="lang" type="xs:string"/>
      <xs:attribute ref="c:lang"/>
      <xs:anyAttribute namespace="##other" processContents="skip"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="Contact">
    <xs:complexType>
      <xs:sequence>
        <xs:choice>
          <xs:element name="email" type="xs:string"/>
          <xs:element name="phone" type="xs:string"/>
        </xs:choice>
        <xs:element name="tag" type="xs:string" minOccurs="1" maxOccurs="2"/>
        <xs:choice minOccurs="0">
          <xs:element name="fax" type="xs:string"/>
          <xs:element name="telex" type="xs:string"/>
        </xs:choice>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="Amount">
    <xs:complexType><xs:simpleContent><xs:extension base="xs:decimal">
      <xs:attribute name="currency" type="xs:string" use="required"/>
    </xs:extension></xs:simpleContent></xs:complexType>
  </xs:element>
  <xs:element name="Nothing" nillable="true">
    <xs:complexType><xs:attribute name="why" type="xs:string"/></xs:complexType>
  </xs:element>
  <xs:element name="Strict">
    <xs:complexType><xs:sequence>
      <xs:element name="head" type="xs:string"/>
      <xs:any namespace="##targetNamespace" processContents="strict" minOccurs="0" maxOccurs="2"/>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:element name="Lax">
    <xs:complexType><xs:sequence>
      <xs:any namespace="##other" processContents="lax" minOccurs="1" maxOccurs="unbounded"/>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:element name="Events">
    <xs:complexType><xs:choice maxOccurs="unbounded">
      <xs:element name="open" type="xs:date"/>
      <xs:element name="close" type="xs:date"/>
    </xs:choice></xs:complexType>
  </xs:element>
  <xs:element name="Letter">
    <xs:complexType mixed="true"><xs:sequence>
      <xs:element name="b" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:element name="Numbers">
    <xs:complexType><xs:sequence>
      <xs:element name="n" type="xs:int" maxOccurs="unbounded"/>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:element name="Anything"/>
</xs:schema>"""


@cache
def _compiled() -> tuple[Any, Compiler]:
    schema = xmlschema.XMLSchema10(SCHEMA)
    return schema, Compiler(schema.maps)


def codec(name: str) -> Element:
    schema, compiler = _compiled()
    return compile_element(schema.elements[name], compiler)


def xml(text: str) -> Any:
    return safe.parse(text.encode())


def doc(name: str, inner: str = "", attrs: str = "") -> Any:
    return xml(f'<c:{name} xmlns:c="{C}" xmlns:o="{OTHER}" xmlns:xsi="{XSI}" {attrs}>{inner}</c:{name}>')


def errors_of(call: Any) -> list[dict[str, str]]:
    with pytest.raises(TranslationError) as refused:
        call()
    return refused.value.errors


def reading(name: str, inner: str = "", attrs: str = "") -> list[dict[str, str]]:
    return errors_of(lambda: codec(name).to_json(doc(name, inner, attrs)))


def writing(name: str, value: Any) -> list[dict[str, str]]:
    return errors_of(lambda: codec(name).to_xml(value))


def e(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}


# --- a plain sequence: attributes, arrays, fixed values, nil -------------------------------------------


def test_person_reads_and_writes_back() -> None:
    """Attributes as "@name", a repeatable element always an array, the namespace's own prefix kept."""
    node = doc(
        "Person",
        "<c:name>An</c:name><c:phone>1</c:phone><c:age>+07</c:age><c:version>1.0</c:version>",
        'id="5" kind="citizen" o:extra="x" c:lang="vi"',
    )
    value = codec("Person").to_json(node)
    assert value == {
        "@id": 5,
        "@kind": "citizen",
        "@{urn:lienthong:test:other}extra": "x",
        f"@{{{C}}}lang": "vi",
        "name": "An",
        "phone": ["1"],
        "age": 7,
        "version": "1.0",
    }
    again = codec("Person").to_xml(value)
    assert again.prefix == "c" and again.get(f"{{{OTHER}}}extra") == "x"
    assert codec("Person").to_json(again) == value


def test_same_local_name_attributes_are_told_apart() -> None:
    """Two attributes named lang, one unqualified and one in the schema's namespace: the qualified one
    is keyed "@{namespace}lang", so neither shadows the other, and each is checked by its own type."""
    value = codec("Person").to_json(doc("Person", "<c:name>A</c:name>", 'id="1" lang="plain" c:lang="vi"'))
    assert value == {"@id": 1, "@lang": "plain", f"@{{{C}}}lang": "vi", "name": "A", "phone": []}
    assert reading("Person", "<c:name>A</c:name>", 'id="1" lang="not a tag" c:lang="not a tag"') == [
        e("/Person/@lang", "'not a tag' does not match the pattern of language")
    ]
    assert {k for k in codec("Person").fields() if "lang" in k} == {"@lang", f"@{{{C}}}lang"}


def test_person_reading_errors_have_paths() -> None:
    assert reading("Person", "<c:name>A</c:name>", 'kind="soldier"') == [
        e("/Person/@kind", "must be 'citizen'"),
        e("/Person", "attribute id is required"),
    ]
    assert reading("Person", "<c:name>A</c:name><c:version>2.0</c:version>", 'id="1"') == [
        e("/Person/version", "must be '1.0'")
    ]
    assert reading("Person", "<c:name>A</c:name>", 'id="1" bogus="1"') == [
        e("/Person/@bogus", "attribute bogus is not allowed on Person")
    ]
    assert reading("Person", "<c:name>A</c:name>", 'id="1" xsi:type="c:Other"') == [
        e("/Person", "xsi:type (type substitution) is not supported")
    ]
    assert reading("Person", "<c:name>A</c:name>", 'id="1" xsi:bogus="1"') == [
        e("/Person", f"attribute {{{XSI}}}bogus is not allowed")
    ]
    assert reading("Person", "text<c:name>A</c:name>", 'id="1"') == [
        e("/Person", "Person has child elements only, no text")
    ]


def test_schema_location_hints_are_ignored() -> None:
    value = codec("Person").to_json(
        doc("Person", "<c:name>A</c:name>", 'id="1" xsi:schemaLocation="urn:x x.xsd"')
    )
    assert value == {"@id": 1, "name": "A", "phone": []}  # the content went through phone: an empty array


def test_out_of_order_children_are_named() -> None:
    """Children out of order or too many: the general matcher says what it expected where."""
    assert reading("Person", "<c:age>1</c:age><c:name>A</c:name>", 'id="1"') == [
        e("/Person/age", "Person has age where name was expected")
    ]
    assert reading("Person", "<c:name>A</c:name>" + "<c:phone>1</c:phone>" * 4, 'id="1"') == [
        e("/Person/phone", "Person has phone where the end of the content was expected")
    ]
    assert reading("Person", "", 'id="1"') == [e("/Person", "Person is incomplete: expected name")]
    assert reading("Person", "<c:name>A</c:name><c:name>B</c:name>", 'id="1"') == [
        e("/Person/name", "Person has name where the end of the content was expected")
    ]


def test_nil() -> None:
    """xsi:nil="true" is null where the schema allows nil; an error where it does not, or with content."""
    assert (
        codec("Person").to_json(doc("Person", '<c:name>A</c:name><c:remark xsi:nil="1"/>', 'id="1"'))[
            "remark"
        ]
        is None
    )
    assert reading("Person", '<c:name xsi:nil="true"/>', 'id="1"') == [
        e("/Person/name", "name cannot be nil")
    ]
    assert reading("Person", '<c:name>A</c:name><c:remark xsi:nil="true">x</c:remark>', 'id="1"') == [
        e("/Person/remark", "remark is nil and so must be empty")
    ]
    assert (
        codec("Person").to_json(
            doc("Person", '<c:name>A</c:name><c:remark xsi:nil="false">x</c:remark>', 'id="1"')
        )["remark"]
        == "x"
    )


def test_nil_with_attributes_is_an_object() -> None:
    node = doc("Nothing", "", 'xsi:nil="true" why="unknown"')
    assert codec("Nothing").to_json(node) == {"#nil": True, "@why": "unknown"}
    again = codec("Nothing").to_xml({"#nil": True, "@why": "unknown"})
    assert again.get(f"{{{XSI}}}nil") == "true" and again.get("why") == "unknown"
    assert codec("Nothing").to_json(doc("Nothing", "", 'xsi:nil="true"')) is None
    assert codec("Nothing").to_xml(None).get(f"{{{XSI}}}nil") == "true"


def test_writing_person_errors() -> None:
    assert writing("Person", {"name": "A"}) == [e("$.@id", "is required")]
    assert writing("Person", {"@id": 1, "@kind": "soldier", "name": "A"}) == [
        e("$.@kind", "must be 'citizen'")
    ]
    assert writing("Person", {"@id": 1, "@nope": "x", "name": "A"}) == [
        e("$.@nope", "is not an attribute of Person")
    ]
    assert writing("Person", {"@id": 1, f"@{{{OTHER}}}x": 5, "name": "A"}) == [
        e(f"$.@{{{OTHER}}}x", "must be a string")
    ]
    assert writing("Person", {"@id": 1, f"@{{{C}}}x": "v", "name": "A"}) == [
        e(f"$.@{{{C}}}x", f"attribute {{{C}}}x is not allowed on Person")
    ]
    assert writing("Person", {"@id": 1, f"@{{{XSI}}}nil": "true", "name": "A"}) == [
        e(f"$.@{{{XSI}}}nil", f"attribute {{{XSI}}}nil is not allowed on Person")
    ]
    assert writing("Person", {"@id": 1}) == [e("$.name", "is required")]
    assert writing("Person", {"@id": 1, "name": "A", "phone": "1"}) == [e("$.phone", "must be an array")]
    assert writing("Person", {"@id": 1, "name": "A", "phone": ["1", "2", "3", "4"]}) == [
        e("$.phone", "takes at most 3 items")
    ]
    assert writing("Person", {"@id": 1, "name": "A", "version": "2"}) == [e("$.version", "must be '1.0'")]
    assert writing("Person", {"@id": 1, "name": None}) == [e("$.name", "must not be null")]
    assert writing("Person", {"@id": 1, "name": "A", "extra": 1}) == [
        e("$.extra", "is not a field of Person")
    ]
    assert writing("Person", ["A"]) == [e("$", "must be an object (Person)")]


def test_failed_write_leaves_the_parent_clean() -> None:
    """A value that does not fit leaves nothing half-written in the envelope's Body."""
    body = etree.Element("Body")
    with pytest.raises(TranslationError):
        codec("Person").to_xml({"name": "A"}, body)
    assert len(body) == 0
    codec("Person").to_xml({"@id": 2, "name": "A"}, body)
    assert len(body) == 1 and body[0].get("id") == "2"


def test_codec_errors_stop_at_the_limit() -> None:
    """Content-model problems stop being collected at MAX_ERRORS: a hostile message cannot make the
    fault detail as long as itself."""
    errors = reading("Nothing", "", " ".join(f'a{i}="1"' for i in range(200)))
    assert len(errors) == MAX_ERRORS and errors[-1] == e(
        "/Nothing/@a49", "attribute a49 is not allowed on Nothing"
    )
    assert len(writing("Nothing", {f"@a{i}": "1" for i in range(200)})) == MAX_ERRORS


def test_bad_values_stop_at_the_limit() -> None:
    """Errors of simple values count towards MAX_ERRORS too, reading and writing."""
    read = reading("Numbers", "<c:n>x</c:n>" * 500)
    assert len(read) == MAX_ERRORS
    assert read[-1] == e(f"/Numbers/n[{MAX_ERRORS}]", "'x' is not an integer (int)")
    written = codec("Numbers").check({"n": ["x"] * 500})
    assert len(written) == MAX_ERRORS
    assert written[-1] == e(f"$.n[{MAX_ERRORS - 1}]", "must be an integer (int)")


def test_wrong_root_element_is_named() -> None:
    assert errors_of(lambda: codec("Person").to_json(doc("Contact", "<c:email>a</c:email><c:tag>t</c:tag>")))[
        0
    ] == e("/Person", f"expected element {{{C}}}Person, found {{{C}}}Contact")


# --- choices and array bounds in a general sequence ------------------------------------------------------


def test_choice_reads_the_chosen_key() -> None:
    value = codec("Contact").to_json(
        doc("Contact", "<c:phone>1</c:phone><c:tag>a</c:tag><c:telex>t</c:telex>")
    )
    assert value == {"phone": "1", "tag": ["a"], "telex": "t"}
    assert codec("Contact").to_json(codec("Contact").to_xml(value)) == value


def test_choice_writing_errors() -> None:
    assert writing("Contact", {"tag": ["t"]}) == [e("$", "needs one of email, phone")]
    assert writing("Contact", {"email": "a"}) == [e("$.tag", "is required")]
    assert writing("Contact", {"email": "a", "tag": []}) == [e("$.tag", "needs at least 1 items")]
    assert writing("Contact", {"email": "a", "tag": ["1", "2", "3"]}) == [e("$.tag", "takes at most 2 items")]
    assert writing("Contact", {"email": "a", "tag": "1"}) == [e("$.tag", "must be an array")]
    assert writing("Contact", {"email": "a", "tag": ["1"], "fax": "f", "telex": "t"})[0] == e(
        "$", "takes only one of fax, telex"
    )


def test_two_alternatives_of_a_choice_are_one_error() -> None:
    """Two alternatives of a choice are one error, the choice's: they are fields, not unknown keys."""
    assert writing("Contact", {"email": "a", "phone": "1", "tag": ["t"]}) == [
        e("$", "takes only one of email, phone")
    ]
    assert writing("Contact", {"email": "a", "tag": ["1"], "fax": "f", "telex": "t"}) == [
        e("$", "takes only one of fax, telex")
    ]
    assert writing("Contact", {"email": "a", "phone": "1", "tag": ["t"], "nope": 1}) == [
        e("$", "takes only one of email, phone"), e("$.nope", "is not a field of Contact")
    ]


def test_choice_reading_errors() -> None:
    assert reading("Contact", "<c:tag>a</c:tag>") == [
        e("/Contact/tag", "Contact has tag where email, phone was expected")
    ]
    assert reading("Contact", "<c:email>a</c:email><c:phone>1</c:phone>") == [
        e("/Contact/phone", "Contact has phone where tag was expected")
    ]


# --- simple content, empty content, untyped ----------------------------------------------------------


def test_simple_content_with_attributes() -> None:
    value = codec("Amount").to_json(doc("Amount", " 12.50 ", 'currency="VND"'))
    assert value == {"@currency": "VND", "$": "12.50"}
    assert codec("Amount").to_xml({"@currency": "VND", "$": 3}).text == "3"
    assert reading("Amount", "1<c:x/>", 'currency="VND"') == [
        e("/Amount", "Amount has text content only, no child elements")
    ]
    assert writing("Amount", {"@currency": "VND"}) == [e("$.$", "'' is not a decimal number (decimal)")]
    assert codec("Amount").fields() == frozenset({"@currency", "$"})


def test_empty_content_has_no_children() -> None:
    assert reading("Nothing", "<c:x/>") == [e("/Nothing/x", "Nothing has no child elements")]
    assert codec("Nothing").to_json(doc("Nothing", "", 'why="w"')) == {"@why": "w"}


def test_simple_element_takes_no_attributes_or_children() -> None:
    assert errors_of(lambda: codec("Note").to_json(doc("Note", "x", 'a="1"'))) == [
        e("/Note/@a", "attribute a is not allowed")
    ]
    assert errors_of(lambda: codec("Note").to_json(doc("Note", "<c:x/>"))) == [
        e("/Note", "Note holds a value, not child elements")
    ]
    assert errors_of(lambda: codec("Note").to_json(doc("Note", "", 'xsi:type="xs:string"'))) == [
        e("/Note", "xsi:type (type substitution) is not supported")
    ]


def test_any_type_is_untyped_both_ways() -> None:
    """xs:anyType content is text, or "@attr" and "#content" in document order."""
    node = xml(
        f'<c:Anything xmlns:c="{C}" xmlns:o="{OTHER}">Dear <o:b x="1">An</o:b>, hello<o:e/></c:Anything>'
    )
    value = codec("Anything").to_json(node)
    assert value == {
        "#content": [
            "Dear ",
            {f"{{{OTHER}}}b": {"@x": "1", "#content": ["An"]}},
            ", hello",
            {f"{{{OTHER}}}e": ""},
        ]
    }
    again = codec("Anything").to_xml(value)
    assert [child.tag for child in again] == [f"{{{OTHER}}}b", f"{{{OTHER}}}e"]
    assert codec("Anything").to_json(again) == value
    assert codec("Anything").to_json(doc("Anything", "plain")) == "plain"
    assert untyped(xml("<a k='v'/>")) == {"@k": "v"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (5, e("$", "must be a string or an object (untyped XML content)")),
        ({"@bad name": "x"}, e("$.@bad name", "must be a string attribute with a valid name")),
        ({"@x": 1}, e("$.@x", "must be a string attribute with a valid name")),
        ({"@xmlns": "urn:x"}, e("$.@xmlns", "must be a string attribute with a valid name")),
        ({"other": 1}, e("$.other", 'untyped content holds only "@attributes" and "#content"')),
        ({"#content": "x"}, e("$.#content", "must be an array")),
        ({"#content": [{"1bad": "x"}]}, e("$.#content[0]", "'1bad' is not an element name")),
        ({"#content": [5]}, e("$.#content[0]", "must be a string or a one-key object")),
        ({"#content": ["a\x00"]}, e("$.#content[0]", "contains characters XML cannot carry")),
        ("bell\x07", e("$", "contains characters XML cannot carry")),
    ],
)
def test_untyped_writing_errors(value: Any, problem: dict[str, str]) -> None:
    assert writing("Anything", value) == [problem]


# --- wildcards ----------------------------------------------------------------------------------------


def test_strict_wildcard_reads_declared_elements_by_their_type() -> None:
    value = codec("Strict").to_json(doc("Strict", "<c:head>h</c:head><c:Note> n </c:Note>"))
    assert value == {"head": "h", "#any": [{f"{{{C}}}Note": " n "}]}
    assert codec("Strict").to_json(codec("Strict").to_xml(value)) == value
    assert reading("Strict", "<c:head>h</c:head><c:Undeclared/>") == [
        e("/Strict/Undeclared", "Undeclared has no declaration, and the wildcard here is strict")
    ]


def test_wildcard_writing_errors() -> None:
    assert writing("Strict", {"head": "h", "#any": {"x": 1}}) == [
        e("$.#any", "must be an array of one-key objects")
    ]
    assert writing("Strict", {"head": "h", "#any": [{f"{{{C}}}Note": "a"}] * 3}) == [
        e("$.#any", "takes at most 2 items")
    ]
    assert writing("Strict", {"head": "h", "#any": [{"a": 1, "b": 2}]}) == [
        e("$.#any[0]", "must be a one-key object")
    ]
    assert writing("Strict", {"head": "h", "#any": [{f"{{{C}}}x": "v"}]}) == [
        e(f"$.#any[0].{{{C}}}x", "x has no declaration, and the wildcard here is strict")
    ]
    assert writing("Strict", {"head": "h", "#any": [{f"{{{OTHER}}}x": "v"}]}) == [
        e(f"$.#any[0].{{{OTHER}}}x", f"{{{OTHER}}}x is not an element this wildcard admits")
    ]
    assert writing("Lax", {"#any": []}) == [e("$.#any", "needs at least 1 items")]
    assert writing("Lax", {"#any": [{f"{{{C}}}Note": "own namespace"}]}) == [
        e(f"$.#any[0].{{{C}}}Note", f"{{{C}}}Note is not an element this wildcard admits")
    ]


def test_lax_wildcard_keeps_undeclared_elements_untyped() -> None:
    value = codec("Lax").to_json(doc("Lax", "<o:x a='1'>t</o:x><o:y/>"))
    assert value == {"#any": [{f"{{{OTHER}}}x": {"@a": "1", "#content": ["t"]}}, {f"{{{OTHER}}}y": ""}]}
    assert codec("Lax").to_json(codec("Lax").to_xml(value)) == value
    assert codec("Lax").fields() == frozenset({"#any"})


# --- ordered content ---------------------------------------------------------------------------------


def test_repeated_choice_keeps_document_order() -> None:
    value = codec("Events").to_json(
        doc("Events", "<c:open>2026-01-01</c:open><c:close>2026-01-02</c:close><c:open>2026-01-03</c:open>")
    )
    assert value == {"#content": [{"open": "2026-01-01"}, {"close": "2026-01-02"}, {"open": "2026-01-03"}]}
    assert codec("Events").to_json(codec("Events").to_xml(value)) == value
    assert codec("Events").fields() == frozenset({"#content"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"#content": {"open": "2026-01-01"}}, e("$.#content", "must be an array")),
        ({"#content": [{"open": "2026-01-01"}, "text"]}, e("$.#content[1]", "Events has no text content")),
        (
            {"#content": [{"close": "2026-01-01"}, {"open": "2026-01-01", "close": "2026-01-02"}]},
            e("$.#content[1]", "must be a one-key object (or, in mixed content, a string)"),
        ),
        (
            {"#content": [{"when": "2026-01-01"}]},
            e("$.#content[0]", "Events has when where close, open was expected"),
        ),
        ({"#content": []}, e("$.#content[0]", "Events is incomplete: expected close, open")),
        ({"#content": [{"open": "soon"}]}, e("$.#content[0].open", "'soon' is not a valid date")),
    ],
)
def test_ordered_writing_errors(value: Any, problem: dict[str, str]) -> None:
    assert writing("Events", value) == [problem]


def test_mixed_content_keeps_its_text() -> None:
    value = codec("Letter").to_json(doc("Letter", "Dear <c:b>An</c:b>, your dossier <c:b>is ready</c:b>."))
    assert value == {"#content": ["Dear ", {"b": "An"}, ", your dossier ", {"b": "is ready"}, "."]}
    again = codec("Letter").to_xml(value)
    assert "".join(again.itertext()) == "Dear An, your dossier is ready."
    assert codec("Letter").to_json(codec("Letter").to_xml({"#content": ["only text"]})) == {
        "#content": ["only text"]
    }


# --- a real schema: the population database's citizens -------------------------------------------------

DC = "http://www.mic.gov.vn/dancu/1.0"


@cache
def _collection_schema() -> Any:
    return load_xsd(fixtures_dir("population-db") / "CongdanCollection.xsd")


@cache
def _collection() -> Element:
    return compile_element(_collection_schema().elements["CongdanCollection"])


def _name(ho: str, dem: str, ten: str) -> dict[str, str]:
    return {"Ho": ho, "ChuDem": dem, "Ten": ten}


def _citizen(number: str, name: dict[str, str]) -> dict[str, Any]:
    parent = {"SoDinhDanh": "", "QuocTich": "VN", "HoVaTen": _name("", "", "")}
    return {
        "SoDinhDanh": number,
        "SoCMND": "",
        "HoVaTen": name,
        "NgayThangNamSinh": {"NgayThangNam": "19900101"},
        "Cha": parent,
        "Me": parent,
    }


def test_citizen_collection_is_always_an_array_and_keeps_attributes() -> None:
    """One citizen is still an array; the data time is an xs:dateTime attribute, checked."""
    value = {
        "@SoCongDan": "1",
        "@ThoiDiemDuLieu": "2026-11-21T09:00:00+07:00",
        "CongDan": [_citizen("001090012345", _name("Nguyễn", "Văn", "An"))],
    }
    node = _collection().to_xml(value)
    assert node.tag == f"{{{DC}}}CongdanCollection" and node.prefix == "dc"
    assert node[0][2][0].tag == f"{{{DC}}}Ho" and node[0][2][0].text == "Nguyễn"
    assert _collection().to_json(safe.parse(etree.tostring(node))) == value
    bad = {**value, "@ThoiDiemDuLieu": "21/11/2026"}
    assert _collection().check(bad) == [e("$.@ThoiDiemDuLieu", "'21/11/2026' is not a valid dateTime")]
    assert _collection().check({"CongDan": []}) == [e("$.CongDan", "needs at least 1 items")]


_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co"), exclude_characters="\ufffe\uffff"),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.from_regex(r"[0-9]{12}", fullmatch=True), _TEXT, _TEXT, _TEXT), min_size=1, max_size=4
    ),
    st.datetimes(timezones=st.none()),
)
def test_generated_citizens_round_trip(people: list[tuple[str, str, str, str]], when: Any) -> None:
    """Any collection of citizens goes JSON -> XML -> JSON unchanged, strings kept exactly
    (white space and Vietnamese letters included), and the XML is valid for the published XSD."""
    value = {
        "@ThoiDiemDuLieu": when.isoformat(),
        "CongDan": [_citizen(number, _name(ho, dem, ten)) for number, ho, dem, ten in people],
    }
    wire = etree.tostring(_collection().to_xml(value), encoding="utf-8")
    assert _collection_schema().is_valid(wire.decode())
    assert _collection().to_json(safe.parse(wire)) == value
