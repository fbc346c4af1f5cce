"""Schemas load from local copies only: the catalog redirects imported URLs, an unknown import is a
start-up error naming it, nothing is fetched, and every contract is compiled once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.resources import schemas_dir
from gateway.runtime import Runtime, StartupError
from gateway.xml.catalog import Catalog, SchemaError, default_catalog, load_wsdl, load_xsd
from gateway.xml.contract import load_contract
from tests.conftest import fixtures_dir
from tests.test_soap_face import soap_config
from tests.test_xml_safety import bait  # noqa: F401  (a server that counts requests)


def test_catalog_maps_the_xroad_schemas_to_local_copies() -> None:
    """The X-Road header schemas and xml.xsd resolve to files under schemas/catalog/."""
    catalog = default_catalog()
    for url in ("http://x-road.eu/xsd/xroad.xsd", "http://x-road.eu/xsd/representation.xsd",
                "https://www.w3.org/2009/01/xml.xsd"):
        local = catalog.resolve(url)
        assert local is not None and local.is_file() and schemas_dir() in local.parents
    assert catalog.resolve("http://example.org/unknown.xsd") is None


def test_catalog_reads_rewrites_and_next_catalogs(tmp_path: Path) -> None:
    """rewriteURI maps a URL prefix to a folder; nextCatalog chains another catalog file."""
    ns = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
    (tmp_path / "more.xml").write_text(f'<catalog xmlns="{ns}"><uri name="http://b.example/x.xsd" '
                                       'uri="b/x.xsd"/></catalog>')
    (tmp_path / "catalog.xml").write_text(
        f'<catalog xmlns="{ns}"><rewriteURI uriStartString="http://a.example/xsd/" rewritePrefix="a/"/>'
        '<nextCatalog catalog="more.xml"/></catalog>')
    catalog = Catalog.load(tmp_path / "catalog.xml")
    assert catalog.resolve("http://a.example/xsd/one/two.xsd") == tmp_path / "a" / "one" / "two.xsd"
    assert catalog.resolve("http://b.example/x.xsd") == tmp_path / "b" / "x.xsd"


def test_example_adapter_wsdl_loads_offline() -> None:
    """The third-party WSDL importing the X-Road schemas by URL loads from the catalog's copies."""
    document = load_wsdl(fixtures_dir("xroad-example-adapter") / "example-adapter.wsdl")
    client = document.schema.maps.elements["{http://x-road.eu/xsd/xroad.xsd}client"]
    assert Path(client.schema.url.removeprefix("file://")).resolve() == (
        schemas_dir() / "catalog" / "x-road" / "xroad.xsd").resolve()


def test_unknown_import_is_an_error_naming_it_and_nothing_is_fetched(tmp_path: Path,
                                                                     bait: dict[str, Any]) -> None:  # noqa: F811
    """An import the catalog does not know stops the load, naming the URL; the network is untouched."""
    url = f"{bait['url']}/types.xsd"
    (tmp_path / "service.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:types" targetNamespace="urn:s">'
        f'<xs:import namespace="urn:types" schemaLocation="{url}"/>'
        '<xs:element name="a" type="t:T"/></xs:schema>')
    before = len(bait["hits"])
    with pytest.raises(SchemaError) as error:
        load_xsd(tmp_path / "service.xsd")
    assert url in str(error.value) and "service.xsd" in str(error.value)
    assert len(bait["hits"]) == before


def test_missing_import_stops_the_gateway_at_start_up(tmp_path: Path) -> None:
    """A service whose WSDL imports an unknown URL: the gateway does not start, and says which."""
    wsdl = tmp_path / "broken.wsdl"
    original = (fixtures_dir("xroad-example-adapter") / "example-adapter.wsdl").read_text()
    wsdl.write_text(original.replace('schemaLocation="http://x-road.eu/xsd/xroad.xsd"',
                                     'schemaLocation="http://x-road.invalid/xsd/xroad.xsd"'))
    service = {"id": "VN/GOV/000.00.00.H41/DANHMUC/helloService", "connector": "soap",
               "upstream": "http://127.0.0.1:9/", "schema": str(wsdl),
               "options": {"operations": ["helloService"]}}
    config_path, _ = soap_config(tmp_path / "gw", services=[service], clients=[], rules=[])
    with pytest.raises(StartupError) as error:
        Runtime.build(load_config(config_path))
    assert "http://x-road.invalid/xsd/xroad.xsd" in str(error.value)
    assert "VN/GOV/000.00.00.H41/DANHMUC/helloService" in str(error.value)


def test_contracts_compile_once_per_process() -> None:
    """The connector and the SOAP face share one compiled contract per schema and options."""
    path = schemas_dir() / "population" / "dancu.wsdl"
    assert load_contract(path) is load_contract(path)
    assert load_contract(path, {"defaults": {"x": 1}}) is load_contract(path)


def test_xsd_contract_publishes_a_wsdl_that_zeep_reads(tmp_path: Path) -> None:
    """The WSDL generated for an XSD-described service is a WSDL a third-party client can use: zeep
    builds the request from it, and the gateway's codec reads that request."""
    import zeep

    folder = fixtures_dir("population-db")
    options = {"schemas": [str(folder / "XacMinhThongTinNhanThanResponse.xsd")],
               "operations": {"XacMinhThongTinNhanThan": {"input": "XacMinhThongTinNhanThanRequest",
                                                           "output": "XacMinhThongTinNhanThanResponse"}}}
    contract = load_contract(folder / "XacMinhThongTinNhanThanRequest.xsd", options)
    published = tmp_path / "service.wsdl"
    published.write_bytes(contract.publish("http://gateway.test/soap/X"))
    client = zeep.Client(str(published))
    fields = {"MaYeuCau": "R1", "MaDVC": "D", "MaTichHop": "T", "MaDonVi": "U", "MaCanBo": "C",
              "SoDinhDanh": "001090012345", "SoCMND": "012345678", "HoVaTen": "Nguyễn Văn An",
              "NgayThangNamSinh": "19900101"}
    message = client.create_message(client.service, "XacMinhThongTinNhanThan", **fields)
    body = message.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    operation = contract.operations["XacMinhThongTinNhanThan"]
    assert operation.input.to_json(body) == fields
    assert load_wsdl(published).bindings  # and it reads back as a WSDL


def test_schemas_in_the_project_all_load() -> None:
    """Every WSDL and XSD under schemas/ loads offline."""
    for path in sorted(schemas_dir().rglob("*")):
        if path.suffix == ".wsdl":
            assert load_wsdl(path).bindings
        elif path.suffix == ".xsd":
            assert load_xsd(path) is not None
