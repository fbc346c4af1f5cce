"""Configuration: `lienthong init` writes a valid one; invalid ones name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.init import initialise
from gateway.yamlfile import FileError


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return initialise(tmp_path / "gw").config_path


def test_init_writes_a_loadable_configuration(config_file: Path) -> None:
    """The configuration `init` writes loads, with hashed secrets and keys on disk."""
    cfg = load_config(config_file)
    assert cfg.services and cfg.clients
    assert all(c.secret_hash.startswith("$argon2id$") for c in cfg.clients)
    assert list((config_file.parent / "keys" / "oauth").glob("*.jwk"))
    assert (config_file.parent / "keys" / "audit-subject.key").stat().st_mode & 0o077 == 0
    assert cfg.database_url == f"sqlite:///{config_file.parent / 'lienthong.db'}"


def test_init_refuses_to_overwrite(config_file: Path) -> None:
    """`init` does not overwrite an existing configuration unless forced."""
    with pytest.raises(FileExistsError):
        initialise(config_file.parent)


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    bad = path.with_name("bad.yaml")
    bad.write_text(text.replace(old, new, 1))
    return bad


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_wrong_type_names_the_line(config_file: Path) -> None:
    """A value of the wrong type is reported with its file and line."""
    bad = _edit(config_file, "port: ", "port: not-a-number #")
    with pytest.raises(FileError) as info:
        load_config(bad)
    assert info.value.line == _line_of(bad, "not-a-number")
    assert "listen.port" in str(info.value) and str(bad) in str(info.value)


def test_unknown_key_is_refused(config_file: Path) -> None:
    """A misspelt setting is an error, not silently ignored."""
    bad = _edit(config_file, "connector: rest", "connectr: rest")
    with pytest.raises(FileError) as info:
        load_config(bad)
    assert "connectr" in str(info.value)


def test_service_of_undeclared_subsystem_is_refused(config_file: Path) -> None:
    """A service whose subsystem no member declares is refused, at the service's line."""
    bad = _edit(config_file, "id: VN/GOV/000.00.00.H41/DANHMUC/echo", "id: VN/GOV/000.00.00.H49/X/echo")
    with pytest.raises(FileError) as info:
        load_config(bad)
    assert info.value.line == _line_of(bad, "000.00.00.H49/X/echo")
    assert "no member" in info.value.message


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    """YAML that does not parse is reported with a line."""
    bad = tmp_path / "c.yaml"
    bad.write_text("instance: VN\nlisten: [\n")
    with pytest.raises(FileError) as info:
        load_config(bad)
    assert info.value.line is not None and "YAML" in info.value.message
