"""From what the gateway's client sends to what the portal receives (all but the session).

Pure: no I/O, so every rule here tests without a socket. ``portal_body`` returns the portal's
request as a dict (``madonvi``, ``service`` and the service's fields) or raises ``InvalidBody``
(422) listing every problem with its JSON path. The checks are deliberately few (a later JSON
Schema takes over): ``MaHoSo`` present, status codes 1 to 10, dates that parse.

Client shapes accepted for ``DongBoHoSoMC`` and ``CapNhatTienDoHoSoMC``: one record (an object),
a list of records, or the portal's own envelope ``{"data": [...], "isUpdating": ..., "madonvi": ...}``.
The portal always gets ``"data": [records]``; dates go out as ``yyyyMMddHHmmss`` (ISO 8601 accepted
in), status codes as strings, ``isUpdating`` as ``"True"``/``"False"`` as provincial systems send it.
``TraCuuHoSo`` takes ``{"MaHoSo": ...}``, a path ``/{MaHoSo}`` or a query ``?MaHoSo=``. Any other
operation is sent as the client's object merged into ``{madonvi, service}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from connectors.dvcqg.dates import DateError, to_portal
from gateway.errors import InvalidBody
from gateway.paths import path_value

__all__ = ["DOSSIER", "PROGRESS", "TRA_CUU", "portal_body"]

DOSSIER = "DongBoHoSoMC"
PROGRESS = "CapNhatTienDoHoSoMC"
TRA_CUU = "TraCuuHoSo"

DOSSIER_DATES = ("NgayTiepNhan", "NgayHenTra", "NgayTra", "NgayKetThucXuLy")
DOSSIER_LISTS = ("TaiLieuNop", "DanhSachLePhi", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua")
SUPPLEMENT_DATES = ("NgayBoSung", "NgayTiepNhanBoSung", "NgayHenTraTruoc", "NgayHenTraMoi")
PROGRESS_DATES = ("ThoiDiemXuLy", "NgayBatDau", "NgayKetThucTheoQuyDinh")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}

Problems = list[dict[str, str]]


def portal_body(operation: str, payload: Any, *, madonvi: str | None = None, path: str = "",
                query: str = "") -> dict[str, Any]:
    """The portal's request for ``operation`` (without ``session``), or InvalidBody with every problem."""
    problems: Problems = []
    if operation in (DOSSIER, PROGRESS):
        body = _records(operation, payload, madonvi, problems)
    elif operation == TRA_CUU:
        body = _lookup(payload, madonvi, path, query, problems)
    else:
        body = _other(operation, payload, madonvi, problems)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidBody(f"{operation}: {first['path']}: {first['message']}{more}", errors=problems,
                          status=422)
    return body


def _envelope(madonvi: str | None, payload_madonvi: Any, operation: str, where: str,
              problems: Problems) -> dict[str, Any]:
    agency = payload_madonvi if payload_madonvi not in (None, "") else madonvi
    if not isinstance(agency, str) or not agency.strip():
        problems.append({"path": where, "message": "no agency code: send madonvi, or configure "
                                                   "options.madonvi for this service"})
        agency = ""
    return {"madonvi": agency, "service": operation}


def _records(operation: str, payload: Any, madonvi: str | None, problems: Problems) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if isinstance(payload, dict) and "data" in payload and "MaHoSo" not in payload:
        items, base = payload["data"], "$.data"
        flags = {k: v for k, v in payload.items() if k in ("isUpdating", "madonvi")}
        if not isinstance(items, list):
            problems.append({"path": base, "message": "must be a list of records"})
            items = []
    elif isinstance(payload, dict):
        items, base = [payload], None
    elif isinstance(payload, list):
        items, base = payload, "$"
    else:
        problems.append({"path": "$", "message": f"expected a {_noun(operation)} object or a list of them"})
        return {}
    if not items and base is not None:
        problems.append({"path": base, "message": f"no {_noun(operation)} to send"})
    records = []
    for index, item in enumerate(items):
        where = "$" if base is None else f"{base}[{index}]"
        if not isinstance(item, dict):
            problems.append({"path": where, "message": f"must be a {_noun(operation)} object"})
            continue
        record = dict(item)
        for key in ("isUpdating", "madonvi"):
            if key in record:
                value = record.pop(key)
                if flags.setdefault(key, value) != value:
                    problems.append({"path": f"{where}.{key}", "message": f"differs from the other "
                                     f"records' {key}: one request carries one value"})
        _check(operation, record, where, problems)
        records.append(record)
    madonvi_where = "$.madonvi" if base is None or base == "$.data" else "$[0].madonvi"
    body = _envelope(madonvi, flags.get("madonvi"), operation, madonvi_where, problems)
    if operation == DOSSIER:
        body["isUpdating"] = _is_updating(flags.get("isUpdating", False), "$.isUpdating", problems)
    body["data"] = records
    return body


def _noun(operation: str) -> str:
    return "dossier" if operation == DOSSIER else "progress"


def _is_updating(value: Any, where: str, problems: Problems) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return "True"
    if text in _FALSE:
        return "False"
    problems.append({"path": where, "message": "must be true or false"})
    return "False"


def _check(operation: str, record: dict[str, Any], where: str, problems: Problems) -> None:
    code = record.get("MaHoSo")
    if not isinstance(code, str) or not code.strip():
        problems.append({"path": f"{where}.MaHoSo",
                         "message": "required: the dossier code, a non-empty string"})
    status_key = "TrangThaiHoSo" if operation == DOSSIER else "TrangThai"
    if record.get(status_key) not in (None, ""):
        record[status_key] = _status(record[status_key], f"{where}.{status_key}", problems)
    _dates(record, DOSSIER_DATES if operation == DOSSIER else PROGRESS_DATES, where, problems)
    if operation != DOSSIER:
        return
    for key in DOSSIER_LISTS:
        value = record.get(key)
        if value is not None and not isinstance(value, list):
            problems.append({"path": f"{where}.{key}", "message": "must be a list"})
    supplements = record.get("DanhSachHoSoBoSung")
    if isinstance(supplements, list):
        record["DanhSachHoSoBoSung"] = copies = [dict(s) if isinstance(s, dict) else s for s in supplements]
        for index, supplement in enumerate(copies):
            if isinstance(supplement, dict):
                _dates(supplement, SUPPLEMENT_DATES, f"{where}.DanhSachHoSoBoSung[{index}]", problems)


def _status(value: Any, where: str, problems: Problems) -> str:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or not 1 <= number <= 10:
        problems.append({"path": where, "message": f"{value!r} is not a dossier status (1 to 10)"})
        return str(value)
    return str(number)


def _dates(record: dict[str, Any], keys: tuple[str, ...], where: str, problems: Problems) -> None:
    for key in keys:
        value = record.get(key)
        if value in (None, ""):
            continue
        try:
            record[key] = to_portal(value)
        except DateError as exc:
            problems.append({"path": f"{where}.{key}", "message": str(exc)})


def _lookup(payload: Any, madonvi: str | None, path: str, query: str, problems: Problems) -> dict[str, Any]:
    fields = payload if isinstance(payload, dict) else {}
    if payload is not None and not isinstance(payload, dict):
        problems.append({"path": "$", "message": 'expected {"MaHoSo": "..."}'})
    asked = parse_qs(query)
    code = (fields.get("MaHoSo") or fields.get("mahoso") or path_value(path)
            or next(iter(asked.get("MaHoSo", []) + asked.get("mahoso", [])), None))
    if not isinstance(code, str) or not code.strip():
        problems.append({"path": "$.MaHoSo", "message": "required: the code of the dossier to look up"})
        code = ""
    body = _envelope(madonvi, fields.get("madonvi"), TRA_CUU, "$.madonvi", problems)
    body["mahoso"] = code.strip()
    return body


def _other(operation: str, payload: Any, madonvi: str | None, problems: Problems) -> dict[str, Any]:
    if payload is not None and not isinstance(payload, dict):
        problems.append({"path": "$", "message": f"{operation} takes a JSON object"})
        payload = None
    fields = dict(payload or {})
    body = _envelope(madonvi, fields.pop("madonvi", None), operation, "$.madonvi", problems)
    fields.pop("session", None)
    fields.pop("service", None)
    return {**body, **fields}
