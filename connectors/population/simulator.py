"""A simulator of the national population database: a real SOAP 1.1 server over synthetic citizens.

``POST /dancu`` (or ``/``) answers the WSDL's three operations from ``data.citizens(1000, seed)``, in
the published shapes (each request's element in its own namespace, as ``population/dancu.wsdl``):

- ``XacThucThongTinCongDan``: ``TonTai`` true when the id exists and the name (if not empty,
  ignoring case, spacing and Unicode form) and old card number (if not empty) are the citizen's;
- ``XacMinhThongTinNhanThan``: a ``CongdanCollection`` with the citizen (and parents) when id, name
  and birth date match (``yyyy`` or ``yyyyMM`` match the date's start); the published collection
  holds at least one citizen, so no match is a ``soap:Client`` Fault (``KHONG_KHOP``);
- ``TraCuuThongTinCongDan``: the whole record, or a ``soap:Client`` Fault for an unknown id.

Requests are read with the gateway's hardened parser. ``GET /dancu?wsdl`` serves the WSDL with this
server's address. What arrived is kept by a ``Recorder`` (``GET /_sim/received``,
``POST /_sim/reset``). Tests steer failures with ``POST /_sim/mode``
``{"delay_ms": int, "fail": "fault" | "http500" | "garbage" | "invalid" | "dtd" | "bad-value" | null}``
(``GET`` reads it back), or per request with the same names in the query string: ``dtd`` answers with
a document type declaration (and an entity in the answer), ``bad-value`` with a value its XSD type
does not allow (``TonTai`` ``banana``, a ``ThoiDiemDuLieu`` that is no date, a ``GioiTinh`` outside
its enumeration).

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

from connectors.population import DANCU, NAMESPACE, QLDC, WSDL
from connectors.population.data import Address, Citizen, Relative, citizens
from gateway.resources import schemas_dir
from gateway.simulation import Recorder
from gateway.xml import safe

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XML = "text/xml; charset=utf-8"
FAILURES = ("fault", "http500", "garbage", "invalid", "dtd", "bad-value")
VERIFY, IDENTITY, LOOKUP = "XacThucThongTinCongDan", "XacMinhThongTinNhanThan", "TraCuuThongTinCongDan"
# The fields each request must carry with a value: the published schemas make every field an
# element, and the database refuses a request that leaves these empty.
REQUIRED = {
    VERIFY: ("MaYeuCau", "MaDichVu", "MaCanBo", "SoDinhDanh"),
    IDENTITY: ("MaYeuCau", "MaDVC", "MaTichHop", "MaDonVi", "MaCanBo", "SoDinhDanh", "HoVaTen",
               "NgayThangNamSinh"),
    LOOKUP: ("MaYeuCau", "MaDichVu", "MaCanBo", "SoDinhDanh"),
}
_REQUESTS = {f"{{{NAMESPACE}}}{VERIFY}Request": VERIFY, f"{{{QLDC}}}{IDENTITY}Request": IDENTITY,
             f"{{{NAMESPACE}}}{LOOKUP}Request": LOOKUP}
SNAPSHOT = "2026-11-20T00:00:00+07:00"  # ThoiDiemDuLieu: when the simulated data were taken

_LIMITS = safe.Limits(max_bytes=1_048_576, max_depth=32, max_elements=2_000)
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
_OPEN = (b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
         b"<SOAP-ENV:Header/><SOAP-ENV:Body>")
_HEAD = _DECLARATION + _OPEN
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
            VERIFY: self.verify, IDENTITY: self.identity, LOOKUP: self.lookup}
        self._answers: dict[tuple[str, str], bytes] = {}

    # --- the three operations: request fields in, SOAP body bytes out -------------------------------

    def verify(self, fields: dict[str, str]) -> bytes:
        _require(fields, REQUIRED[VERIFY])
        return _VERIFIED if self._matches(fields) else _NOT_VERIFIED

    def identity(self, fields: dict[str, str]) -> bytes:
        _require(fields, REQUIRED[IDENTITY])
        if not self._matches(fields):
            raise SoapFault("Client", "Không có công dân khớp với thông tin nhân thân đã cung cấp",
                            "KHONG_KHOP", fields["SoDinhDanh"])
        return self._answer(IDENTITY, self.citizens[fields["SoDinhDanh"]])

    def lookup(self, fields: dict[str, str]) -> bytes:
        _require(fields, REQUIRED[LOOKUP])
        citizen = self.citizens.get(fields["SoDinhDanh"])
        if citizen is None:
            raise SoapFault("Client", "Không tìm thấy công dân có số định danh này", "KHONG_TIM_THAY",
                            fields["SoDinhDanh"])
        return self._answer(LOOKUP, citizen)

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

    def _answer(self, operation: str, citizen: Citizen) -> bytes:
        key = (operation, citizen.person.so_dinh_danh)
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
        operation = _REQUESTS.get(node.tag) or etree.QName(node).localname.removesuffix("Request")
        self.recorder.add(operation, body, soap_action=request.headers.get("soapaction"))
        if mode.delay_ms:
            await asyncio.sleep(mode.delay_ms / 1000)
        if mode.fail is not None:
            return self._failure(mode.fail, operation)
        handler = self._operations.get(_REQUESTS.get(node.tag, ""))
        try:
            if handler is None:
                raise SoapFault("Client", f"Không hỗ trợ thao tác {node.tag}", "THAO_TAC_KHONG_HO_TRO")
            fields = {etree.QName(child).localname: (child.text or "").strip()
                      for child in node.iterchildren(tag=etree.Element)}
            return Response(handler(fields), media_type=XML)
        except SoapFault as fault:
            return _fault_response(fault)

    def _failure(self, fail: str, operation: str) -> Response:
        if fail == "fault":
            busy = SoapFault("Server", "Hệ thống CSDL quốc gia về dân cư đang bận, vui lòng thử lại sau",
                             "HE_THONG_BAN")
            return _fault_response(busy)
        if fail == "http500":
            return PlainTextResponse("Internal Server Error", status_code=500)
        if fail == "garbage":
            return Response(_HEAD + b"<ns2:KetQua", media_type=XML)  # cut short, not well-formed
        if fail == "dtd":
            return Response(_WITH_DTD, media_type=XML)
        someone = next(iter(self.citizens.values()))
        if fail == "bad-value":
            return Response(_bad_value(operation, someone), media_type=XML)
        namespace, element = _RESPONSES.get(operation, _RESPONSES[VERIFY])
        wrong = f'<ns2:{element} xmlns:ns2="{namespace}"><ns2:KetQua>1</ns2:KetQua></ns2:{element}>'
        return Response(_HEAD + wrong.encode() + _TAIL, media_type=XML)

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

_RESPONSES = {VERIFY: (NAMESPACE, "KetQuaXacThucResponse"), IDENTITY: (DANCU, f"{IDENTITY}Response"),
              LOOKUP: (NAMESPACE, f"{LOOKUP}Response")}


def _request_element(body: bytes) -> Any:
    try:
        root = safe.parse(body, _LIMITS)
    except safe.XmlRefused as exc:
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
    if not re.fullmatch(r"[0-9]{12}", fields["SoDinhDanh"]):
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
    detail = etree.SubElement(element, "detail")
    error = etree.SubElement(detail, f"{{{NAMESPACE}}}LoiNghiepVu", nsmap={"ns2": NAMESPACE})
    for name, value in (("MaLoi", fault.error), ("MoTa", fault.text), ("SoDinhDanh", fault.id)):
        if value is not None:
            etree.SubElement(error, f"{{{NAMESPACE}}}{name}").text = value
    return _HEAD + _bytes(element) + _TAIL


def _answer(operation: str, citizen: Citizen) -> bytes:
    if operation == IDENTITY:
        answer = etree.Element(f"{{{DANCU}}}{IDENTITY}Response", nsmap={"ns2": DANCU})
        collection = etree.SubElement(answer, f"{{{DANCU}}}CongdanCollection",
                                      SoCongDan="1", ThoiDiemDuLieu=SNAPSHOT)
        _identity(Writer(DANCU), etree.SubElement(collection, f"{{{DANCU}}}CongDan"), citizen)
        return _HEAD + _bytes(answer) + _TAIL
    record = etree.Element(f"{{{NAMESPACE}}}{LOOKUP}Response", nsmap={"ns2": NAMESPACE})
    _record(Writer(NAMESPACE), record, citizen)
    return _HEAD + _bytes(record) + _TAIL


def _verify_answer(value: str) -> bytes:
    return (_HEAD + f'<ns2:KetQuaXacThucResponse xmlns:ns2="{NAMESPACE}"><ns2:TonTai>{value}</ns2:TonTai>'
            "</ns2:KetQuaXacThucResponse>".encode() + _TAIL)


def _bad_value(operation: str, citizen: Citizen) -> bytes:
    """A well-formed answer in the right shape with one value its XSD type does not allow."""
    if operation == IDENTITY:
        return _answer(IDENTITY, citizen).replace(SNAPSHOT.encode(), b"banana")
    if operation == LOOKUP:
        return re.sub(rb"<ns2:GioiTinh>[^<]*<", b"<ns2:GioiTinh>banana<", _answer(LOOKUP, citizen))
    return _verify_answer("banana")


# --- records as the WSDL's types -------------------------------------------------------------------

class Writer:
    """Child elements in one namespace: the identity check's answer and the lookup's use different ones."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def text(self, parent: Any, name: str, value: str | None) -> None:
        if value is not None:
            etree.SubElement(parent, f"{{{self.namespace}}}{name}").text = value

    def node(self, parent: Any, name: str) -> Any:
        return etree.SubElement(parent, f"{{{self.namespace}}}{name}")

    def name(self, parent: Any, ho: str, chu_dem: str, ten: str) -> None:
        node = self.node(parent, "HoVaTen")
        self.text(node, "Ho", ho)
        self.text(node, "ChuDem", chu_dem)  # required, as published: empty when there is none
        self.text(node, "Ten", ten)

    def born(self, parent: Any, date: str) -> None:
        self.text(self.node(parent, "NgayThangNamSinh"), "NgayThangNam", date)

    def relative(self, parent: Any, name: str, relative: Relative, *, id_required: bool = False) -> None:
        node = self.node(parent, name)
        self.text(node, "SoDinhDanh", relative.so_dinh_danh or ("" if id_required else None))
        self.text(node, "QuocTich", relative.quoc_tich)
        self.name(node, relative.ho, relative.chu_dem, relative.ten)

    def address(self, parent: Any, name: str, address: Address) -> None:
        node = self.node(parent, name)
        self.text(node, "MaTinhThanh", address.ma_tinh_thanh)
        self.text(node, "QuocGia", address.quoc_gia)
        self.text(node, "ChiTiet", address.chi_tiet)


def _identity(w: Writer, node: Any, citizen: Citizen) -> None:
    """One CongDan of a CongdanCollection, as published: ids, name, birth date, parents."""
    person = citizen.person
    w.text(node, "SoDinhDanh", person.so_dinh_danh)
    w.text(node, "SoCMND", person.so_cmnd)
    w.name(node, person.ho, person.chu_dem, person.ten)
    w.born(node, person.ngay_sinh)
    w.relative(node, "Cha", citizen.cha, id_required=True)
    w.relative(node, "Me", citizen.me, id_required=True)


def _record(w: Writer, node: Any, citizen: Citizen) -> None:
    person = citizen.person
    w.text(node, "SoDinhDanh", person.so_dinh_danh)
    w.text(node, "SoCMND", person.so_cmnd)
    w.name(node, person.ho, person.chu_dem, person.ten)
    w.text(node, "GioiTinh", person.gioi_tinh)
    w.text(node, "DanToc", person.dan_toc)
    w.text(node, "TonGiao", person.ton_giao)
    w.text(node, "QuocTich", "VN")
    w.text(node, "TinhTrangHonNhan", person.tinh_trang_hon_nhan)
    w.born(node, person.ngay_sinh)
    w.address(node, "NoiDangKyKhaiSinh", citizen.noi_dang_ky_khai_sinh)
    w.address(node, "QueQuan", citizen.que_quan)
    w.address(node, "ThuongTru", citizen.thuong_tru)
    w.address(node, "NoiOHienTai", citizen.noi_o_hien_tai)
    w.relative(node, "Cha", citizen.cha)
    w.relative(node, "Me", citizen.me)
    if citizen.vo_chong is not None:
        w.relative(node, "VoChong", citizen.vo_chong)
    head = w.node(node, "ChuHo")
    w.text(head, "SoDinhDanh", citizen.chu_ho.so_dinh_danh)
    w.name(head, citizen.chu_ho.ho, citizen.chu_ho.chu_dem, citizen.chu_ho.ten)
    w.text(head, "QuanHe", citizen.quan_he_voi_chu_ho)


def _fold(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


_VERIFIED = _verify_answer("true")
_NOT_VERIFIED = _verify_answer("false")
# An answer a careless upstream (or someone between it and the gateway) might send: a DTD whose
# entity stands in for the verdict.
_WITH_DTD = (_DECLARATION + b'<!DOCTYPE SOAP-ENV:Envelope [<!ENTITY verdict "true">]>' + _OPEN
             + f'<ns2:KetQuaXacThucResponse xmlns:ns2="{NAMESPACE}"><ns2:TonTai>&verdict;</ns2:TonTai>'
               "</ns2:KetQuaXacThucResponse>".encode() + _TAIL)
