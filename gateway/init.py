"""``lienthong init``: a working configuration with generated keys and client secrets.

The catalog it writes is the demo's: the national portal (Văn phòng Chính phủ, 000.00.00.G22), the
national population database (here under the example code 000.00.00.G01), and the one-stop systems
of Tuyên Quang (000.00.00.H60, an example code) and Nghệ An (000.00.00.H41), each service pointing at
the simulator of its upstream on loopback. Hà Giang (000.00.00.H22) is there as a former agency:
merged into Tuyên Quang on 1 July 2025 (gateway/agencies.py), so what is still addressed to it goes
to Tuyên Quang. The agencies of the joint procedures (civil status, residence registration, social
insurance, postal delivery; example codes) answer the flows' steps from their simulators. Official
documents (edXML, docs/documents.md) go through the document service between Tuyên Quang's
departments (its document-management system, pushed to), the ministries (through the national
document exchange platform, pushed to) and Nghệ An (which pulls).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gateway import demo_pki, keys
from gateway.cli_spine import local_operator
from gateway.oauth.secrets import hash_secret, new_secret
from gateway.resources import flows_dir, policies_dir
from gateway.simulation import free_port

PORTAL = "VN/GOV/000.00.00.G22"
POPULATION = "VN/GOV/000.00.00.G01"
HA_GIANG = "VN/GOV/000.00.00.H22"  # former: merged into Tuyên Quang (Resolution 202/2025/QH15)
TUYEN_QUANG = "VN/GOV/000.00.00.H60"
NGHE_AN = "VN/GOV/000.00.00.H41"
# The agencies of the joint procedures (docs/flows.md), under example codes; the police's residence
# registration is a subsystem of POPULATION's member.
CIVIL_STATUS = "VN/GOV/000.00.00.G15"
SOCIAL_INSURANCE = "VN/GOV/000.00.00.G20"
POSTAL = "VN/COM/0100000001"
MERGED = "2025-06-30"  # Hà Giang's last day; the new Tuyên Quang exists from 1 July 2025
REORGANISED = "2025-07-01"

CLIENTS = {
    f"{TUYEN_QUANG}/MOTCUA": "Hệ thống một cửa điện tử tỉnh Tuyên Quang",
    f"{NGHE_AN}/MOTCUA": "Hệ thống một cửa điện tử tỉnh Nghệ An",
    f"{PORTAL}/DVCQG": "Cổng Dịch vụ công quốc gia",
    f"{PORTAL}/KIEMTOAN": "Kiểm toán nhật ký liên thông",
    f"{PORTAL}/GIAMSAT": "Giám sát vận hành cổng liên thông",
    # The gateway's own client: the flow engine calls the agencies' services as it.
    f"{PORTAL}/LIENTHONG": "Cổng liên thông: điều phối thủ tục liên thông",
}
# The document-management systems and the national document exchange platform (docs/documents.md).
DOCUMENT_CLIENTS = {
    f"{TUYEN_QUANG}/QLVB": "Hệ thống quản lý văn bản và điều hành tỉnh Tuyên Quang",
    f"{NGHE_AN}/QLVB": "Hệ thống quản lý văn bản và điều hành tỉnh Nghệ An",
    f"{PORTAL}/TRUCVB": "Trục liên thông văn bản quốc gia",
}
CLIENTS |= DOCUMENT_CLIENTS
DOCUMENTS = f"{PORTAL}/LIENTHONG/VanBan"  # the document service (documents: true)
# The organs (edXML OrganIds, example codes) each document-management system answers for: Tuyên
# Quang's (Hà Giang's departments merged into them on 1 July 2025) and two ministries on the platform.
TUYEN_QUANG_ORGANS = {"000.00.00.H60": "UBND tỉnh Tuyên Quang",
                      "000.01.00.H60": "Văn phòng UBND tỉnh Tuyên Quang",
                      "000.12.00.H60": "Sở Nội vụ tỉnh Tuyên Quang"}
MINISTRY_ORGANS = {"000.00.00.G12": "Bộ Nội vụ", "000.00.00.G06": "Bộ Tài chính"}
# Scopes other than "exchange": the auditor reads the audit log and answers citizens' access reports;
# the monitoring system (a Prometheus scraper) reads /metrics and nothing else.
CLIENT_SCOPES = {f"{PORTAL}/KIEMTOAN": ["audit.read", "audit.subject"], f"{PORTAL}/GIAMSAT": ["metrics"],
                 **{client: ["documents"] for client in DOCUMENT_CLIENTS}}
# Clients that also get a key pair for private_key_jwt: the private key is written for the client
# (client-keys/, mode 0600), the public key registered in the configuration.
KEY_CLIENTS = (f"{PORTAL}/DVCQG",)


AGENCY_SIMULATORS = ("civil_status", "residence", "social_insurance", "postal")
# A provincial document-management system and the national document exchange platform.
DOCUMENT_SIMULATORS = ("dms", "document_platform")


@dataclass(frozen=True)
class Ports:
    gateway: int = 8080
    population: int = 9101
    dvcqg: int = 9102
    onestop: int = 9103
    rest: int = 9104
    # The agencies' simulators; 0 picks: the next fixed ports when the four above are the fixed
    # defaults (`lienthong init`), else free ones, as callers that choose free ports for the others
    # (tests, the demo, benchmarks) need, or parallel runs would collide on 9105-9108.
    civil_status: int = 0
    residence: int = 0
    social_insurance: int = 0
    postal: int = 0
    dms: int = 0
    document_platform: int = 0

    def __post_init__(self) -> None:
        fixed = (self.population, self.dvcqg, self.onestop, self.rest) == (9101, 9102, 9103, 9104)
        for offset, name in enumerate(AGENCY_SIMULATORS + DOCUMENT_SIMULATORS, start=5):
            if not getattr(self, name):
                object.__setattr__(self, name, 9100 + offset if fixed else free_port())


@dataclass(frozen=True)
class Initialised:
    config_path: Path
    secrets_path: Path
    secrets: dict[str, str]
    client_keys: dict[str, Path] = field(default_factory=dict)  # client -> its private JWK file


# Dossier pushes, up to the portal and down to the province, are store-and-forward (docs/delivery.md):
# checked against their JSON Schema, answered 202 once stored, delivered by workers in order.
STORE_AND_FORWARD: dict[str, dict[str, object]] = {
    "DongBoHoSoMC": {"delivery": "async", "schema": "dvcqg/dossier.json", "dossier": {"message": "dossier"}},
    "CapNhatTienDoHoSoMC": {"delivery": "async", "schema": "dvcqg/progress.json",
                            "dossier": {"message": "progress"}},
    "NhanHoSo": {"delivery": "async", "schema": "dvcqg/dossier.json",
                 "dossier": {"message": "dossier", "agency": "provider"}},
    "CapNhatTienDoHoSo": {"delivery": "async", "schema": "dvcqg/progress.json",
                          "dossier": {"message": "progress", "agency": "provider"}},
}
# The portal's dossier push for signed dossiers (docs/signatures.md#demo-keys): the same upstream
# operation, but every dossier must carry a valid detached JWS, checked against the demo CA.
SIGNED_PUSH = f"{PORTAL}/DVCQG/DongBoHoSoMCKySo"


# Services that take a path after their code (gateway/paths.py); every other takes none.
CODE_IN_PATH = {"TraCuuHoSo": {"extra_path": "/"}}  # .../TraCuuHoSo/{MaHoSo}
# Where requests name a citizen (audit subjects, refused calls included): a dossier's owner, the
# person looked up in the population database.
OWNER = {"subjects": ["MaDoiTuong"]}
PERSON = {"subjects": ["SoDinhDanh", "SoCMND"]}
# The gateway's own routing services (gateway/routing.py): the portal sends a dossier, or its
# progress, and the agency in its code picks the province's receiving service (members[].routing).
ROUTER = f"{PORTAL}/LIENTHONG"
ROUTES = [{"id": f"{ROUTER}/{name}", "route": True, "description": text,
           **STORE_AND_FORWARD[receiver], "dossier": {"message": message, "agency": "provider"},
           **(OWNER if message == "dossier" else {})}
          for name, receiver, message, text in [
              ("ChuyenHoSoVeDiaPhuong", "NhanHoSo", "dossier",
               "Chuyển hồ sơ nộp trên Cổng DVCQG về một cửa của cơ quan trong mã hồ sơ"),
              ("ChuyenTienDoVeDiaPhuong", "CapNhatTienDoHoSo", "progress",
               "Chuyển tiến độ xử lý hồ sơ về một cửa của cơ quan trong mã hồ sơ")]]


# The joint procedures a one-stop system files at the gateway (docs/flows.md): each service starts
# its flow with the joint dossier, checked against the flow's JSON Schema, and names its people.
FLOWS: list[dict[str, object]] = [{"id": f"{ROUTER}/{code}", "flow": name, "schema": f"flows/{name}.json",
          "description": text, "subjects": subjects}
         for code, name, text, subjects in [
             ("KhaiSinh3Trong1", "khai-sinh-3-trong-1",
              "Liên thông khai sinh, đăng ký thường trú, cấp thẻ BHYT cho trẻ dưới 6 tuổi",
              ["Me.SoDinhDanh", "Cha.SoDinhDanh", "NguoiYeuCau.SoDinhDanh",
               "ThuongTru.ChuHo.SoDinhDanh"]),
             ("KhaiTu", "khai-tu", "Liên thông khai tử, xóa đăng ký thường trú, trợ cấp mai táng",
              ["NguoiChet.SoDinhDanh", "NguoiYeuCau.SoDinhDanh", "NguoiNhanMaiTang.SoDinhDanh"])]]


def agency_services(ports: Ports) -> list[tuple[str, int, str, str, list[str]]]:
    """The joint procedures' agency services (flows contract): subsystem, simulator port, service
    code (also the simulator's path), description, and where each request names a citizen."""
    hotich, cutru = f"{CIVIL_STATUS}/HOTICH", f"{POPULATION}/CUTRU"
    bhxh, post = f"{SOCIAL_INSURANCE}/BHXH", f"{POSTAL}/BUUCHINH"
    requester = "NguoiYeuCau.SoDinhDanh"
    return [
        (hotich, ports.civil_status, "DangKyKhaiSinh", "Đăng ký khai sinh, cấp số định danh cá nhân",
         ["Me.SoDinhDanh", "Cha.SoDinhDanh", requester]),
        (hotich, ports.civil_status, "DangKyKhaiTu", "Đăng ký khai tử",
         ["NguoiChet.SoDinhDanh", requester]),
        (cutru, ports.residence, "DangKyThuongTru", "Đăng ký thường trú",
         ["SoDinhDanh", "ChuHo.SoDinhDanh"]),
        (cutru, ports.residence, "HuyDangKyThuongTru", "Hủy đăng ký thường trú", []),
        (cutru, ports.residence, "XoaDangKyThuongTru", "Xóa đăng ký thường trú", ["SoDinhDanh"]),
        (bhxh, ports.social_insurance, "CapTheBHYT", "Cấp thẻ BHYT cho trẻ em dưới 6 tuổi",
         ["SoDinhDanh"]),
        (bhxh, ports.social_insurance, "GiaiQuyetMaiTang", "Giải quyết trợ cấp mai táng",
         ["SoDinhDanh", "NguoiNhan.SoDinhDanh"]),
        (post, ports.postal, "TaoDonHang", "Tạo đơn chuyển phát kết quả thủ tục", []),
    ]


def catalog(ports: Ports, host: str = "127.0.0.1") -> dict[str, object]:
    def up(port: int, path: str = "") -> str:
        return f"http://{host}:{port}{path}"

    portal_opts = {"madonvi": "000.00.00.G22", "username": "lienthong", "password": "demo-portal"}
    services: list[dict[str, object]] = [
        *({"id": f"{PORTAL}/DVCQG/{name}", "connector": "dvcqg", "upstream": up(ports.dvcqg),
           "timeout": 10, "options": portal_opts, "description": text, **STORE_AND_FORWARD.get(name, {}),
           **CODE_IN_PATH.get(name, {}), **(OWNER if name == "DongBoHoSoMC" else {})}
          for name, text in [("DongBoHoSoMC", "Đồng bộ hồ sơ một cửa lên Cổng DVCQG"),
                             ("CapNhatTienDoHoSoMC", "Cập nhật tiến độ xử lý hồ sơ"),
                             ("TraCuuHoSo", "Tra cứu hồ sơ trên Cổng DVCQG")]),
        {"id": SIGNED_PUSH, "connector": "dvcqg", "upstream": up(ports.dvcqg), "timeout": 10,
         "options": portal_opts, "operation": "DongBoHoSoMC", "signatures": "required",
         "description": "Đồng bộ hồ sơ có chữ ký số lên Cổng DVCQG (bắt buộc ký số)",
         **STORE_AND_FORWARD["DongBoHoSoMC"], **OWNER},
        # The population database: the generic SOAP connector with its WSDL (the published schemas'
        # fields); the request id and the acting official come from the exchange when left out.
        *({"id": f"{POPULATION}/CSDLDC/{name}", "connector": "soap",
           "upstream": up(ports.population, "/dancu"), "schema": "population/dancu.wsdl",
           "timeout": 10, "description": text, **PERSON,
           "options": {"fill": {"MaYeuCau": "id", "MaCanBo": "userId"}}}
          for name, text in [("XacThucThongTinCongDan", "Xác thực thông tin công dân"),
                             ("XacMinhThongTinNhanThan", "Xác minh thông tin nhân thân"),
                             ("TraCuuThongTinCongDan", "Tra cứu thông tin công dân")]),
        *({"id": f"{member}/MOTCUA/{name}", "connector": "onestop", "upstream": up(ports.onestop),
           "timeout": 10, "description": text, **STORE_AND_FORWARD.get(name, {}),
           **CODE_IN_PATH.get(name, {}), **(OWNER if name == "NhanHoSo" else {})}
          for member in (TUYEN_QUANG,)
          for name, text in [("NhanHoSo", "Nhận hồ sơ từ Cổng DVCQG"),
                             ("CapNhatTienDoHoSo", "Nhận tiến độ xử lý hồ sơ từ Cổng DVCQG"),
                             ("TraCuuHoSo", "Tra cứu hồ sơ tại một cửa tỉnh")]),
        *ROUTES,
        *FLOWS,
        # Where a joint procedure's outcome goes back to the one-stop system that filed it (the
        # flows' notify: client_service, docs/flows.md); the one simulator serves both provinces.
        *({"id": f"{member}/MOTCUA/NhanKetQuaLienThong", "connector": "rest",
           "upstream": up(ports.onestop, "/ketqua"), "timeout": 10,
           "description": "Nhận kết quả thủ tục liên thông đã nộp qua nền tảng"}
          for member in (TUYEN_QUANG, NGHE_AN)),
        {"id": f"{NGHE_AN}/DANHMUC/echo", "connector": "rest", "upstream": up(ports.rest, "/echo"),
         "timeout": 10, "description": "Dịch vụ REST mẫu: trả lại yêu cầu"},
        {"id": f"{NGHE_AN}/DANHMUC/items", "connector": "rest", "upstream": up(ports.rest, "/items"),
         "timeout": 10, "extra_path": "/", "description": "Danh mục dùng chung (REST/JSON)"},
        *({"id": f"{subsystem}/{name}", "connector": "rest", "upstream": up(port, f"/{name}"),
           "timeout": 10, "description": text, **({"subjects": subjects} if subjects else {})}
          for subsystem, port, name, text, subjects in agency_services(ports)),
        # Official documents (docs/documents.md): the document service, and where it pushes them.
        {"id": DOCUMENTS, "documents": True, "description": "Liên thông văn bản điện tử (edXML)"},
        {"id": f"{TUYEN_QUANG}/QLVB/NhanVanBan", "connector": "rest", "upstream": up(ports.dms, "/edxml"),
         "timeout": 10, "delivery": "async",
         "description": "Nhận văn bản, trạng thái văn bản (hệ thống quản lý văn bản tỉnh)"},
        {"id": f"{PORTAL}/TRUCVB/sendDocument", "connector": "rest",
         "upstream": up(ports.document_platform, "/sendDocument"), "timeout": 10, "delivery": "async",
         "description": "Gửi văn bản, trạng thái văn bản lên Trục liên thông văn bản quốc gia"},
    ]
    return {
        "members": [
            {"id": PORTAL, "name": "Văn phòng Chính phủ", "subsystems": [
                {"code": "DVCQG", "name": "Cổng Dịch vụ công quốc gia"},
                {"code": "KIEMTOAN", "name": "Kiểm toán nhật ký liên thông"},
                {"code": "GIAMSAT", "name": "Giám sát vận hành cổng liên thông"},
                {"code": "LIENTHONG", "name": "Định tuyến hồ sơ về địa phương (cổng liên thông)"},
                {"code": "TRUCVB", "name": "Trục liên thông văn bản quốc gia"}],
             "documents": {"organs": list(MINISTRY_ORGANS), "subsystem": "TRUCVB",
                           "receive": "TRUCVB/sendDocument"}},
            {"id": POPULATION, "name": "Bộ Công an (mã ví dụ)", "subsystems": [
                {"code": "CSDLDC", "name": "Cơ sở dữ liệu quốc gia về dân cư"},
                {"code": "CUTRU", "name": "Cơ sở dữ liệu về cư trú"}]},
            {"id": TUYEN_QUANG, "name": "UBND tỉnh Tuyên Quang", "valid_from": REORGANISED,
             "subsystems": [{"code": "MOTCUA", "name": "Hệ thống thông tin một cửa điện tử"},
                            {"code": "QLVB", "name": "Hệ thống quản lý văn bản và điều hành"}],
             "routing": {"agencies": ["H60"], "dossier": "MOTCUA/NhanHoSo",
                         "progress": "MOTCUA/CapNhatTienDoHoSo"},
             "documents": {"organs": list(TUYEN_QUANG_ORGANS), "subsystem": "QLVB",
                           "receive": "QLVB/NhanVanBan"}},
            # A former agency: its dossier codes (H22...) and services now reach Tuyên Quang.
            {"id": HA_GIANG, "name": "UBND tỉnh Hà Giang", "valid_until": MERGED,
             "successor": TUYEN_QUANG,
             "subsystems": [{"code": "MOTCUA", "name": "Hệ thống thông tin một cửa điện tử"}],
             "routing": {"agencies": ["H22"]}},
            {"id": NGHE_AN, "name": "UBND tỉnh Nghệ An", "subsystems": [
                {"code": "MOTCUA", "name": "Hệ thống thông tin một cửa điện tử"},
                {"code": "DANHMUC", "name": "Danh mục dùng chung"},
                {"code": "QLVB", "name": "Hệ thống quản lý văn bản và điều hành"}],
             "documents": {"subsystem": "QLVB"}},  # pulls its documents
            {"id": CIVIL_STATUS, "name": "Bộ Tư pháp (mã ví dụ)", "subsystems": [
                {"code": "HOTICH", "name": "Cơ sở dữ liệu hộ tịch điện tử"}]},
            {"id": SOCIAL_INSURANCE, "name": "Bảo hiểm xã hội Việt Nam (mã ví dụ)", "subsystems": [
                {"code": "BHXH", "name": "Hệ thống nghiệp vụ bảo hiểm xã hội"}]},
            {"id": POSTAL, "name": "Bưu chính (mã ví dụ)", "subsystems": [
                {"code": "BUUCHINH", "name": "Hệ thống đơn hàng bưu chính"}]},
        ],
        "services": services,
        "simulators": {"population": {"port": ports.population}, "dvcqg": {"port": ports.dvcqg},
                       "onestop": {"port": ports.onestop}, "rest": {"port": ports.rest},
                       **{name: {"port": getattr(ports, name)}
                          for name in AGENCY_SIMULATORS + DOCUMENT_SIMULATORS}},
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
    # The console's cookie key, here rather than made at run time in state_dir, so that every
    # replica mounting keys/ accepts every other's cookies (gateway/state.py).
    from gateway.console.sessions import load_or_create_key

    load_or_create_key(keys_dir)
    # The gateway seal (docs/signatures.md#gateway-seal): a self-signed ES256 key, sealing on.
    from gateway.seal.keys import ensure_seal_key

    ensure_seal_key(keys_dir / "seal", "ES256", "Liên Thông gateway seal (demo)")
    policy_target = target / "policies"
    policy_target.mkdir(exist_ok=True)
    for source in sorted(policies_dir().glob("*.yaml")):
        shutil.copyfile(source, policy_target / source.name)
    # The joint procedures (docs/flows.md): flows_dir's default, "flows", is this folder.
    shutil.copytree(flows_dir(), target / "flows", dirs_exist_ok=True)
    # A throwaway CA for the signed dossiers (gateway/demo_pki.py), made anew each time.
    shutil.rmtree(target / demo_pki.FOLDER, ignore_errors=True)
    demo_pki.create(target / demo_pki.FOLDER)

    secrets = {client: new_secret() for client in CLIENTS}
    client_keys = {client: keys.new_client_key(target / "client-keys", client) for client in KEY_CLIENTS}
    config = {
        "instance": "VN",
        "listen": {"host": "127.0.0.1", "port": ports.gateway},
        "database": database or "sqlite:///lienthong.db",
        "keys_dir": "keys",
        "policies_dir": "policies",
        "token": {"issuer": f"http://127.0.0.1:{ports.gateway}", "audience": "lienthong",
                  "lifetime": 300, "algorithm": "ES256"},
        # Store-and-forward (docs/delivery.md): retry soon, probe a failed upstream every few seconds.
        "delivery": {"max_attempts": 12, "backoff_base": 0.5, "backoff_max": 60, "breaker_failures": 5,
                     "breaker_cooldown": 2, "breaker_cooldown_max": 30, "transitions": "refuse"},
        # Who may run the commands that change state (docs/security.md#the-command-line): the
        # account that made this configuration; add the other operators' accounts.
        "cli": {"operators": [local_operator().account]},
        # The gateway signs its answers and deliveries (X-Gateway-Seal); keys in keys/seal/.
        "seal": {"enabled": True, "answers": True, "upstream": "deliveries"},
        **catalog(ports),
        # The trust store of signed requests: the demo CA above; put the licensed CAs' there.
        "signatures": demo_pki.trust_settings(),
        "clients": [{"id": cid, "name": name, "secret_hash": hash_secret(secrets[cid]),
                     **({"jwks": keys.public_jwks_of(client_keys[cid])} if cid in client_keys else {}),
                     "scopes": CLIENT_SCOPES.get(cid, ["exchange"])} for cid, name in CLIENTS.items()],
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
    return Initialised(config_path, secrets_path, secrets, client_keys)
