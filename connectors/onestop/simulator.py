"""A simulator of a provincial one-stop system receiving dossiers filed on the national portal.

Routes::

    POST /hoso             a dossier -> {"error_code": "00", "message", "MaHoSo", "SoBienNhan",
                           "NgayTiepNhan"}; the same MaHoSo again keeps its receipt (and takes the
                           new content); no MaHoSo -> HTTP 400 {"error_code": "02", ...}
    GET  /hoso/{MaHoSo}    {"error_code": "00", "data": {...}} or HTTP 404 {"error_code": "04", ...}
    POST /tiendo           progress (a CapNhatTienDoHoSoMC-shaped record, a list or {"data": [...]}):
                           each step is appended to its dossier's "TienDo" (a step already held is
                           not added twice) and its TrangThai becomes the dossier's TrangThaiHoSo ->
                           {"error_code": "00", "MaHoSo", "TrangThaiHoSo"}; a dossier not held ->
                           HTTP 404 {"error_code": "04", ...}, nothing applied
    POST /ketqua           the outcome of a joint procedure this system filed at the gateway
                           (docs/flows.md: the flow's ``NhanKetQuaLienThong`` notification): kept
                           by MaHoSo, the same message twice kept once -> {"error_code": "00",
                           "MaHoSo", "SoLan"}; no MaHoSo -> HTTP 400 {"error_code": "02", ...}
    GET  /ketqua/{MaHoSo}  {"error_code": "00", "data": [outcomes]} or HTTP 404 {"error_code": "04"}
    GET  /hoso, GET /_sim/dossiers   {"total", "items"}: every dossier held
    GET|POST /_sim/mode    the failure switches of connectors.rest.simulator.Faults ("error_code"
                           answers {"error_code": "99"})
    GET  /_sim/received, POST /_sim/reset   what arrived; reset also returns to the seeded dossiers

Three dossiers are held from the start (``connectors.dvcqg.data.dossier(seed, 0..2)``), so that a
lookup has something to find. Receipt numbers look like ``H22.31.20-260609-0137``: the agency, the
day, a running number.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.dvcqg import codes, data
from connectors.dvcqg.dates import VIETNAM, format_portal
from connectors.rest.simulator import ASGIApp, Faults, json_response
from gateway.simulation import Recorder

__all__ = ["AGENCY", "create_app"]

AGENCY = "000.00.23.H60"  # Tuyên Quang's one-stop system (Hà Giang has merged into it)


class _OneStop:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.dossiers: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, list[dict[str, Any]]] = {}
        self.reset()

    def reset(self) -> None:
        self.dossiers.clear()
        self.outcomes.clear()
        self._next = 1 + random.Random(f"onestop/{self._seed}").randrange(200)
        for index in range(3):
            self.receive(data.dossier(self._seed, index, agency=AGENCY))

    def receive(self, dossier: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The stored record for ``dossier`` and whether it was new."""
        held = self.dossiers.get(dossier["MaHoSo"])
        if held is not None:
            held.update({**dossier, "SoBienNhan": held["SoBienNhan"], "NgayNhan": held["NgayNhan"]})
            return held, False
        now = datetime.now(VIETNAM)
        receipt = f"{data.short_code(AGENCY)}-{now:%y%m%d}-{self._next:04d}"
        self._next += 1
        record = {**dossier, "SoBienNhan": receipt, "NgayNhan": format_portal(now),
                  "TrangThaiHoSo": dossier.get("TrangThaiHoSo") or "2",
                  "NgayTiepNhan": dossier.get("NgayTiepNhan") or format_portal(now)}
        self.dossiers[dossier["MaHoSo"]] = record
        return record, True

    def advance(self, steps: list[dict[str, Any]]) -> str | None:
        """Apply progress steps, all or none; the code of a dossier not held, else None."""
        for step in steps:
            if step.get("MaHoSo") not in self.dossiers:
                return str(step.get("MaHoSo"))
        for step in steps:
            held = self.dossiers[step["MaHoSo"]]
            history = held.setdefault("TienDo", [])
            if step not in history:
                history.append(step)
            if step.get("TrangThai") not in (None, ""):
                held["TrangThaiHoSo"] = str(step["TrangThai"])
        return None


def create_app(seed: int = 2026) -> ASGIApp:
    """The one-stop simulator, holding three seeded dossiers."""
    office = _OneStop(seed)
    recorder = Recorder()
    busy = {"error_code": codes.SYSTEM_ERROR,
            "message": "Hệ thống một cửa đang bảo trì, vui lòng thử lại sau"}
    faults = Faults(recorder, error_answer=(200, orjson.dumps(busy)))

    async def receive(request: Request) -> Response:
        body = await request.body()
        recorder.add("NhanHoSo", body)
        try:
            dossier = orjson.loads(body)
        except orjson.JSONDecodeError:
            return json_response({"error_code": codes.INVALID_REQUEST,
                                  "message": "Dữ liệu gửi lên không đúng định dạng JSON"}, 400)
        code = dossier.get("MaHoSo") if isinstance(dossier, dict) else None
        if not isinstance(code, str) or not code:
            return json_response({"error_code": codes.INVALID_DATA, "message": "Thiếu mã hồ sơ (MaHoSo)"},
                                 400)
        record, new = office.receive(dossier)
        message = "Tiếp nhận hồ sơ thành công" if new else "Hồ sơ đã được tiếp nhận trước đó, đã cập nhật"
        return json_response({"error_code": codes.OK, "message": message, "MaHoSo": record["MaHoSo"],
                              "SoBienNhan": record["SoBienNhan"], "NgayTiepNhan": record["NgayTiepNhan"]})

    async def lookup(request: Request) -> Response:
        code = request.path_params["code"]
        recorder.add("TraCuuHoSo", b"", MaHoSo=code)
        record = office.dossiers.get(code)
        if record is None:
            return json_response({"error_code": codes.NOT_FOUND,
                                  "message": f"Không tìm thấy hồ sơ {code}"}, 404)
        return json_response({"error_code": codes.OK, "message": "Thành công", "data": record})

    async def progress(request: Request) -> Response:
        body = await request.body()
        recorder.add("CapNhatTienDoHoSo", body)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return json_response({"error_code": codes.INVALID_REQUEST,
                                  "message": "Dữ liệu gửi lên không đúng định dạng JSON"}, 400)
        items = payload.get("data") if isinstance(payload, dict) and "MaHoSo" not in payload else payload
        steps: list[dict[str, Any]] = [s for s in (items if isinstance(items, list) else [items])
                                       if isinstance(s, dict) and isinstance(s.get("MaHoSo"), str)
                                       and s["MaHoSo"]]
        if not steps or len(steps) != (len(items) if isinstance(items, list) else 1):
            return json_response({"error_code": codes.INVALID_DATA, "message": "Thiếu mã hồ sơ (MaHoSo)"},
                                 400)
        missing = office.advance(steps)
        if missing is not None:
            return json_response({"error_code": codes.NOT_FOUND,
                                  "message": f"Không tìm thấy hồ sơ {missing}"}, 404)
        last = office.dossiers[steps[-1]["MaHoSo"]]
        return json_response({"error_code": codes.OK, "message": "Cập nhật tiến độ thành công",
                              "MaHoSo": last["MaHoSo"], "TrangThaiHoSo": last["TrangThaiHoSo"]})

    async def outcome(request: Request) -> Response:
        body = await request.body()
        recorder.add("NhanKetQuaLienThong", body)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return json_response({"error_code": codes.INVALID_REQUEST,
                                  "message": "Dữ liệu gửi lên không đúng định dạng JSON"}, 400)
        code = message.get("MaHoSo") if isinstance(message, dict) else None
        if not isinstance(code, str) or not code:
            return json_response({"error_code": codes.INVALID_DATA, "message": "Thiếu mã hồ sơ (MaHoSo)"},
                                 400)
        held = office.outcomes.setdefault(code, [])
        if message not in held:
            held.append(message)
        return json_response({"error_code": codes.OK, "message": "Đã nhận kết quả", "MaHoSo": code,
                              "SoLan": len(held)})

    async def outcomes(request: Request) -> Response:
        code = request.path_params["code"]
        held = office.outcomes.get(code)
        if held is None:
            return json_response({"error_code": codes.NOT_FOUND,
                                  "message": f"Chưa có kết quả của hồ sơ {code}"}, 404)
        return json_response({"error_code": codes.OK, "data": held})

    async def everything(request: Request) -> Response:
        return json_response({"total": len(office.dossiers), "items": list(office.dossiers.values())})

    app = Starlette(routes=[Route("/hoso", receive, methods=["POST"]),
                            Route("/hoso", everything, methods=["GET"]),
                            Route("/hoso/{code}", lookup, methods=["GET"]),
                            Route("/tiendo", progress, methods=["POST"]),
                            Route("/ketqua", outcome, methods=["POST"]),
                            Route("/ketqua/{code}", outcomes, methods=["GET"]),
                            Route("/_sim/dossiers", everything, methods=["GET"]),
                            *faults.routes(reset=office.reset), *recorder.routes()])
    return faults.wrap(app)
