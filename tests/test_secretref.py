"""Secrets by reference (${ENV}, file:) in config.yaml, and the state folder (state_dir)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import load_config
from gateway.init import initialise
from gateway.state import StateDirError, console_session_key, ensure_state_folder
from gateway.yamlfile import FileError

PORTAL_PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `lienthong init` wrote, as data (read once: init hashes secrets and makes a CA)."""
    path = initialise(tmp_path_factory.mktemp("refs") / "gw").config_path
    return {"path": path, "data": yaml.safe_load(path.read_text())}


def variant(written: dict[str, Any], name: str, change: Any) -> Path:
    """A copy of the written configuration beside it (relative paths keep working), changed."""
    data = yaml.safe_load(yaml.safe_dump(written["data"]))
    change(data)
    path: Path = written["path"].with_name(name)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def _service(data: dict[str, Any], service_id: str) -> dict[str, Any]:
    return next(s for s in data["services"] if s["id"] == service_id)


def _set_password(value: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        _service(data, PORTAL_PUSH)["options"] = {**_service(data, PORTAL_PUSH)["options"],
                                                  "password": value}
    return change


def test_environment_reference_resolves(written: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """`${NAME}` is the environment variable's value; a database URL too."""
    monkeypatch.setenv("LT_TEST_PORTAL_PASSWORD", "mật-khẩu-cổng")
    monkeypatch.setenv("LT_TEST_DATABASE", "postgresql+psycopg://gw:pw@db.internal/lienthong")

    def change(data: dict[str, Any]) -> None:
        _set_password("${LT_TEST_PORTAL_PASSWORD}")(data)
        data["database"] = "${LT_TEST_DATABASE}"

    config = load_config(variant(written, "env.yaml", change))
    assert config.service(PORTAL_PUSH).options["password"] == "mật-khẩu-cổng"  # type: ignore[union-attr]
    assert config.database_url == "postgresql+psycopg://gw:pw@db.internal/lienthong"


def test_missing_variable_names_the_key_the_variable_and_the_line(
        written: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LT_TEST_UNSET", raising=False)
    path = variant(written, "unset.yaml", _set_password("${LT_TEST_UNSET}"))
    with pytest.raises(FileError) as info:
        load_config(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "LT_TEST_UNSET" in text)
    assert info.value.line == line
    assert "LT_TEST_UNSET is not set" in info.value.message
    index = [s["id"] for s in written["data"]["services"]].index(PORTAL_PUSH)
    assert f"services.{index}.options.password" in info.value.message


def test_check_reports_a_missing_variable(written: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """`lienthong check` stops with the same message, not a traceback."""
    monkeypatch.delenv("LT_TEST_UNSET", raising=False)
    path = variant(written, "check-unset.yaml", _set_password("${LT_TEST_UNSET}"))
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 1
    assert "LT_TEST_UNSET is not set" in result.output and "options.password" in result.output


def test_file_reference_reads_the_file_without_its_line_ending(written: dict[str, Any]) -> None:
    """`file:` reads a file (relative to the configuration's folder), one line ending stripped."""
    folder = written["path"].parent
    (folder / "portal-password").write_text("from-a-secret-volume\n")
    client = written["data"]["clients"][0]
    (folder / "client-hash").write_text(client["secret_hash"] + "\r\n")

    def change(data: dict[str, Any]) -> None:
        _set_password("file:portal-password")(data)
        data["clients"][0]["secret_hash"] = f"file:{folder / 'client-hash'}"

    config = load_config(variant(written, "files.yaml", change))
    assert config.service(PORTAL_PUSH).options["password"] == "from-a-secret-volume"  # type: ignore[union-attr]
    assert config.clients[0].secret_hash == client["secret_hash"]


def test_unreadable_file_is_a_clear_error(written: dict[str, Any]) -> None:
    path = variant(written, "nofile.yaml", _set_password("file:/nonexistent/portal-password"))
    with pytest.raises(FileError) as info:
        load_config(path)
    assert "cannot read /nonexistent/portal-password" in info.value.message
    assert "options.password" in info.value.message


def test_empty_values_are_refused(written: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LT_TEST_EMPTY", "")
    with pytest.raises(FileError, match="LT_TEST_EMPTY is empty"):
        load_config(variant(written, "empty-env.yaml", _set_password("${LT_TEST_EMPTY}")))
    (written["path"].parent / "empty-secret").write_text("\n")
    with pytest.raises(FileError, match="is empty"):
        load_config(variant(written, "empty-file.yaml", _set_password("file:empty-secret")))


def test_a_resolved_value_is_never_in_a_message(written: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A value from the environment that fails validation is reported by key, not by value."""
    monkeypatch.setenv("LT_TEST_PORT", "s3cret-value-not-a-port")

    def change(data: dict[str, Any]) -> None:
        data["listen"]["port"] = "${LT_TEST_PORT}"

    with pytest.raises(FileError) as info:
        load_config(variant(written, "secret-port.yaml", change))
    assert "listen.port" in str(info.value) and "s3cret" not in str(info.value)


def test_text_around_a_reference_is_a_plain_value(written: dict[str, Any]) -> None:
    """Only a whole value is a reference: `x${A}` and `${A}x` stay as they are."""
    config = load_config(variant(written, "plain.yaml", _set_password("a${B}c")))
    assert config.service(PORTAL_PUSH).options["password"] == "a${B}c"  # type: ignore[union-attr]


def test_state_dir_holds_what_the_gateway_writes(written: dict[str, Any], tmp_path: Path) -> None:
    """The relative SQLite database, the witness file and a made session key go under state_dir;
    without state_dir they stay beside the configuration."""
    folder = written["path"].parent
    default = load_config(written["path"])
    assert default.database_url == f"sqlite:///{folder / 'lienthong.db'}"
    assert default.state_path("audit-witness.txt") == folder / "audit-witness.txt"

    state = tmp_path / "state"

    def change(data: dict[str, Any]) -> None:
        data["state_dir"] = str(state)

    config = load_config(variant(written, "state.yaml", change))
    assert config.database_url == f"sqlite:///{state / 'lienthong.db'}"
    assert config.state_path(config.audit.witness_file or "") == state / "audit-witness.txt"
    assert ensure_state_folder(config) == state and state.is_dir()
    # init wrote the session key into keys/: read from there, shared by every replica
    assert console_session_key(config) == (folder / "keys" / "console-session.key").read_bytes()


def test_session_key_made_in_the_state_folder_when_keys_has_none(tmp_path: Path) -> None:
    (tmp_path / "conf" / "keys").mkdir(parents=True)
    config_path = tmp_path / "conf" / "config.yaml"
    config_path.write_text(f"state_dir: {tmp_path / 'state'}\n")
    config = load_config(config_path)
    key = console_session_key(config)
    assert (tmp_path / "state" / "console-session.key").read_bytes() == key
    assert console_session_key(config) == key  # made once, then read
    assert not list((tmp_path / "conf" / "keys").iterdir())


def test_unwritable_state_folder_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(f"state_dir: {blocker / 'state'}\n")
    with pytest.raises(StateDirError, match="Point state_dir"):
        ensure_state_folder(load_config(config_path))
