"""``lienthong init``: a working configuration with generated keys and client secrets.

The catalog it writes is the demo's: the national portal (Văn phòng Chính phủ, 000.00.00.G22), the
national population database (here under the example code 000.00.00.G01), and the one-stop systems
of Hà Giang (000.00.00.H22) and Nghệ An (000.00.00.H41), each service pointing at the simulator of
its upstream on loopback.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway import keys
from gateway.oauth.secrets import hash_secret, new_secret
from gateway.resources import policies_dir

PORTAL = "VN/GOV/000.00.00.G22"
POPULATION = "VN/GOV/000.00.00.G01"
HA_GIANG = "VN/GOV/000.00.00.H22"
NGHE_AN = "VN/GOV/000.00.00.H41"

CLIENTS = {
    f"{HA_GIANG}/MOTCUA": "Hệ thống một cửa điện tử tỉnh Hà Giang",
    f"{NGHE_AN}/MOTCUA": "Hệ thống một cửa điện tử tỉnh Nghệ An",
    f"{PORTAL}/DVCQG": "Cổng Dịch vụ công quốc gia",
}


@dataclass(frozen=True)
class Ports:
    gateway: int = 8080
    population: int = 9101
    dvcqg: int = 9102
    onestop: int = 9103
    rest: int = 9104


@dataclass(frozen=True)
class Initialised:
    config_path: Path
    secrets_path: Path
    secrets: dict[str, str]


def catalog(ports: Ports, host: str = "127.0.0.1") -> dict[str, object]:
    def up(port: int, path: str = "") -> str:
        return f"http://{host}:{port}{path}"

    portal_opts = {"madonvi": "000.00.00.G22", "username": "lienthong", "password": "demo-portal"}
    services: list[dict[str, object]] = [
        *({"id": f"{PORTAL}/DVCQG/{name}", "connector": "dvcqg", "upstream": up(ports.dvcqg),
           "timeout": 10, "options": portal_opts, "description": text}
          for name, text in [("DongBoHoSoMC", "Đồng bộ hồ sơ một cửa lên Cổng DVCQG"),
                             ("CapNhatTienDoHoSoMC", "Cập nhật tiến độ xử lý hồ sơ"),
                             ("TraCuuHoSo", "Tra cứu hồ sơ trên Cổng DVCQG")]),
        *({"id": f"{POPULATION}/CSDLDC/{name}", "connector": "population",
           "upstream": up(ports.population, "/dancu"), "schema": "population/dancu.wsdl",
           "timeout": 10, "description": text}
          for name, text in [("XacThucThongTinCongDan", "Xác thực thông tin công dân"),
                             ("TraCuuThongTinCongDan", "Tra cứu thông tin công dân")]),
        *({"id": f"{member}/MOTCUA/{name}", "connector": "onestop", "upstream": up(ports.onestop),
           "timeout": 10, "description": text}
          for member in (HA_GIANG,)
          for name, text in [("NhanHoSo", "Nhận hồ sơ từ Cổng DVCQG"),
                             ("TraCuuHoSo", "Tra cứu hồ sơ tại một cửa tỉnh")]),
        {"id": f"{NGHE_AN}/DANHMUC/echo", "connector": "rest", "upstream": up(ports.rest, "/echo"),
         "timeout": 10, "description": "Dịch vụ REST mẫu: trả lại yêu cầu"},
        {"id": f"{NGHE_AN}/DANHMUC/items", "connector": "rest", "upstream": up(ports.rest, "/items"),
         "timeout": 10, "description": "Danh mục dùng chung (REST/JSON)"},
    ]
    return {
        "members": [
            {"id": PORTAL, "name": "Văn phòng Chính phủ", "subsystems": [
                {"code": "DVCQG", "name": "Cổng Dịch vụ công quốc gia"}]},
            {"id": POPULATION, "name": "Bộ Công an (mã ví dụ)", "subsystems": [
                {"code": "CSDLDC", "name": "Cơ sở dữ liệu quốc gia về dân cư"}]},
            {"id": HA_GIANG, "name": "UBND tỉnh Hà Giang", "subsystems": [
                {"code": "MOTCUA", "name": "Hệ thống thông tin một cửa điện tử"}]},
            {"id": NGHE_AN, "name": "UBND tỉnh Nghệ An", "subsystems": [
                {"code": "MOTCUA", "name": "Hệ thống thông tin một cửa điện tử"},
                {"code": "DANHMUC", "name": "Danh mục dùng chung"}]},
        ],
        "services": services,
        "simulators": {"population": {"port": ports.population}, "dvcqg": {"port": ports.dvcqg},
                       "onestop": {"port": ports.onestop}, "rest": {"port": ports.rest}},
    }


def initialise(target: Path, *, ports: Ports = Ports(), database: str | None = None,
               force: bool = False) -> Initialised:
    """Write ``config.yaml``, keys, policies and client secrets into ``target``."""
    target = target.resolve()
    config_path = target / "config.yaml"
    if config_path.exists() and not force:
        raise FileExistsError(f"{config_path} exists; choose another folder or pass --force")
    target.mkdir(parents=True, exist_ok=True)
    keys_dir = target / "keys"
    if force and keys_dir.exists():
        shutil.rmtree(keys_dir)
    keys.ensure_keys(keys_dir)
    policy_target = target / "policies"
    policy_target.mkdir(exist_ok=True)
    for source in sorted(policies_dir().glob("*.yaml")):
        shutil.copyfile(source, policy_target / source.name)

    secrets = {client: new_secret() for client in CLIENTS}
    config = {
        "instance": "VN",
        "listen": {"host": "127.0.0.1", "port": ports.gateway},
        "database": database or "sqlite:///lienthong.db",
        "keys_dir": "keys",
        "policies_dir": "policies",
        "token": {"issuer": f"http://127.0.0.1:{ports.gateway}", "audience": "lienthong",
                  "lifetime": 300, "algorithm": "ES256"},
        **catalog(ports),
        "clients": [{"id": cid, "name": name, "secret_hash": hash_secret(secrets[cid]),
                     "scopes": ["exchange"]} for cid, name in CLIENTS.items()],
    }
    header = ("# Liên Thông gateway configuration, written by `lienthong init`.\n"
              "# Relative paths are relative to this file's folder. See docs/configuration.md.\n")
    config_path.write_text(header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                           encoding="utf-8")
    secrets_path = target / "client-secrets.yaml"
    fd = os.open(secrets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Client secrets, shown once: the configuration keeps only their argon2 hashes.\n")
        yaml.safe_dump(secrets, fh, allow_unicode=True)
    return Initialised(config_path, secrets_path, secrets)
