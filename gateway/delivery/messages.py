"""What the delivery queue reads in a dossier message: its code, its records and their facts.

Pure. A service that carries dossier messages says so in the catalog (``dossier: {message: dossier}``
for ``DongBoHoSoMC``-like services, ``progress`` for ``CapNhatTienDoHoSoMC``-like ones). A request
holds one record, a list of records, or the portal's envelope ``{"data": [records], ...}``; every
record names its dossier in ``MaHoSo``. An async request must concern one dossier (every record the
same ``MaHoSo``), so that it has one place in one dossier's order.

Dates may come as the portal writes them (``yyyyMMddHHmmss``, Vietnamese time) or in ISO 8601; facts
keep them in the portal's form, which sorts as time does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from gateway.errors import InvalidBody

__all__ = ["DossierFacts", "dossier_code", "facts", "idempotency_key", "portal_time", "records",
           "status_of"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
CODE = "MaHoSo"
STATUS = {"dossier": "TrangThaiHoSo", "progress": "TrangThai"}
RESOLVED = frozenset({9, 10})  # processed, result returned
ONLINE = "1"  # HinhThuc: 0 at the counter, 1 online, 2 by post (this project's reading)


def records(payload: Any) -> list[dict[str, Any]]:
    """The records a request carries, in order (non-objects are skipped: the schema reports them)."""
    if isinstance(payload, dict) and CODE not in payload and isinstance(payload.get("data"), list):
        items: list[Any] = payload["data"]
    elif isinstance(payload, list):
        items = payload
    else:
        items = [payload]
    return [item for item in items if isinstance(item, dict)]


def dossier_code(payload: Any) -> str:
    """The one dossier a request concerns; InvalidBody (422) if none, or several."""
    codes = []
    for record in records(payload):
        code = record.get(CODE)
        if isinstance(code, str) and code.strip():
            codes.append(code.strip())
    if not codes:
        raise InvalidBody(f"{CODE}: required: an async delivery concerns one dossier", status=422,
                          errors=[{"path": f"$.{CODE}", "message": "required: the dossier code"}])
    distinct = sorted(set(codes))
    if len(distinct) > 1:
        raise InvalidBody("an async delivery concerns one dossier: send one request per MaHoSo",
                          status=422, errors=[{"path": "$.data", "message": f"records for {len(distinct)} "
                                               f"dossiers: {', '.join(distinct[:5])}"}])
    return codes[0]


def idempotency_key(client: str, service: str, explicit: str | None, code: str | None,
                    payload: Any, body: bytes) -> str:
    """SHA-256 of who sent what: the client's ``Idempotency-Key`` when given, else the dossier and
    its revision, which is the content itself (a changed dossier is a new revision; the same content
    pushed again is the same push)."""
    if explicit:
        what = f"key\x00{explicit}"
    else:
        content = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS) if payload is not None else body
        what = f"dossier\x00{code or ''}\x00{hashlib.sha256(content).hexdigest()}"
    return hashlib.sha256(f"{client}\x00{service}\x00{what}".encode()).hexdigest()


def status_of(record: dict[str, Any], message: str) -> int | None:
    value = record.get(STATUS.get(message, ""))
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 1 <= value <= 10:
        return value
    if isinstance(value, str) and value.strip().isdigit() and 1 <= int(value) <= 10:
        return int(value)
    return None


def portal_time(value: Any) -> str | None:
    """A date as ``yyyyMMddHHmmss`` in Vietnamese time, or None if it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) == 14 and text.isdigit():
        try:
            datetime.strptime(text, "%Y%m%d%H%M%S")
        except ValueError:
            return None
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    moment = moment.replace(tzinfo=VIETNAM) if moment.tzinfo is None else moment.astimezone(VIETNAM)
    return moment.strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True, slots=True)
class DossierFacts:
    """What one delivered message says about its dossier, for the KPIs (None: it does not say)."""

    code: str
    kind: str  # dossier | progress: a dossier's own resolution date wins over a step's
    status: int | None = None
    procedure: str | None = None
    received_at: str | None = None
    due_at: str | None = None
    online: bool | None = None
    resolved_at: str | None = None


def facts(message: str, payload: Any) -> list[DossierFacts]:
    """The facts of each record, in order."""
    out = []
    for record in records(payload):
        code = record.get(CODE)
        if not isinstance(code, str) or not code.strip():
            continue
        status = status_of(record, message)
        if message == "dossier":
            resolved = (portal_time(record.get("NgayKetThucXuLy")) or portal_time(record.get("NgayTra"))
                        if status in RESOLVED else None)
            form = record.get("HinhThuc")
            out.append(DossierFacts(
                code=code.strip(), kind=message, status=status, procedure=_text(record.get("MaTTHC")),
                received_at=portal_time(record.get("NgayTiepNhan")),
                due_at=portal_time(record.get("NgayHenTra")),
                online=None if form in (None, "") else str(form).strip() == ONLINE,
                resolved_at=resolved))
        else:
            out.append(DossierFacts(
                code=code.strip(), kind=message, status=status,
                resolved_at=portal_time(record.get("ThoiDiemXuLy")) if status in RESOLVED else None))
    return out


def _text(value: Any) -> str | None:
    return value.strip()[:64] if isinstance(value, str) and value.strip() else None
