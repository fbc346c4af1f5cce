"""A simulator of the national public-service portal (DVCQG), as provincial systems see it.

Routes::

    POST /login   {"username", "password"} -> {"error_code": "00", "session", "expires_in"}
    POST /api     {"session", "madonvi", "service", ...} dispatched on service:
        DongBoHoSoMC         {"isUpdating": "True"|"False", "data": [dossier, ...]}
        CapNhatTienDoHoSoMC  {"data": [progress, ...]}             ("04" for an unknown MaHoSo)
        TraCuuHoSo           {"mahoso"} -> result [dossier + "QuaTrinhXuLy": progress list] or []
        LayDanhSachTTHC, LayThuTuc {"maTTHC"}, LayDanhMucCoQuan    a small example catalogue
    GET  /_sim/dossiers   every dossier held, with its agency and progress history
    GET|POST /_sim/mode   failure switches (see connectors.rest.simulator.Faults) and the portal's own:
                          {"expire_sessions": true} drops every session now, {"session_ttl": seconds},
                          {"refuse_login": bool}
    GET  /_sim/received, POST /_sim/reset   what arrived; reset also forgets dossiers and sessions

Error codes and messages are those of ``codes.py``. Any non-empty user name and password log in
(unless ``refuse_login``). Dossiers are checked all-or-nothing per request: one bad record and
none is stored. A new dossier (``isUpdating`` false) whose code is already held is accepted again
if identical (a repeated delivery), refused with "05" if different; an update of an unknown dossier
gets "04". A progress record identical to one the dossier already has is accepted and not added
again (a repeated delivery too). ``/_sim/dossiers`` counts such repeats per dossier in ``SoLanLap``,
so that a test can tell the distinct messages applied from the copies that arrived.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.dvcqg import codes, data
from connectors.dvcqg.dates import VIETNAM, format_portal, is_portal_date
from connectors.dvcqg.messages import DOSSIER, DOSSIER_DATES, PROGRESS, PROGRESS_DATES, TRA_CUU
from connectors.rest.simulator import ASGIApp, Faults, json_response
from gateway.simulation import Recorder

__all__ = ["Portal", "create_app"]


def _answer(code: str, message: str | None = None, **more: Any) -> dict[str, Any]:
    return {"error_code": code, "message": message or codes.MESSAGES[code], **more}


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = _answer(code, message)


class Portal:
    """The portal's state and rules, apart from HTTP: sessions, dossiers and their progress."""

    def __init__(self) -> None:
        self.dossiers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, float] = {}  # session -> expiry, time.monotonic()
        self.session_ttl = 1800.0
        self.refuse_login = False

    def reset(self) -> None:
        self.dossiers.clear()
        self.sessions.clear()
        self.session_ttl, self.refuse_login = 1800.0, False

    def login(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return _answer(codes.INVALID_REQUEST, "Yêu cầu đăng nhập phải là đối tượng JSON")
        username, password = request.get("username"), request.get("password")
        if self.refuse_login or not (isinstance(username, str) and username and isinstance(password, str)
                                     and password):
            return _answer(codes.LOGIN_FAILED)
        session = secrets.token_hex(16)
        self.sessions[session] = time.monotonic() + self.session_ttl
        return _answer(codes.OK, "Đăng nhập thành công", session=session, expires_in=int(self.session_ttl))

    def handle(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return _answer(codes.INVALID_REQUEST, "Yêu cầu phải là đối tượng JSON")
        session = request.get("session")
        session = session if isinstance(session, str) else ""  # a list or object is no session either
        expiry = self.sessions.get(session)
        if expiry is None or expiry < time.monotonic():
            self.sessions.pop(session, None)
            return _answer(codes.SESSION_EXPIRED)
        madonvi, service = request.get("madonvi"), request.get("service")
        if not isinstance(madonvi, str) or not madonvi:
            return _answer(codes.INVALID_REQUEST, "Thiếu mã đơn vị (madonvi)")
        handler = self._services().get(service) if isinstance(service, str) else None
        if handler is None:
            return _answer(codes.UNKNOWN_SERVICE, f"Dịch vụ {service!r} không được hỗ trợ")
        try:
            return handler(madonvi, request)
        except _Refusal as refusal:
            return refusal.answer

    def _services(self) -> dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]]:
        return {DOSSIER: self._sync, PROGRESS: self._progress, TRA_CUU: self._lookup,
                "LayDanhSachTTHC": self._procedures, "LayThuTuc": self._procedure,
                "LayDanhMucCoQuan": self._agencies}

    def _sync(self, madonvi: str, request: dict[str, Any]) -> dict[str, Any]:
        records = _records(request)
        updating = str(request.get("isUpdating", "False")).strip().lower() in ("true", "1")
        for record in records:
            _check(record, "TrangThaiHoSo", DOSSIER_DATES)
            held = self.dossiers.get(record["MaHoSo"])
            if updating and held is None:
                raise _Refusal(codes.NOT_FOUND, f"Không tìm thấy hồ sơ {record['MaHoSo']} để cập nhật "
                                                "(isUpdating = True)")
            if not updating and held is not None and held["HoSo"] != record:
                raise _Refusal(codes.ALREADY_EXISTS, f"Hồ sơ {record['MaHoSo']} đã tồn tại trên Cổng "
                                                     "DVCQG; gửi lại với isUpdating = True để cập nhật")
        now = format_portal(datetime.now(VIETNAM))
        for record in records:
            held = self.dossiers.get(record["MaHoSo"])
            if held is None:
                self.dossiers[record["MaHoSo"]] = {"MaHoSo": record["MaHoSo"], "madonvi": madonvi,
                                                   "HoSo": record, "QuaTrinhXuLy": [],
                                                   "NgayDongBo": now, "NgayCapNhat": now, "SoLanCapNhat": 0,
                                                   "SoLanLap": 0}
            elif held["HoSo"] != record:
                held.update(HoSo=record, NgayCapNhat=now, SoLanCapNhat=held["SoLanCapNhat"] + 1)
            else:
                held["SoLanLap"] += 1
        return _answer(codes.OK, f"Đồng bộ thành công {len(records)} hồ sơ", result=[
            {"MaHoSo": r["MaHoSo"], "TrangThaiHoSo": r.get("TrangThaiHoSo", "")} for r in records])

    def _progress(self, madonvi: str, request: dict[str, Any]) -> dict[str, Any]:
        records = _records(request)
        for record in records:
            _check(record, "TrangThai", PROGRESS_DATES)
            if record["MaHoSo"] not in self.dossiers:
                raise _Refusal(codes.NOT_FOUND, f"Không tìm thấy hồ sơ {record['MaHoSo']} trên Cổng "
                                                "DVCQG; cần đồng bộ hồ sơ (DongBoHoSoMC) trước")
        for record in records:
            held = self.dossiers[record["MaHoSo"]]
            if record in held["QuaTrinhXuLy"]:
                held["SoLanLap"] += 1
                continue
            held["QuaTrinhXuLy"].append(record)
            if record.get("TrangThai"):
                held["HoSo"] = {**held["HoSo"], "TrangThaiHoSo": str(record["TrangThai"])}
            held["NgayCapNhat"] = format_portal(datetime.now(VIETNAM))
        return _answer(codes.OK, "Cập nhật tiến độ thành công", result=[
            {"MaHoSo": r["MaHoSo"], "SoBuocXuLy": len(self.dossiers[r["MaHoSo"]]["QuaTrinhXuLy"])}
            for r in records])

    def _lookup(self, madonvi: str, request: dict[str, Any]) -> dict[str, Any]:
        code = request.get("mahoso") or request.get("MaHoSo")
        if not isinstance(code, str) or not code:
            raise _Refusal(codes.INVALID_REQUEST, "Thiếu mã hồ sơ (mahoso)")
        held = self.dossiers.get(code)
        if held is None:
            return _answer(codes.OK, f"Không tìm thấy hồ sơ {code}", result=[])
        return _answer(codes.OK, result=[{**held["HoSo"], "MaDonVi": held["madonvi"],
                                          "QuaTrinhXuLy": held["QuaTrinhXuLy"]}])

    def _procedures(self, madonvi: str, request: dict[str, Any]) -> dict[str, Any]:
        return _answer(codes.OK, result=[{"MATTHC": p.code, "TENTTHC": p.name} for p in data.PROCEDURES])

    def _procedure(self, madonvi: str, request: dict[str, Any]) -> dict[str, Any]:
        code = request.get("maTTHC") or request.get("MaTTHC")
        found = [p for p in data.PROCEDURES if p.code == code]
        return _answer(codes.OK, result=[
            {"MATTHC": p.code, "TENTTHC": p.name, "THOIHANGIAIQUYET": f"{p.days} ngày",
             "LINHVUCTHUCHIEN": [{"MALINHVUC": p.field_code, "TENLINHVUC": p.field_name}]} for p in found])

    def _agencies(self, madonvi: str, request: dict[str, Any]) -> dict[str, Any]:
        return _answer(codes.OK, result=[{"MADONVI": code, "TENDONVI": name}
                                         for code, name in data.AGENCIES.items()])


def _records(request: dict[str, Any]) -> list[dict[str, Any]]:
    records = request.get("data")
    if not isinstance(records, list) or not records:
        raise _Refusal(codes.INVALID_DATA, "Trường data phải là danh sách khác rỗng")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _Refusal(codes.INVALID_DATA, f"Phần tử thứ {index + 1} của data không phải đối tượng")
        if not isinstance(record.get("MaHoSo"), str) or not record["MaHoSo"]:
            raise _Refusal(codes.INVALID_DATA, f"Thiếu mã hồ sơ (MaHoSo) ở phần tử thứ {index + 1}")
    return records


def _check(record: dict[str, Any], status_key: str, date_keys: tuple[str, ...]) -> None:
    code = record["MaHoSo"]
    status = record.get(status_key)
    if status not in (None, "") and str(status) not in {str(n) for n in range(1, 11)}:
        raise _Refusal(codes.INVALID_DATA, f"{status_key} '{status}' không hợp lệ (hồ sơ {code}): "
                                           "chỉ nhận giá trị từ 1 đến 10")
    for key in date_keys:
        value = record.get(key)
        if value not in (None, "") and not is_portal_date(value):
            raise _Refusal(codes.INVALID_DATA, f"{key} '{value}' không đúng định dạng yyyyMMddHHmmss "
                                               f"(hồ sơ {code})")


def create_app(seed: int = 2026) -> ASGIApp:
    """The portal simulator; ``seed`` is unused (it starts empty) but kept for the common signature."""
    portal = Portal()
    recorder = Recorder()
    faults = Faults(recorder, error_answer=(200, orjson.dumps(_answer(codes.SYSTEM_ERROR))))

    async def login(request: Request) -> Response:
        body = await request.body()
        try:
            asked = orjson.loads(body)
        except orjson.JSONDecodeError:
            asked = None
        recorder.add("login", b"", username=asked.get("username") if isinstance(asked, dict) else None)
        return json_response(portal.login(asked))

    async def api(request: Request) -> Response:
        body = await request.body()
        try:
            asked = orjson.loads(body)
        except orjson.JSONDecodeError:
            asked = None
        service = asked.get("service") if isinstance(asked, dict) else None
        recorder.add(service if isinstance(service, str) else "api", body,
                     dstcode=request.headers.get("dstcode"),
                     seal=request.headers.get("x-gateway-seal"))  # the gateway seal, for receivers' tests
        if asked is None:
            return json_response(_answer(codes.INVALID_REQUEST, "Dữ liệu yêu cầu không đúng định dạng JSON"))
        return json_response(portal.handle(asked))

    async def dossiers(request: Request) -> Response:
        return json_response({"total": len(portal.dossiers), "items": list(portal.dossiers.values())})

    def extra(changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if key == "expire_sessions" and isinstance(value, bool):
                if value:
                    portal.sessions.clear()
            elif key == "session_ttl" and isinstance(value, int | float) and not isinstance(value, bool) \
                    and value > 0:
                portal.session_ttl = float(value)
            elif key == "refuse_login" and isinstance(value, bool):
                portal.refuse_login = value
            else:
                raise ValueError(f"unknown or invalid switch {key!r}: the portal simulator knows "
                                 "expire_sessions: bool, session_ttl: seconds > 0, refuse_login: bool")
        return {"session_ttl": portal.session_ttl, "refuse_login": portal.refuse_login,
                "sessions": len(portal.sessions)}

    app = Starlette(routes=[Route("/login", login, methods=["POST"]), Route("/api", api, methods=["POST"]),
                            Route("/_sim/dossiers", dossiers, methods=["GET"]),
                            *faults.routes(extra, portal.reset), *recorder.routes()])
    return faults.wrap(app)
