"""Typed connector options: each connector's ``Options`` model, found by its entry point name, and
the configuration check refusing an unknown or ill-typed option at its line (issue 18, item 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError

from connectors.dvcqg import connector as dvcqg
from connectors.onestop import connector as onestop
from connectors.population import connector as population
from connectors.rest import connector as rest
from connectors.soap import connector as soap
from gateway import plugins
from gateway.cli import main
from gateway.config import Service, load_config
from gateway.connector import ConnectorContext
from gateway.init import PORTAL, initialise
from gateway.resources import schemas_dir
from gateway.xml.contract import OperationSpec, allowed_operations, load_contract
from gateway.yamlfile import FileError

DONGBO = f"{PORTAL}/DVCQG/DongBoHoSoMC"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
NHAN = "VN/GOV/000.00.00.H60/MOTCUA/NhanHoSo"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
MODELS: dict[str, type[BaseModel]] = {"dvcqg": dvcqg.Options, "onestop": onestop.Options,
                                      "population": population.Options, "rest": rest.Options,
                                      "soap": soap.Options}


# --- the models -----------------------------------------------------------------------------------------

def test_every_connector_has_its_model_by_entry_point_name() -> None:
    """``plugins.options_model`` finds ``Options`` next to each connector's ``create``."""
    assert set(MODELS) <= set(plugins.names(plugins.CONNECTORS))
    for name, model in MODELS.items():
        assert plugins.options_model(name) is model
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")
        assert all(field.description for field in model.model_fields.values()), name
    with pytest.raises(plugins.PluginNotFound, match="installed: "):
        plugins.options_model("nosuch")


def test_dvcqg_options() -> None:
    options = dvcqg.Options.model_validate({"username": "lienthong", "password": 123456})
    assert (options.path, options.login_path, options.madonvi, options.dstcode) == ("/api", "/login", None,
                                                                                    None)
    assert options.password == "123456"  # a number in YAML is the text it reads as
    assert "123456" not in repr(options)
    with pytest.raises(ValidationError) as missing:
        dvcqg.Options.model_validate({"username": "lienthong"})
    assert [e["loc"] for e in missing.value.errors()] == [("password",)]
    with pytest.raises(ValidationError, match="username"):
        dvcqg.Options.model_validate({"username": "", "password": "x"})
    with pytest.raises(ValidationError, match="pasword"):
        dvcqg.Options.model_validate({"username": "lienthong", "pasword": "x"})
    with pytest.raises(ValidationError):  # frozen
        options.path = "/other"  # type: ignore[misc]


def test_onestop_options() -> None:
    assert onestop.Options().model_dump() == {"path": "/hoso", "progress_path": "/tiendo"}
    assert onestop.Options.model_validate({"path": "/mc/hoso"}).path == "/mc/hoso"
    with pytest.raises(ValidationError, match="progres_path"):
        onestop.Options.model_validate({"progres_path": "/x"})
    with pytest.raises(ValidationError):
        onestop.Options.model_validate({"path": ["/x"]})


def test_rest_takes_no_options() -> None:
    assert rest.Options.model_fields == {}
    with pytest.raises(ValidationError, match="path"):
        rest.Options.model_validate({"path": "/x"})


def test_soap_options() -> None:
    options = soap.Options()
    assert options.model_dump() == {
        "schemas": [], "operations": None, "defaults": {}, "fill": {}, "xroad_headers": None,
        "validate_response": True, "max_response_bytes": 10_485_760, "max_response_elements": 200_000,
        "max_response_depth": 100}
    mapped = soap.Options.model_validate({"operations": {"X": {"input": "XRequest", "output": "XResponse"}}})
    assert mapped.operations == {"X": OperationSpec(input="XRequest", output="XResponse")}
    assert soap.Options.model_validate({"operations": "*"}).operations == "*"
    assert soap.Options.model_validate({"operations": ["A", "B"]}).operations == ["A", "B"]
    for bad in ({"fill": {"MaYeuCau": "requestId"}}, {"operations": "all"}, {"operations": 3},
                {"operations": {"X": {"inptu": "XRequest"}}}, {"max_response_bytes": "a lot"},
                {"max_response_depth": 0}, {"validate_respons": False}):
        with pytest.raises(ValidationError):
            soap.Options.model_validate(bad)


def test_population_options_are_the_soap_ones_with_its_defaults() -> None:
    assert issubclass(population.Options, soap.Options)
    assert list(population.Options.model_fields) == list(soap.Options.model_fields)
    assert population.Options().fill == {"MaYeuCau": "id", "MaCanBo": "userId"}
    assert population.Options.model_validate({"fill": {"MaCanBo": "issue"}}).fill == {"MaCanBo": "issue"}
    assert population.Options.model_validate({"defaults": {"MaDichVu": "1"}}).defaults == {"MaDichVu": "1"}
    with pytest.raises(ValidationError, match="fil"):
        population.Options.model_validate({"fil": {}})


def test_the_contract_reads_the_typed_options_and_plain_ones_alike() -> None:
    """load_contract and allowed_operations take the connector's model or a mapping: one contract."""
    path = schemas_dir() / "population" / "dancu.wsdl"
    typed = soap.Options.model_validate({"operations": ["XacThucThongTinCongDan"],
                                         "fill": {"MaYeuCau": "id"}})
    assert load_contract(path, typed) is load_contract(path, {"operations": ["XacThucThongTinCongDan"]})
    contract = load_contract(path, typed)
    assert allowed_operations(contract, "X", typed) == ["XacThucThongTinCongDan"]
    assert allowed_operations(contract, "X", soap.Options(operations="*")) == list(contract.operations)
    assert allowed_operations(contract, "TraCuuThongTinCongDan", {}) == ["TraCuuThongTinCongDan"]


# --- the words of a refusal ---------------------------------------------------------------------------------

def test_problems_name_the_key_and_the_connectors_options() -> None:
    typo = plugins.options_problem(dvcqg.Options, {"username": "u", "pasword": "p"}, "dvcqg")
    assert typo == (("pasword",), "options.pasword is not an option of the dvcqg connector (its options: "
                    "username, password, madonvi, path, login_path, dstcode)")
    missing = plugins.options_problem(dvcqg.Options, {}, "dvcqg")
    assert missing is not None and missing[0] == ()
    assert missing[1].startswith("the dvcqg connector needs options username and password")
    assert plugins.options_problem(rest.Options, {"x": 1}, "rest") == (
        ("x",), "options.x is not an option of the rest connector (it takes no options)")
    nested = plugins.options_problem(soap.Options, {"operations": {"X": {"input": "A", "ouput": "B"}}},
                                     "soap")
    assert nested == (("operations", "X", "ouput"), "options.operations.X.ouput: unknown key")
    wrong = plugins.options_problem(soap.Options, {"fill": {"MaYeuCau": "requestId"}}, "soap")
    assert wrong is not None and wrong[0] == ("fill", "MaYeuCau")
    assert wrong[1].startswith("options.fill.MaYeuCau: Input should be 'id'")
    assert plugins.options_problem(soap.Options, {"operations": "all"}, "soap") == (
        ("operations",), "options.operations: a list of operation names, a map of name: {input, output, "
        "action, faults, xroad}, or '*'")
    assert plugins.options_problem(population.Options, {"fill": {}}, "population") is None


def test_connectors_read_their_options_once_at_create() -> None:
    """Built directly (not through a checked configuration), a connector still refuses a typo."""
    context = ConnectorContext(http=httpx.AsyncClient(), schemas_dir=schemas_dir())

    def service(connector: str, options: dict[str, Any], sid: str = ECHO, **more: Any) -> Service:
        return Service(id=sid, connector=connector, upstream="http://127.0.0.1:9", options=options, **more)

    for connector, create in (("rest", rest.create), ("onestop", onestop.create), ("dvcqg", dvcqg.create),
                              ("soap", soap.create), ("population", population.create)):
        with pytest.raises(ValueError, match=f"service {ECHO}: options.tyop is not an option of the "
                                             f"{connector} connector"):
            create(service(connector, {"username": "u", "password": "p", "tyop": 1}
                           if connector == "dvcqg" else {"tyop": 1}), context)
    built = soap.create(service("soap", {"max_response_depth": 7}, VERIFY, schema="population/dancu.wsdl"),
                        context)
    assert built._limits.max_depth == 7 and built._fill == {}
    verify = population.create(service("population", {}, VERIFY), context)
    assert verify._fill == {"MaYeuCau": "id", "MaCanBo": "userId"}
    assert verify.operations == ["XacThucThongTinCongDan"]
    portal = dvcqg.create(service("dvcqg", {"username": "u", "password": "p", "dstcode": 42}, DONGBO),
                          context)
    assert portal._headers["dstcode"] == "42" and portal._api == "http://127.0.0.1:9/api"
    one = onestop.create(service("onestop", {"progress_path": "/td"}, NHAN), context)
    assert (one._base, one._progress) == ("http://127.0.0.1:9/hoso", "http://127.0.0.1:9/td")


# --- checking at load ---------------------------------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return initialise(tmp_path / "gw").config_path


def _service(raw: dict[str, Any], service_id: str) -> dict[str, Any]:
    return next(s for s in raw["services"] if s["id"] == service_id)


def _edited(config_file: Path, edit: Any) -> Path:
    raw = yaml.safe_load(config_file.read_text())
    edit(raw)
    bad = config_file.with_name("edited.yaml")
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return bad


def _line(path: Path, needle: str, after: int = 0) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if i > after and needle in line)


def _check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    return result.exit_code, result.output


def test_the_demo_catalogs_options_are_all_valid(config_file: Path) -> None:
    config = load_config(config_file)
    checked = set()
    for service in config.services:
        if service.connector:
            model = plugins.options_model(service.connector)
            assert model is not None
            model.model_validate(service.options)
            checked.add(service.connector)
    assert checked == {"dvcqg", "soap", "onestop", "rest"}
    assert _check(config_file)[0] == 0


def test_check_refuses_a_typo_at_its_line(config_file: Path) -> None:
    """`pasword:` for `password:` is refused at its line, naming the service and the options."""
    bad = _edited(config_file, lambda raw: _service(raw, DONGBO)["options"].update(
        pasword=_service(raw, DONGBO)["options"].pop("password")))
    code, output = _check(bad)
    assert code != 0
    line = _line(bad, "pasword:", after=_line(bad, f"id: {DONGBO}"))
    assert (f"{bad}:{line}: service {DONGBO}: options.pasword is not an option of the dvcqg connector "
            "(its options: username, password, madonvi, path, login_path, dstcode)") in output
    with pytest.raises(FileError) as refused:
        load_config(bad)
    assert refused.value.line == line


@pytest.mark.parametrize(("service_id", "options", "needle", "says"), [
    (VERIFY, {"fill": {"MaYeuCau": "requestId"}}, "MaYeuCau:", "options.fill.MaYeuCau: Input should be"),
    (VERIFY, {"max_response_bytes": "a lot"}, "max_response_bytes:", "options.max_response_bytes: "),
    (VERIFY, {"operations": {"X": {"input": "A", "ouput": "B"}}}, "ouput:",
     "options.operations.X.ouput: unknown key"),
    (NHAN, {"path": "/hoso", "progres_path": "/td"}, "progres_path:",
     "options.progres_path is not an option of the onestop connector (its options: path, progress_path)"),
    (ECHO, {"timeout": 3}, "timeout: 3", "options.timeout is not an option of the rest connector (it "
     "takes no options)"),
])
def test_check_refuses_ill_typed_or_unknown_options(config_file: Path, service_id: str,
                                                    options: dict[str, Any], needle: str, says: str) -> None:
    bad = _edited(config_file, lambda raw: _service(raw, service_id).update(options=options))
    code, output = _check(bad)
    assert code != 0
    line = _line(bad, needle, after=_line(bad, f"id: {service_id}"))
    assert f"{bad}:{line}: service {service_id}: {says}" in output, output


def test_check_refuses_missing_credentials_at_the_options(config_file: Path) -> None:
    bad = _edited(config_file, lambda raw: _service(raw, DONGBO)["options"].pop("password"))
    code, output = _check(bad)
    assert code != 0
    line = _line(bad, "options:", after=_line(bad, f"id: {DONGBO}"))
    assert f"{bad}:{line}: service {DONGBO}: the dvcqg connector needs options password" in output


def test_a_connector_not_installed_is_not_checked_at_load(config_file: Path) -> None:
    """Its options are not known here; `lienthong serve` refuses the connector itself."""
    bad = _edited(config_file, lambda raw: _service(raw, ECHO).update(connector="nosuch",
                                                                       options={"anything": 1}))
    config = load_config(bad)
    assert config.service(ECHO) is not None and config.service(ECHO).options == {"anything": 1}  # type: ignore[union-attr]
