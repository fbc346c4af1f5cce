"""The catalog's document settings (members[].documents, services' documents: true), as configuration
loading and ``lienthong check`` refuse them; the receivers' directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import load_config
from gateway.documents.catalog import Directory
from gateway.yamlfile import FileError
from tests.test_documents_e2e import (
    FINANCE,
    GW,
    H41,
    H60,
    H60_OFFICE,
    MINISTRY,
    NA_DMS,
    PLATFORM,
    SERVICE,
    TQ,
    TQ_DMS,
    configure,
)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("documents-catalog")
    path, _ = configure(workdir / "gw", f"sqlite:///{workdir / 'x.db'}", 9111, 9112)
    return path


def edited(good: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    cfg = yaml.safe_load(good.read_text())
    change(cfg)
    path = good.parent / f"edited-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return path


def member(cfg: dict[str, Any], member_id: str) -> dict[str, Any]:
    return next(m for m in cfg["members"] if m["id"] == member_id)


def service(cfg: dict[str, Any], service_id: str) -> dict[str, Any]:
    return next(s for s in cfg["services"] if s["id"] == service_id)


def test_directory_of_the_catalog(good: Path) -> None:
    config = load_config(good)
    assert config.service(SERVICE) is not None and config.service(SERVICE).extra_path == "/"  # type: ignore[union-attr]
    directory = Directory.of(config)
    tq = directory.receiver(H60_OFFICE)
    assert tq is not None and tq.member == TQ and tq.client == TQ_DMS and tq.mode == "push"
    assert tq.service == f"{TQ}/QLVB/NhanVanBan"
    na = directory.receiver(H41)  # the member's own code when no organs are listed
    assert na is not None and na.mode == "pull" and na.client == NA_DMS
    assert directory.organs_of(PLATFORM) == [MINISTRY, FINANCE]
    assert directory.organs_of(TQ_DMS) == [H60, H60_OFFICE, "000.12.00.H60"]  # the demo catalog's
    assert directory.receiver("000.00.00.H99") is None
    assert directory.services == {f"{TQ}/QLVB/NhanVanBan", f"{GW}/TRUCVB/sendDocument"}
    result = CliRunner().invoke(main, ["check", "--config", str(good)])
    assert result.exit_code == 0, result.output


def _organ_twice(cfg: dict[str, Any]) -> None:
    member(cfg, NA)["documents"]["organs"] = [H41, H60_OFFICE]


def _unknown_subsystem(cfg: dict[str, Any]) -> None:
    member(cfg, NA)["documents"]["subsystem"] = "VANTHU"


def _receiver_missing(cfg: dict[str, Any]) -> None:
    member(cfg, NA)["documents"]["receive"] = "QLVB/NhanVanBan"


def _receiver_sync(cfg: dict[str, Any]) -> None:
    service(cfg, f"{TQ}/QLVB/NhanVanBan")["delivery"] = "sync"


def _document_service_with_upstream(cfg: dict[str, Any]) -> None:
    service(cfg, SERVICE).update(connector="rest", upstream="http://127.0.0.1:1")


def _bad_organ(cfg: dict[str, Any]) -> None:
    member(cfg, TQ)["documents"]["organs"] = [H60, "H60 văn phòng"]


NA = "VN/GOV/000.00.00.H41"


@pytest.mark.parametrize(("change", "says"), [
    (_organ_twice, f"organ {H60_OFFICE} is listed twice"),
    (_unknown_subsystem, "documents.subsystem VANTHU is not one of the member's subsystems"),
    (_receiver_missing, f"no service {NA}/QLVB/NhanVanBan is listed"),
    (_receiver_sync, "must be an async service"),
    (_document_service_with_upstream, "is a document service (documents: true)"),
    (_bad_organ, "is not an OrganId"),
])
def test_inconsistent_documents_refused(good: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None],
                                        says: str) -> None:
    path = edited(good, tmp_path, change)
    with pytest.raises(FileError) as caught:
        load_config(path)
    assert says in str(caught.value)
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code != 0 and says in result.output
