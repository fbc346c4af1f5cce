"""A service's SOAP contract (gateway/xml/contract.py): which operations a WSDL gives (document/literal
SOAP 1.1 only, the others named when nothing is left), X-Road header flags and fault details, XSD
contracts with an operation map and the WSDL generated for them, the options a service may set, and
the SchemaError that stops start-up naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.resources import schemas_dir
from gateway.xml import safe
from gateway.xml.catalog import Catalog, load_xsd
from gateway.xml.contract import (
    ContractOptions,
    OperationSpec,
    SchemaError,
    allowed_operations,
    contract_options,
    load_contract,
)
from tests.conftest import fixtures_dir

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
DAN = "http://dancuquocgia.bca"
PRODUCER = "http://test.x-road.global/producer"


def dancu() -> Path:
    return schemas_dir() / "population" / "dancu.wsdl"


def wsdl(
    tmp_path: Path,
    *,
    style: str = "document",
    op_style: str | None = None,
    use: str = "literal",
    parts: int = 1,
    binding_ns: str = WSDL_SOAP,
    name: str = "service.wsdl",
) -> Path:
    """A one-operation WSDL (Ping), with its binding's and operation's style, body use, number of body
    parts and SOAP binding namespace (1.1 or 1.2) as asked."""
    op_attr = f' style="{op_style}"' if op_style else ""
    extra = '<wsdl:part name="more" element="t:Pong"/>' if parts > 1 else ""
    text = f"""<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="{WSDL}" xmlns:soap="{binding_ns}" xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:t="urn:t" targetNamespace="urn:t">
  <wsdl:types><xs:schema targetNamespace="urn:t" elementFormDefault="qualified">
    <xs:element name="Ping" type="xs:string"/><xs:element name="Pong" type="xs:boolean"/>
  </xs:schema></wsdl:types>
  <wsdl:message name="PingIn"><wsdl:part name="body" element="t:Ping"/>{extra}</wsdl:message>
  <wsdl:message name="PingOut"><wsdl:part name="body" element="t:Pong"/></wsdl:message>
  <wsdl:portType name="P"><wsdl:operation name="Ping"><wsdl:input message="t:PingIn"/>
    <wsdl:output message="t:PingOut"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="t:P"><soap:binding style="{style}" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Ping"><soap:operation soapAction="urn:t:ping"{op_attr}/>
      <wsdl:input><soap:body use="{use}"/></wsdl:input><wsdl:output><soap:body use="{use}"/></wsdl:output>
    </wsdl:operation></wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="Port" binding="t:B"><soap:address location="http://upstream/"/>
  </wsdl:port></wsdl:service>
</wsdl:definitions>"""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- options -----------------------------------------------------------------------------------------


def test_operations_option_has_three_forms() -> None:
    """A list of names, '*', or (for XSD services) a map of name -> messages; other keys are the
    connector's and ignored here."""
    assert contract_options({"operations": ["A", "B"], "fill": {"x": "id"}}).operations == ["A", "B"]
    assert contract_options({"operations": "*"}).operations == "*"
    spec = contract_options({"operations": {"Op": {"input": "In"}}}).operations
    assert spec == {"Op": OperationSpec(input="In")}
    assert contract_options(None) == ContractOptions()
    read = ContractOptions(schemas=["a.xsd"])
    assert contract_options(read) is read


@pytest.mark.parametrize("value", [5, "all", {"Op": {"input": "In", "colour": "red"}}, {"Op": {}}])
def test_ill_typed_operations_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        contract_options({"operations": value})
    text = str(refused.value)
    assert "operations" in text


def test_ill_typed_operations_say_what_is_expected() -> None:
    with pytest.raises(
        ValidationError,
        match="a list of operation names, a map of name: "
        r"\{input, output, action, faults, xroad\}, or '\*'",
    ):
        contract_options({"operations": 5})


def test_allowed_operations() -> None:
    """Listed names, all the WSDL's for '*', else the catalog entry's own; checked against the contract."""
    contract = load_contract(dancu())
    assert allowed_operations(contract, "XacThucThongTinCongDan", {}) == ["XacThucThongTinCongDan"]
    assert sorted(allowed_operations(contract, "x", {"operations": "*"})) == sorted(contract.operations)
    assert allowed_operations(contract, "x", {"operations": ["TraCuuThongTinCongDan"]}) == [
        "TraCuuThongTinCongDan"
    ]
    assert allowed_operations(None, "Any", {"operations": "*"}) == ["Any"]
    assert allowed_operations(None, "Any", {"operations": ["B"]}) == ["B"]
    with pytest.raises(SchemaError) as refused:
        allowed_operations(contract, "x", {"operations": ["Nope", "XacThucThongTinCongDan", "Gone"]})
    assert str(refused.value) == (
        "dancu.wsdl has no operation Nope, Gone (it has TraCuuThongTinCongDan, "
        "XacMinhThongTinNhanThan, XacThucThongTinCongDan)"
    )


# --- WSDL contracts ----------------------------------------------------------------------------------


def test_population_wsdl_operations() -> None:
    """Each operation: its SOAPAction, request and answer elements, and the fault detail it declares."""
    contract = load_contract(dancu())
    verify = contract.operations["XacThucThongTinCongDan"]
    assert verify.action == f"{DAN}/XacThucThongTinCongDan"
    assert verify.input.tag == f"{{{DAN}}}XacThucThongTinCongDanRequest"
    assert verify.output is not None and verify.output.tag == f"{{{DAN}}}KetQuaXacThucResponse"
    assert list(verify.faults) == [f"{{{DAN}}}LoiNghiepVu"] and not verify.xroad
    assert contract.by_input[f"{{{DAN}}}XacThucThongTinCongDanRequest"] is verify
    assert contract.detail_element(f"{{{DAN}}}LoiNghiepVu") is verify.faults[f"{{{DAN}}}LoiNghiepVu"]
    assert contract.detail_element(f"{{{DAN}}}KetQuaXacThucResponse") is not None  # any global element
    assert contract.detail_element("{urn:none}x") is None


def test_example_adapter_operations_carry_xroad_headers() -> None:
    """The X-Road example adapter's operations declare X-Road headers in their binding."""
    contract = load_contract(fixtures_dir("xroad-example-adapter") / "example-adapter.wsdl")
    assert sorted(contract.operations) == [
        "getAttachments",
        "getRandom",
        "helloService",
        "listPeople",
        "personDetails",
        "storeAttachments",
    ]
    assert all(op.xroad and op.action == "" for op in contract.operations.values())
    hello = contract.operations["helloService"]
    assert hello.input.to_json(hello.input.to_xml({"name": "An"})) == {"name": "An"}


def test_publish_points_every_address_at_the_gateway(tmp_path: Path) -> None:
    contract = load_contract(wsdl(tmp_path))
    root = safe.parse(contract.publish("https://gw.example/soap/VN/GOV/X/Y/Ping"))
    addresses = [n.get("location") for n in root.iter(f"{{{WSDL_SOAP}}}address")]
    assert addresses == ["https://gw.example/soap/VN/GOV/X/Y/Ping"]
    assert root.find(f"{{{WSDL}}}binding") is not None
    assert b"http://upstream/" in contract.document  # the original is kept as it was


def test_minimal_wsdl_translates(tmp_path: Path) -> None:
    op = load_contract(wsdl(tmp_path)).operations["Ping"]
    assert op.action == "urn:t:ping"
    assert op.output is not None and op.output.to_json(op.output.to_xml(True)) is True


def test_wsdl_recognised_without_its_suffix(tmp_path: Path) -> None:
    """A WSDL saved as .xml is still read as a WSDL (by its root), not as an XSD."""
    contract = load_contract(wsdl(tmp_path, name="service.xml"))
    assert list(contract.operations) == ["Ping"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"op_style": "rpc"}, "Ping: style rpc (only document/literal is supported)"),
        ({"use": "encoded"}, "Ping: use encoded (only literal is supported)"),
        ({"binding_ns": "http://schemas.xmlsoap.org/wsdl/soap12/"}, "no SOAP 1.1 binding"),
    ],
)
def test_unsupported_bindings_are_named(tmp_path: Path, kwargs: dict[str, str], why: str) -> None:
    """rpc, encoded and SOAP 1.2-only WSDLs give no operation, and the error says why for each."""
    path = wsdl(tmp_path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(SchemaError) as refused:
        load_contract(path)
    assert str(refused.value) == f"{path}: no document/literal SOAP 1.1 operation ({why})"


def test_rpc_binding_style_is_inherited_by_its_operations(tmp_path: Path) -> None:
    """An operation without a style of its own takes its binding's (WSDL 1.1 sections 3.3, 3.4)."""
    path = wsdl(tmp_path, style="rpc")
    with pytest.raises(SchemaError, match="style rpc") as refused:
        load_contract(path)
    assert str(refused.value) == (
        f"{path}: no document/literal SOAP 1.1 operation "
        "(Ping: style rpc (only document/literal is supported))"
    )


def test_operation_style_overrides_its_binding(tmp_path: Path) -> None:
    """A document operation in an rpc binding is document/literal, and compiled."""
    contract = load_contract(wsdl(tmp_path, style="rpc", op_style="document"))
    assert list(contract.operations) == ["Ping"]


def test_two_body_parts_break_ws_i(tmp_path: Path) -> None:
    with pytest.raises(
        SchemaError,
        match="operation message {urn:t}PingIn puts 2 elements in the body; "
        r"document/literal \(WS-I\) allows one",
    ):
        load_contract(wsdl(tmp_path, parts=2))


def test_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no schema at"):
        load_contract(tmp_path / "absent.wsdl")


# --- XSD contracts -------------------------------------------------------------------------------------


def _population_options(**operation: object) -> dict[str, object]:
    folder = fixtures_dir("population-db")
    spec = {
        "input": "XacMinhThongTinNhanThanRequest",
        "output": "XacMinhThongTinNhanThanResponse",
        **operation,
    }
    return {
        "schemas": [str(folder / "XacMinhThongTinNhanThanResponse.xsd")],
        "operations": {"XacMinhThongTinNhanThan": spec},
    }


def test_xsd_contract_from_the_population_schemas() -> None:
    """Messages spread over two published XSDs make one operation, with its action and faults."""
    folder = fixtures_dir("population-db")
    contract = load_contract(
        folder / "XacMinhThongTinNhanThanRequest.xsd",
        _population_options(action="urn:xacminh", faults=["XacMinhThongTinNhanThanResponse"], xroad=True),
    )
    op = contract.operations["XacMinhThongTinNhanThan"]
    assert (op.action, op.xroad) == ("urn:xacminh", True)
    assert op.input.tag == "{http://gtel.vn/qldc}XacMinhThongTinNhanThanRequest"
    assert (
        op.output is not None
        and op.output.tag == "{http://www.mic.gov.vn/dancu/1.0}XacMinhThongTinNhanThanResponse"
    )
    assert list(op.faults) == [op.output.tag]
    root = safe.parse(contract.document)
    (bound,) = root.iterfind(f"{{{WSDL}}}binding/{{{WSDL}}}operation/{{{WSDL_SOAP}}}operation")
    assert bound.get("soapAction") == "urn:xacminh" and bound.get("style") == "document"
    assert len(root.findall(f"{{{WSDL}}}types/{{http://www.w3.org/2001/XMLSchema}}schema")) == 2


def test_xsd_contract_accepts_qualified_names() -> None:
    folder = fixtures_dir("population-db")
    options = _population_options(input="{http://gtel.vn/qldc}XacMinhThongTinNhanThanRequest")
    contract = load_contract(folder / "XacMinhThongTinNhanThanRequest.xsd", options)
    assert contract.operations["XacMinhThongTinNhanThan"].input.name == "XacMinhThongTinNhanThanRequest"


def test_xsd_contract_needs_an_operation_map() -> None:
    path = fixtures_dir("population-db") / "XacThucThongTinCongDan.xsd"
    cases: list[dict[str, object]] = [{}, {"operations": ["XacThuc"]}, {"operations": {}}]
    for options in cases:
        with pytest.raises(SchemaError, match=r"a service described by XSD needs options\.operations"):
            load_contract(path, options)


def test_xsd_contract_names_an_unknown_element() -> None:
    path = fixtures_dir("population-db") / "XacThucThongTinCongDan.xsd"
    with pytest.raises(SchemaError) as refused:
        load_contract(
            path, {"operations": {"Op": {"input": "XacThucThongTinCongDanRequest", "output": "Nope"}}}
        )
    assert str(refused.value) == (
        "XacThucThongTinCongDan.xsd: operation Op: no global element named 'Nope' for its output"
    )


def test_xsd_contract_refuses_an_ambiguous_name(tmp_path: Path) -> None:
    """The same local name in two namespaces must be written {namespace}name."""
    for ns, name in (("urn:a", "a.xsd"), ("urn:b", "b.xsd")):
        (tmp_path / name).write_text(
            f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{ns}">'
            '<xs:element name="Req" type="xs:string"/></xs:schema>'
        )
    options = {"schemas": ["b.xsd"], "operations": {"Op": {"input": "Req"}}}
    with pytest.raises(SchemaError, match="operation Op: several global element named 'Req' for its input"):
        load_contract(tmp_path / "a.xsd", options)
    options = {"schemas": ["b.xsd"], "operations": {"Op": {"input": "{urn:b}Req"}}}
    op = load_contract(tmp_path / "a.xsd", options).operations["Op"]
    assert op.input.tag == "{urn:b}Req" and op.output is None
    generated = safe.parse(load_contract(tmp_path / "a.xsd", options).document)
    messages = [m.get("name") for m in generated.iterfind(f"{{{WSDL}}}message")]
    assert messages == ["OpRequest"]  # one-way: no answer message, no output


def test_contracts_are_cached_by_their_options() -> None:
    path = fixtures_dir("population-db") / "XacThucThongTinCongDan.xsd"
    one = {"operations": {"Op": {"input": "XacThucThongTinCongDanRequest"}}}
    two = {"operations": {"Op": {"input": "XacThucThongTinCongDanRequest", "action": "urn:x"}}}
    assert load_contract(path, one) is load_contract(path, dict(one))
    assert load_contract(path, one) is not load_contract(path, two)


def test_restricted_list_types_load(tmp_path: Path) -> None:
    """A restricted list type (<xs:restriction base='t:Ints'><xs:length/>) loads and translates."""
    (tmp_path / "point.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t">'
        '<xs:simpleType name="Ints"><xs:list itemType="xs:int"/></xs:simpleType>'
        '<xs:simpleType name="Pair"><xs:restriction base="t:Ints"><xs:length value="2"/></xs:restriction>'
        '</xs:simpleType><xs:element name="Point" type="t:Pair"/></xs:schema>'
    )
    contract = load_contract(tmp_path / "point.xsd", {"operations": {"Op": {"input": "Point"}}})
    element = contract.operations["Op"].input
    assert element.to_json(element.to_xml([1, 2])) == [1, 2]
    assert element.check([1, 2, 3]) == [{"path": "$", "message": "length has to be 2"}]


# --- loading offline: the catalog's refusals ---------------------------------------------------------

CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
XS = "http://www.w3.org/2001/XMLSchema"


def _importing(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "service.xsd"
    path.write_text(
        f'<xs:schema xmlns:xs="{XS}" xmlns:t="urn:types" targetNamespace="urn:s">'
        f'<xs:import namespace="urn:types" schemaLocation="{url}"/>'
        '<xs:element name="a" type="t:T"/></xs:schema>'
    )
    return path


def test_catalog_chains_that_loop_are_read_once(tmp_path: Path) -> None:
    """nextCatalog entries that point back (a -> b -> a) end; entries without their attributes are skipped."""
    (tmp_path / "a.xml").write_text(
        f'<catalog xmlns="{CATALOG_NS}"><nextCatalog catalog="b.xml"/>'
        '<uri name="http://x.example/a.xsd" uri="a.xsd"/><uri name="http://no-target"/>'
        '<rewriteURI uriStartString="http://r.example/"/></catalog>'
    )
    (tmp_path / "b.xml").write_text(
        f'<catalog xmlns="{CATALOG_NS}"><nextCatalog catalog="a.xml"/>'
        '<system systemId="http://x.example/b.xsd" uri="b.xsd"/></catalog>'
    )
    catalog = Catalog.load(tmp_path / "a.xml")
    assert catalog.resolve("http://x.example/b.xsd") == tmp_path / "b.xsd"
    assert catalog.resolve("http://x.example/a.xsd") == tmp_path / "a.xsd"
    assert catalog.resolve("http://no-target") is None and catalog.prefixes == ()


@pytest.mark.parametrize("content", ["<catalog", '<!DOCTYPE c [<!ENTITY x "y">]><catalog/>'])
def test_broken_catalog_is_a_schema_error(tmp_path: Path, content: str) -> None:
    """A catalog that is not well-formed, or holds a DTD, stops the load naming the catalog file."""
    (tmp_path / "catalog.xml").write_text(content)
    with pytest.raises(SchemaError, match=f"schema catalog {tmp_path / 'catalog.xml'}: "):
        Catalog.load(tmp_path / "catalog.xml")


def test_catalog_entry_without_its_file_is_named(tmp_path: Path) -> None:
    url = "http://types.example/types.xsd"
    (tmp_path / "catalog.xml").write_text(
        f'<catalog xmlns="{CATALOG_NS}"><uri name="{url}" uri="gone.xsd"/></catalog>'
    )
    catalog = Catalog.load(tmp_path / "catalog.xml")
    with pytest.raises(SchemaError) as refused:
        load_xsd(_importing(tmp_path, url), catalog)
    assert (
        str(refused.value)
        == f"the schema catalog maps {url} to {tmp_path / 'gone.xsd'}, which does not exist"
    )


def test_catalog_copy_is_used_instead_of_the_network(tmp_path: Path) -> None:
    url = "https://types.example/v1/types.xsd"
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "types.xsd").write_text(
        f'<xs:schema xmlns:xs="{XS}" targetNamespace="urn:types"><xs:simpleType name="T">'
        '<xs:restriction base="xs:int"/></xs:simpleType></xs:schema>'
    )
    (tmp_path / "catalog.xml").write_text(
        f'<catalog xmlns="{CATALOG_NS}"><rewriteURI '
        'uriStartString="https://types.example/v1/" rewritePrefix="local/"/></catalog>'
    )
    schema = load_xsd(_importing(tmp_path, url), Catalog.load(tmp_path / "catalog.xml"))
    assert schema.elements["a"].type.is_valid("5") and not schema.elements["a"].type.is_valid("x")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (f'<xs:schema xmlns:xs="{XS}"><xs:element name="a" type="xs:nope"/></xs:schema>', "nope"),
        (f'<xs:schema xmlns:xs="{XS}"><xs:element name="a"', ""),
    ],
)
def test_xsd_that_does_not_compile_names_its_file(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "broken.xsd"
    path.write_text(content)
    with pytest.raises(SchemaError) as refused:
        load_xsd(path)
    assert str(refused.value).startswith(f"{path.resolve()}: ") and reason in str(refused.value)


def test_wsdl_that_does_not_parse_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.wsdl"
    path.write_text(f'<wsdl:definitions xmlns:wsdl="{WSDL}"><wsdl:types>')
    with pytest.raises(SchemaError) as refused:
        load_contract(path)
    assert str(refused.value).startswith(f"{path.resolve()}: ")
