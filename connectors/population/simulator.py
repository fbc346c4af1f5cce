"""A simulator of the national population database: a real SOAP 1.1 server over synthetic citizens.

``POST /dancu`` (or ``/``) answers the WSDL's three operations from ``data.citizens(1000, seed)``:

- ``XacThucThongTinCongDan``: ``TonTai`` true when the id exists and the name (if given, ignoring case
  and spacing) and birth date (if given; ``yyyy`` or ``yyyyMM`` match the date's start) and old card
  number (if given) are the citizen's;
- ``XacMinhThongTinNhanThan``: the identity record when id, name and birth date match, else none;
- ``TraCuuThongTinCongDan``: the whole record, or a ``soap:Client`` Fault for an unknown id.

``GET /dancu?wsdl`` serves the WSDL with this server's address. What arrived is kept by a
``Recorder`` (``GET /_sim/received``, ``POST /_sim/reset``). Tests steer failures with
``POST /_sim/mode`` ``{"delay_ms": int, "fail": "fault" | "http500" | "garbage" | "invalid" | null}``
(``GET`` reads it back), or per request with the same names in the query string.

Answers are bytes built once (verify) or once per citizen (lookups): the simulator is on the
benchmark's path.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.population import NAMESPACE, WSDL
from connectors.population.data import Address, Citizen, Relative, citizens
from gateway.resources import schemas_dir
from gateway.simulation import Recorder

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XML = "text/xml; charset=utf-8"
FAILURES = ("fault", "http500", "garbage", "invalid")
REQUIRED = ("MaYeuCau", "MaDVC", "MaCanBo", "MaDonVi", "SoDinhDanh")
_RESPONSES = {"XacThucThongTinCongDan": "KetQuaXacThucResponse",
              "XacMinhThongTinNhanThan": "XacMinhThongTinNhanThanResponse",
              "TraCuuThongTinCongDan": "TraCuuThongTinCongDanResponse"}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>'
         b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
         b"<SOAP-ENV:Header/><SOAP-ENV:Body>")
_TAIL = b"</SOAP-ENV:Body></SOAP-ENV:Envelope>"


class SoapFault(Exception):
    def __init__(self, code: str, text: str, error: str, id_: str | None = None) -> None:
        super().__init__(text)
        self.code, self.text, self.error, self.id = code, text, error, id_


@dataclass(frozen=True, slots=True)
class Mode:
    delay_ms: int = 0
    fail: str | None = None

    @classmethod
    def parse(cls, values: dict[str, Any], base: Mode) -> Mode:
        unknown = set(values) - {"delay_ms", "fail"}
        if unknown:
            raise ValueError(f"unknown switches: {', '.join(sorted(unknown))}")
        mode = base
        if "delay_ms" in values:
            delay = values["delay_ms"]
            delay = int(delay) if isinstance(delay, str) and delay.isdigit() else delay
            if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 600_000:
                raise ValueError("delay_ms must be an integer from 0 to 600000")
            mode = replace(mode, delay_ms=delay)
        if "fail" in values:
            fail = values["fail"] or None
            if fail is not None and fail not in FAILURES:
                raise ValueError(f"fail must be one of {', '.join(FAILURES)} or null")
            mode = replace(mode, fail=fail)
        return mode


class PopulationDatabase:
    """The simulated upstream: citizens, what arrived, and the current behaviour switches."""

    def __init__(self, seed: int = 2026, count: int = 1000) -> None:
        self.citizens = citizens(count=count, seed=seed)
        self.recorder = Recorder()
        self.mode = Mode()
        self._wsdl = (schemas_dir() / WSDL).read_text(encoding="utf-8")
        self._operations: dict[str, Callable[[dict[str, str]], bytes]] = {
            f"{{{NAMESPACE}}}XacThucThongTinCongDanRequest": self.verify,
            f"{{{NAMESPACE}}}XacMinhThongTinNhanThanRequest": self.identity,
            f"{{{NAMESPACE}}}TraCuuThongTinCongDanRequest": self.lookup,
        }
        self._answers: dict[tuple[str, str | None], bytes] = {}

    # --- the three operations: request fields in, SOAP body bytes out -------------------------------

    def verify(self, fields: dict[str, str]) -> bytes:
        return _VERIFIED if self._matches(fields) else _NOT_VERIFIED

    def identity(self, fields: dict[str, str]) -> bytes:
        _require(fields, ("HoVaTen", "NgayThangNamSinh"))
        citizen = self.citizens[fields["SoDinhDanh"]] if self._matches(fields) else None
        return self._answer("XacMinhThongTinNhanThan", citizen)

    def lookup(self, fields: dict[str, str]) -> bytes:
        citizen = self.citizens.get(fields["SoDinhDanh"])
        if citizen is None:
            raise SoapFault("Client", "Không tìm thấy công dân có số định danh này", "KHONG_TIM_THAY",
                            fields["SoDinhDanh"])
        return self._answer("TraCuuThongTinCongDan", citizen)

    def _matches(self, fields: dict[str, str]) -> bool:
        citizen = self.citizens.get(fields["SoDinhDanh"])
        if citizen is None:
            return False
        person = citizen.person
        name, born, card = fields.get("HoVaTen"), fields.get("NgayThangNamSinh"), fields.get("SoCMND")
        if name and _fold(name) != _fold(person.ho_va_ten):
            return False
        if born and not (len(born) in (4, 6, 8) and person.ngay_sinh.startswith(born)):
            return False
        return not (card and card != person.so_cmnd)

    def _answer(self, operation: str, citizen: Citizen | None) -> bytes:
        key = (operation, None if citizen is None else citizen.person.so_dinh_danh)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = _answer(operation, citizen)
        return answer

    # --- HTTP ---------------------------------------------------------------------------------------

    async def soap(self, request: Request) -> Response:
        if request.method == "GET":
            return self.wsdl(request)
        body = await request.body()
        try:
            mode = Mode.parse(dict(request.query_params), self.mode) if request.query_params else self.mode
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        try:
            node = _request_element(body)
        except SoapFault as fault:
            self.recorder.add("invalid", body, soap_action=request.headers.get("soapaction"))
            return _fault_response(fault)
        operation = etree.QName(node).localname.removesuffix("Request")
        self.recorder.add(operation, body, soap_action=request.headers.get("soapaction"))
        if mode.delay_ms:
            await asyncio.sleep(mode.delay_ms / 1000)
        if mode.fail is not None:
            return _failure(mode.fail, operation)
        handler = self._operations.get(node.tag)
        try:
            if handler is None:
                raise SoapFault("Client", f"Không hỗ trợ thao tác {etree.QName(node).localname}",
                                "THAO_TAC_KHONG_HO_TRO")
            fields = {etree.QName(child).localname: (child.text or "").strip()
                      for child in node.iterchildren(tag=etree.Element)}
            _require(fields, REQUIRED)
            return Response(handler(fields), media_type=XML)
        except SoapFault as fault:
            return _fault_response(fault)

    def wsdl(self, request: Request) -> Response:
        if "wsdl" not in request.query_params:
            return PlainTextResponse("POST SOAP 1.1 requests here; GET ?wsdl for the WSDL",
                                     status_code=405, headers={"Allow": "GET, POST"})
        here = f"{request.base_url}dancu"
        text = re.sub(r'(<soap:address location=")[^"]*(")', lambda m: f"{m[1]}{here}{m[2]}", self._wsdl)
        return Response(text, media_type=XML)

    async def switch(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                values = await request.json()
                if not isinstance(values, dict):
                    raise ValueError("send a JSON object")
                self.mode = Mode.parse(values, self.mode)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"delay_ms": self.mode.delay_ms, "fail": self.mode.fail})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/dancu", self.soap, methods=["GET", "POST"]),
            Route("/", self.soap, methods=["GET", "POST"]),
            Route("/_sim/mode", self.switch, methods=["GET", "POST"]),
            *self.recorder.routes(),
        ])


def create_app(seed: int = 2026) -> Starlette:
    """The population database simulator as an ASGI app."""
    return PopulationDatabase(seed).app()


# --- SOAP on the wire ------------------------------------------------------------------------------

def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def _request_element(body: bytes) -> Any:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault("Client", f"Yêu cầu không phải XML hợp lệ: {exc}", "XML_KHONG_HOP_LE") from exc
    body_node = root.find(f"{{{SOAP_ENV}}}Body") if root.tag == f"{{{SOAP_ENV}}}Envelope" else None
    node = None if body_node is None else next(body_node.iterchildren(tag=etree.Element), None)
    if node is None:
        raise SoapFault("Client", "Yêu cầu không phải phong bì SOAP 1.1", "KHONG_PHAI_SOAP")
    return node


def _require(fields: dict[str, str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if not fields.get(name)]
    if missing:
        raise SoapFault("Client", f"Thiếu trường bắt buộc: {', '.join(missing)}", "THIEU_TRUONG")
    if "SoDinhDanh" in names and not re.fullmatch(r"[0-9]{12}", fields["SoDinhDanh"]):
        raise SoapFault("Client", "Số định danh cá nhân phải có 12 chữ số", "SAI_DINH_DANG",
                        fields["SoDinhDanh"])


def _bytes(element: Any) -> bytes:
    text: bytes = etree.tostring(element, encoding="utf-8")
    return text


def _fault_response(fault: SoapFault) -> Response:
    return Response(_fault_bytes(fault), status_code=500, media_type=XML)


def _fault_bytes(fault: SoapFault) -> bytes:
    element = etree.Element(f"{{{SOAP_ENV}}}Fault", nsmap={"SOAP-ENV": SOAP_ENV})
    etree.SubElement(element, "faultcode").text = f"SOAP-ENV:{fault.code}"
    etree.SubElement(element, "faultstring").text = fault.text
    error = etree.SubElement(etree.SubElement(element, "detail"), _q("LoiNghiepVu"), nsmap={"ns2": NAMESPACE})
    _text(error, "MaLoi", fault.error)
    _text(error, "MoTa", fault.text)
    _text(error, "SoDinhDanh", fault.id)
    return _HEAD + _bytes(element) + _TAIL


def _failure(fail: str, operation: str) -> Response:
    if fail == "fault":
        busy = SoapFault("Server", "Hệ thống CSDL quốc gia về dân cư đang bận, vui lòng thử lại sau",
                         "HE_THONG_BAN")
        return _fault_response(busy)
    if fail == "http500":
        return PlainTextResponse("Internal Server Error", status_code=500)
    if fail == "garbage":
        return Response(_HEAD + b"<ns2:KetQua", media_type=XML)  # cut short, not well-formed
    element = _RESPONSES.get(operation, "KetQuaXacThucResponse")
    wrong = f'<ns2:{element} xmlns:ns2="{NAMESPACE}"><ns2:KetQua>1</ns2:KetQua></ns2:{element}>'
    return Response(_HEAD + wrong.encode() + _TAIL, media_type=XML)


def _answer(operation: str, citizen: Citizen | None) -> bytes:
    element = etree.Element(_q(_RESPONSES[operation]), nsmap={"ns2": NAMESPACE})
    if operation == "TraCuuThongTinCongDan" and citizen is not None:
        _record(element, citizen)
    elif citizen is not None:
        _identity(etree.SubElement(element, _q("CongDan")), citizen)
    return _HEAD + _bytes(element) + _TAIL


def _verify_answer(exists: bool) -> bytes:
    element = etree.Element(_q("KetQuaXacThucResponse"), nsmap={"ns2": NAMESPACE})
    _text(element, "TonTai", "true" if exists else "false")
    return _HEAD + _bytes(element) + _TAIL


# --- records as the WSDL's types -------------------------------------------------------------------

def _text(parent: Any, name: str, value: str | None) -> None:
    if value is not None:
        etree.SubElement(parent, _q(name)).text = value


def _name(parent: Any, ho: str, chu_dem: str, ten: str) -> None:
    node = etree.SubElement(parent, _q("HoVaTen"))
    _text(node, "Ho", ho)
    _text(node, "ChuDem", chu_dem or None)
    _text(node, "Ten", ten)


def _born(parent: Any, date: str) -> None:
    _text(etree.SubElement(parent, _q("NgayThangNamSinh")), "NgayThangNam", date)


def _address(parent: Any, name: str, address: Address) -> None:
    node = etree.SubElement(parent, _q(name))
    _text(node, "MaTinhThanh", address.ma_tinh_thanh)
    _text(node, "QuocGia", address.quoc_gia)
    _text(node, "ChiTiet", address.chi_tiet)


def _relative(parent: Any, name: str, relative: Relative) -> None:
    node = etree.SubElement(parent, _q(name))
    _text(node, "SoDinhDanh", relative.so_dinh_danh)
    _name(node, relative.ho, relative.chu_dem, relative.ten)
    _text(node, "QuocTich", relative.quoc_tich)


def _identity(node: Any, citizen: Citizen) -> None:
    person = citizen.person
    _text(node, "SoDinhDanh", person.so_dinh_danh)
    _text(node, "SoCMND", person.so_cmnd)
    _name(node, person.ho, person.chu_dem, person.ten)
    _text(node, "GioiTinh", person.gioi_tinh)
    _born(node, person.ngay_sinh)
    _relative(node, "Cha", citizen.cha)
    _relative(node, "Me", citizen.me)


def _record(node: Any, citizen: Citizen) -> None:
    person = citizen.person
    _text(node, "SoDinhDanh", person.so_dinh_danh)
    _text(node, "SoCMND", person.so_cmnd)
    _name(node, person.ho, person.chu_dem, person.ten)
    _text(node, "GioiTinh", person.gioi_tinh)
    _text(node, "DanToc", person.dan_toc)
    _text(node, "TonGiao", person.ton_giao)
    _text(node, "QuocTich", "VN")
    _text(node, "TinhTrangHonNhan", person.tinh_trang_hon_nhan)
    _born(node, person.ngay_sinh)
    _address(node, "NoiDangKyKhaiSinh", citizen.noi_dang_ky_khai_sinh)
    _address(node, "QueQuan", citizen.que_quan)
    _address(node, "ThuongTru", citizen.thuong_tru)
    _address(node, "NoiOHienTai", citizen.noi_o_hien_tai)
    _relative(node, "Cha", citizen.cha)
    _relative(node, "Me", citizen.me)
    if citizen.vo_chong is not None:
        _relative(node, "VoChong", citizen.vo_chong)
    head = etree.SubElement(node, _q("ChuHo"))
    _text(head, "SoDinhDanh", citizen.chu_ho.so_dinh_danh)
    _name(head, citizen.chu_ho.ho, citizen.chu_ho.chu_dem, citizen.chu_ho.ten)
    _text(head, "QuanHe", citizen.quan_he_voi_chu_ho)


def _fold(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


_VERIFIED = _verify_answer(True)
_NOT_VERIFIED = _verify_answer(False)
