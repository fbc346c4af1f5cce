"""What the joint-procedure agencies' simulators share (civil status, residence, social insurance,
postal delivery): JSON POST services that validate, reject and remember by dossier code.

Each service is ``POST /{ServiceCode}`` with a JSON object that carries ``MaHoSo``. Its answers
follow the flows contract (docs/connectors.md, "Agency simulators"):

- 200 and the service's answer;
- 400 ``{"MaLoi": "DU_LIEU_KHONG_HOP_LE", "LyDo": ...}`` naming the field (dotted path) that is
  missing or malformed, or saying the body is not a JSON object; 413 with the same code for a body
  over 1 MiB (the population simulator's and the gateway's limit);
- 422 ``{"MaLoi": CODE, "LyDo": ...}`` for a business refusal;
- 503 while the agency is "down" (or every other request while "flaky").

Idempotent by ``MaHoSo``: the first successful answer for a dossier is kept per service, and the
same request (same JSON, key order aside) gets it again without registering twice. For a one-time
registration a *different* request under a code already answered is refused ``DA_DANG_KY``.

``GET|POST /_sim/mode`` takes, besides the shared switches of ``connectors.rest.simulator.Faults``
(``delay_ms``, ``fail``, ``times``), ``{"mode": "normal"|"down"|"slow"|"reject_all"|"flaky",
"slow_ms": int}``. ``GET /_sim/registrations`` lists what the agency registered (each success once);
``GET /_sim/received`` every request that arrived with the status it got; ``POST /_sim/reset``
forgets everything and returns to "normal".

The module lives in the civil-status package because the four agency packages may not add a shared
one of their own; the others import it from here.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.dvcqg.dates import VIETNAM
from connectors.rest.simulator import ASGIApp, Faults, json_response
from gateway.simulation import Recorder

__all__ = ["MAX_BODY", "MODES", "PROVINCES", "Check", "Invalid", "Modes", "Rejection", "Service",
           "agency_app", "certificate", "digits", "dossier_code", "fold", "has_marker", "iso_date",
           "items", "obj", "optional", "province", "sex", "text", "today_in_vietnam"]

MAX_BODY = 1_048_576  # as the population simulator's and the gateway's own body limit
MODES = ("normal", "down", "slow", "reject_all", "flaky")
SLOW_MS = 2_000
INVALID = "DU_LIEU_KHONG_HOP_LE"

# Two-digit province codes (General Statistics Office list, the 63 provinces before the 2025
# mergers; the merged provinces kept one of their codes). The personal id's 3-digit province code is
# "0" + this code.
PROVINCES: dict[str, str] = {
    "01": "Hà Nội", "02": "Hà Giang", "04": "Cao Bằng", "06": "Bắc Kạn", "08": "Tuyên Quang",
    "10": "Lào Cai", "11": "Điện Biên", "12": "Lai Châu", "14": "Sơn La", "15": "Yên Bái",
    "17": "Hòa Bình", "19": "Thái Nguyên", "20": "Lạng Sơn", "22": "Quảng Ninh", "24": "Bắc Giang",
    "25": "Phú Thọ", "26": "Vĩnh Phúc", "27": "Bắc Ninh", "30": "Hải Dương", "31": "Hải Phòng",
    "33": "Hưng Yên", "34": "Thái Bình", "35": "Hà Nam", "36": "Nam Định", "37": "Ninh Bình",
    "38": "Thanh Hóa", "40": "Nghệ An", "42": "Hà Tĩnh", "44": "Quảng Bình", "45": "Quảng Trị",
    "46": "Thừa Thiên Huế", "48": "Đà Nẵng", "49": "Quảng Nam", "51": "Quảng Ngãi", "52": "Bình Định",
    "54": "Phú Yên", "56": "Khánh Hòa", "58": "Ninh Thuận", "60": "Bình Thuận", "62": "Kon Tum",
    "64": "Gia Lai", "66": "Đắk Lắk", "67": "Đắk Nông", "68": "Lâm Đồng", "70": "Bình Phước",
    "72": "Tây Ninh", "74": "Bình Dương", "75": "Đồng Nai", "77": "Bà Rịa - Vũng Tàu",
    "79": "Hồ Chí Minh", "80": "Long An", "82": "Tiền Giang", "83": "Bến Tre", "84": "Trà Vinh",
    "86": "Vĩnh Long", "87": "Đồng Tháp", "89": "An Giang", "91": "Kiên Giang", "92": "Cần Thơ",
    "93": "Hậu Giang", "94": "Sóc Trăng", "95": "Bạc Liêu", "96": "Cà Mau",
}


class Invalid(Exception):
    """A malformed request: 400 naming the field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class Rejection(Exception):
    """A business refusal: 422 with the agency's code and a Vietnamese reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


# -- request shapes: a check takes the value and its dotted path and returns the value to use ------

Check = Callable[[Any, str], Any]
_MISSING = object()


def _required(value: Any, path: str) -> None:
    if value is None or value is _MISSING or (isinstance(value, str) and not value.strip()):
        raise Invalid(path, f"thiếu trường bắt buộc {path}")


def text(value: Any, path: str) -> str:
    _required(value, path)
    if not isinstance(value, str):
        raise Invalid(path, f"trường {path} phải là chuỗi ký tự")
    return value.strip()


def digits(count: int, what: str = "") -> Check:
    """A string of exactly ``count`` digits (ids, codes)."""
    pattern = re.compile(rf"[0-9]{{{count}}}")
    label = what or f"{count} chữ số"

    def check(value: Any, path: str) -> str:
        got = text(value, path)
        if not pattern.fullmatch(got):
            raise Invalid(path, f"trường {path} phải gồm {label}")
        return got

    return check


def dossier_code(value: Any, path: str) -> str:
    """A joint dossier's code (``H41.31-20261203-0000123``): text of at most 100 characters."""
    got = text(value, path)
    if len(got) > 100:
        raise Invalid(path, f"trường {path} dài quá 100 ký tự")
    return got


def province(value: Any, path: str) -> str:
    """A two-digit province code that names a province (``PROVINCES``)."""
    got = text(value, path)
    if got not in PROVINCES:
        raise Invalid(path, f"trường {path} phải là mã tỉnh 2 chữ số (ví dụ 01 Hà Nội, 40 Nghệ An)")
    return got


def certificate(value: Any, path: str) -> str:
    """A register's number, ``<n>/<year>`` (a birth certificate's, a death extract's)."""
    got = text(value, path)
    if not re.fullmatch(r"[1-9][0-9]{0,6}/[0-9]{4}", got):
        raise Invalid(path, f"trường {path} phải có dạng <số>/<năm>, ví dụ 123/2026")
    return got


def iso_date(value: Any, path: str) -> date:
    got = text(value, path)
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", got):
            raise ValueError(got)
        return date.fromisoformat(got)
    except ValueError:
        raise Invalid(path, f"trường {path} phải là ngày dạng YYYY-MM-DD") from None


def sex(value: Any, path: str) -> int:
    """1 nam, 2 nữ, as a number or a string (a JSON true is not 1)."""
    _required(value, path)
    if isinstance(value, bool) or str(value).strip() not in ("1", "2") or not isinstance(value, int | str):
        raise Invalid(path, f"trường {path} phải là 1 (nam) hoặc 2 (nữ)")
    return int(str(value).strip())


@dataclass(frozen=True, slots=True)
class optional:  # lower case: it reads as a marker inside a shape, {"Cha": optional(PERSON)}
    check: Check


def obj(fields: Mapping[str, Check | optional]) -> Check:
    """A JSON object with these fields (others are ignored); an optional one may be absent or null."""

    def check(value: Any, path: str) -> dict[str, Any]:
        if path:
            _required(value, path)
        if not isinstance(value, dict):
            raise Invalid(path or "body", f"{path or 'thân yêu cầu'} phải là một đối tượng JSON")
        out: dict[str, Any] = {}
        for name, field_check in fields.items():
            sub = f"{path}.{name}" if path else name
            got = value.get(name, _MISSING)
            if isinstance(field_check, optional):
                if got is not None and got is not _MISSING:
                    out[name] = field_check.check(got, sub)
            else:
                out[name] = field_check(got, sub)
        return out

    return check


def items(each: Check, *, at_least: int = 1) -> Check:
    def check(value: Any, path: str) -> list[Any]:
        _required(value, path)
        if not isinstance(value, list) or len(value) < at_least:
            raise Invalid(path, f"trường {path} phải là danh sách có ít nhất {at_least} mục")
        return [each(item, f"{path}.{i}") for i, item in enumerate(value)]

    return check


def has_marker(name: str, marker: str) -> bool:
    """Whether ``marker`` appears in ``name``, ignoring case, spacing and Unicode composition."""
    return fold(marker) in fold(name)


def fold(text: str) -> str:
    """``text`` as ``has_marker`` compares it: composed, case-folded, single-spaced."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def today_in_vietnam() -> date:
    return datetime.now(VIETNAM).date()


# -- modes ----------------------------------------------------------------------------------------


class Modes:
    """The agency's condition: answering, down, slow, refusing everything, or failing every other call."""

    def __init__(self) -> None:
        self.mode = "normal"
        self.slow_ms = SLOW_MS
        self._flaky_calls = 0

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``mode`` and ``slow_ms``; ValueError (changing nothing) for anything else."""
        unknown = set(changes) - {"mode", "slow_ms"}
        if unknown:
            raise ValueError(f"unknown switches: {', '.join(sorted(unknown))} (agency simulators know "
                             "mode and slow_ms besides delay_ms, fail and times)")
        mode, slow = changes.get("mode", self.mode), changes.get("slow_ms", self.slow_ms)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not isinstance(slow, int) or isinstance(slow, bool) or not 0 <= slow <= 600_000:
            raise ValueError("slow_ms must be a whole number of milliseconds from 0 to 600000")
        if mode != self.mode:
            self._flaky_calls = 0  # flaky always starts with a failure, so tests know which calls fail
        self.mode, self.slow_ms = mode, slow
        return self.state()

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "slow_ms": self.slow_ms}

    def reset(self) -> None:
        self.mode, self.slow_ms, self._flaky_calls = "normal", SLOW_MS, 0

    async def gate(self) -> tuple[int, str, str] | None:
        """The refusal this mode gives the next call (status, code, reason), or None to answer it."""
        if self.mode == "slow":
            await asyncio.sleep(self.slow_ms / 1000)
        elif self.mode == "down":
            return 503, "HE_THONG_GIAN_DOAN", "Hệ thống của cơ quan đang gián đoạn, vui lòng thử lại sau"
        elif self.mode == "flaky":
            self._flaky_calls += 1
            if self._flaky_calls % 2 == 1:
                return 503, "HE_THONG_GIAN_DOAN", "Hệ thống của cơ quan tạm thời không phản hồi"
        elif self.mode == "reject_all":
            return 422, "TU_CHOI", "Cơ quan từ chối tiếp nhận yêu cầu (chế độ giả lập reject_all)"
        return None


# -- the app --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    """One agency service: its request shape, and what it does with a valid request (raising
    ``Rejection`` to refuse). ``once``: a different request under a dossier code already answered
    is ``DA_DANG_KY`` (false for a call that may be repeated with other content, a cancellation)."""

    name: str
    shape: Check
    handle: Callable[[dict[str, Any]], dict[str, Any]]
    once: bool = True


@dataclass(slots=True)
class _Held:
    fingerprint: bytes
    answer: dict[str, Any]


class _Agency:
    def __init__(self, services: Sequence[Service]) -> None:
        self.services = {s.name: s for s in services}
        self.held: dict[tuple[str, str], _Held] = {}
        self.registrations: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.held.clear()
        self.registrations.clear()

    def answer(self, service: Service, raw: Any) -> dict[str, Any]:
        """The answer to a parsed body; Invalid or Rejection when there is none."""
        request = service.shape(raw, "")
        code = request["MaHoSo"]
        fingerprint = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        held = self.held.get((service.name, code))
        if held is not None:
            if held.fingerprint == fingerprint:
                return held.answer
            if service.once:
                raise Rejection("DA_DANG_KY", f"Hồ sơ {code} đã được giải quyết ({service.name}) với "
                                "nội dung khác; không đăng ký lại")
        answer = service.handle(request)
        self.held[(service.name, code)] = _Held(fingerprint, answer)
        self.registrations.append({"service": service.name, "MaHoSo": code, "at": time.time(),
                                   "request": raw, "answer": answer})
        return answer

    def view(self, service: str | None) -> dict[str, Any]:
        chosen = [r for r in self.registrations if service is None or r["service"] == service]
        counts = {name: sum(1 for r in self.registrations if r["service"] == name) for name in self.services}
        return {"total": len(chosen), "by_service": counts, "items": chosen}


def _problem(status: int, code: str, reason: str) -> Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return json_response({"MaLoi": code, "LyDo": reason}, status, headers=headers)


async def _read(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY (read no further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def agency_app(services: Sequence[Service], *, reset: Callable[[], None]) -> ASGIApp:
    """The ASGI app serving ``services`` behind the modes and the shared failure switches;
    ``reset`` returns the simulator's own state to its start (for ``POST /_sim/reset``)."""
    agency = _Agency(services)
    modes = Modes()
    recorder = Recorder()
    faults = Faults(recorder, error_answer=(503, orjson.dumps(
        {"MaLoi": "HE_THONG_GIAN_DOAN", "LyDo": "Lỗi hệ thống của cơ quan (giả lập)"})))

    def endpoint(service: Service) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            body = await _read(request)
            if body is None:
                recorder.add(service.name, b"", status=413)
                return _problem(413, INVALID, f"Dữ liệu gửi lên vượt quá {MAX_BODY} byte")
            status, response = await _answer(service, body)
            recorder.add(service.name, body, status=status)
            return response

        return handle

    async def _answer(service: Service, body: bytes) -> tuple[int, Response]:
        refusal = await modes.gate()
        if refusal is not None:
            return refusal[0], _problem(*refusal)
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, _problem(400, INVALID, "Dữ liệu gửi lên không phải JSON hợp lệ")
        try:
            return 200, json_response(agency.answer(service, raw))
        except Invalid as exc:
            return 400, _problem(400, INVALID, exc.reason[:1].upper() + exc.reason[1:])
        except Rejection as exc:
            return 422, _problem(422, exc.code, exc.reason)

    async def registrations(request: Request) -> Response:
        return json_response(agency.view(request.query_params.get("service")))

    def reset_all() -> None:
        agency.reset()
        modes.reset()
        reset()

    routes = [*(Route(f"/{s.name}", endpoint(s), methods=["POST"]) for s in services),
              Route("/_sim/registrations", registrations, methods=["GET"]),
              *faults.routes(modes.configure, reset_all), *recorder.routes()]
    return faults.wrap(Starlette(routes=routes))
