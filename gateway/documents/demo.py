"""The demo's official documents (issue 16, item 7; ``lienthong demo``, gateway/demo.py).

Five edXML documents between Tuyên Quang's departments (Hà Giang's merged into them on 1 July 2025)
and two ministries, through the document service of the demo catalog (gateway/init.py): Tuyên
Quang's document-management system is pushed to (its simulator, connectors/dms), the ministries
are reached through the national document exchange platform (pushed to, its simulator), Nghệ An's
system pulls. The ministries answer through the platform and the province through its system, each
as its own client of the gateway:

1. Sở Nội vụ -> Bộ Nội vụ: received (03), then assigned and in progress (05);
2. UBND tỉnh -> Bộ Tài chính: received (03), then done (06);
3. Bộ Nội vụ -> UBND tỉnh Tuyên Quang and UBND tỉnh Nghệ An: Tuyên Quang's pushed, received (03);
   Nghệ An pulls it (pending, fetch, confirm), gets the bytes sent, and answers received (03);
4. Văn phòng UBND tỉnh -> Bộ Nội vụ: refused (02);
5. UBND tỉnh -> Bộ Tài chính, then recalled by its sender (13), the recall agreed (15).

Checked: every send and status answered 202, each receiving simulator holding exactly the packages
and statuses it should (each once, a document's package before its statuses), the pulled copy byte
for byte.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from rich.table import Table

from connectors.dms import data
from gateway.init import DOCUMENTS, NGHE_AN, PORTAL, TUYEN_QUANG

__all__ = ["DocumentOutcome", "documents_table", "exchange_documents"]

TQ_DMS, NA_DMS, PLATFORM = f"{TUYEN_QUANG}/QLVB", f"{NGHE_AN}/QLVB", f"{PORTAL}/TRUCVB"
PROVINCE, OFFICE, HOME_AFFAIRS = "000.00.00.H60", "000.01.00.H60", "000.12.00.H60"
MINISTRY, FINANCE, NGHE_AN_ORGAN = "000.00.00.G12", "000.00.00.G06", "000.00.00.H41"
FIRST = 801  # the demo's documents are numbered from here

Check = Callable[[str, bool, str], None]
Sent = Callable[[str, str], None]  # (exchange id, what it was): for the audit check


@dataclass
class DocumentOutcome:
    number: int
    document_id: str
    sender: str
    recipients: list[str]
    modes: list[str]  # "push" / "pull", per recipient
    statuses: list[str] = field(default_factory=list)  # "03 Đã tiếp nhận" in the order sent

    @property
    def last(self) -> str:
        return self.statuses[-1] if self.statuses else "-"


# (number offset, sender organ, its system, recipients, [(status code, from organ, its system)])
SCRIPT: list[tuple[int, str, str, list[str], list[tuple[str, str, str]]]] = [
    (0, HOME_AFFAIRS, TQ_DMS, [MINISTRY], [("03", MINISTRY, PLATFORM), ("05", MINISTRY, PLATFORM)]),
    (1, PROVINCE, TQ_DMS, [FINANCE], [("03", FINANCE, PLATFORM), ("06", FINANCE, PLATFORM)]),
    (2, MINISTRY, PLATFORM, [PROVINCE, NGHE_AN_ORGAN], [("03", PROVINCE, TQ_DMS)]),
    (3, OFFICE, TQ_DMS, [MINISTRY], [("02", MINISTRY, PLATFORM)]),
    (4, PROVINCE, TQ_DMS, [FINANCE], [("13", PROVINCE, TQ_DMS), ("15", FINANCE, PLATFORM)]),
]
PULLED = 2  # the third document: Nghệ An pulls its copy, then answers 03


async def exchange_documents(http: httpx.AsyncClient, base: str, secrets: dict[str, str], sim_dms: str,
                             sim_platform: str, sent: Sent, check: Check, *,
                             patience: float = 60.0) -> list[DocumentOutcome]:
    """Play the five documents; the outcomes for the report's table."""
    for sim in (sim_dms, sim_platform):
        (await http.post(f"{sim}/_sim/reset")).raise_for_status()
    tokens = {client: await _token(http, base, client, secrets[client])
              for client in (TQ_DMS, NA_DMS, PLATFORM)}

    async def post(label: str, client: str, body: bytes) -> httpx.Response:
        r = await http.post(f"{base}/r1/{DOCUMENTS}", content=body, headers={
            "Authorization": f"Bearer {tokens[client]}", "Content-Type": "application/xml"})
        sent(r.headers.get("x-road-id", "?"), label)
        return r

    async def get(label: str, client: str, path: str) -> httpx.Response:
        r = await http.get(f"{base}/r1/{DOCUMENTS}{path}",
                           headers={"Authorization": f"Bearer {tokens[client]}"})
        sent(r.headers.get("x-road-id", "?"), label)
        return r

    outcomes: list[DocumentOutcome] = []
    bodies: dict[int, bytes] = {}
    answers: list[int] = []
    for offset, sender, system, recipients, _ in SCRIPT:
        number = FIRST + offset
        body = data.package_bytes(sender, recipients, number, attachments=2)
        bodies[offset] = body
        r = await post(f"document {number}", system, body)
        answers.append(r.status_code)
        modes = [str(x.get("mode")) for x in r.json().get("recipients", [])] if r.status_code == 202 else []
        outcomes.append(DocumentOutcome(number, _document_id(sender, number), sender, recipients, modes))
    for (_, sender, _, _, statuses), outcome in zip(SCRIPT, outcomes, strict=True):
        for code, organ, system in statuses:
            r = await post(f"status {code} of document {outcome.number}", system,
                           data.status_bytes(outcome.document_id, sender, code, organ))
            answers.append(r.status_code)
            if r.status_code == 202:
                outcome.statuses.append(f"{code} {data.STATUS_CODES[code]}")
    check("five documents and their statuses accepted by the document service (202)",
          all(a == 202 for a in answers), f"{answers.count(202)}/{len(answers)} answered 202")

    pulled = outcomes[PULLED]
    listed = await get("pending documents (Nghệ An)", NA_DMS, "/pending")
    mine = [i for i in listed.json().get("items", []) if i.get("documentId") == pulled.document_id] \
        if listed.status_code == 200 else []
    same = confirmed = False
    if len(mine) == 1:
        fetched = await get(f"fetch of document {pulled.number}", NA_DMS, f"/messages/{mine[0]['id']}")
        same = fetched.status_code == 200 and fetched.content == bodies[PULLED]
        r = await http.post(f"{base}/r1/{DOCUMENTS}/messages/{mine[0]['id']}/confirm",
                            headers={"Authorization": f"Bearer {tokens[NA_DMS]}"})
        sent(r.headers.get("x-road-id", "?"), f"confirm of document {pulled.number}")
        confirmed = r.status_code == 200
        r = await post(f"status 03 of document {pulled.number} (Nghệ An)", NA_DMS,
                       data.status_bytes(pulled.document_id, MINISTRY, "03", NGHE_AN_ORGAN))
        if r.status_code == 202:
            pulled.statuses.append(f"03 {data.STATUS_CODES['03']} (Nghệ An)")
    after = await get("pending documents (Nghệ An), after", NA_DMS, "/pending")
    left = [i for i in after.json().get("items", []) if i.get("documentId") == pulled.document_id]
    check("Nghệ An pulled its copy: listed once, fetched byte for byte, confirmed, then off its list",
          len(mine) == 1 and same and confirmed and not left,
          f"listed {len(mine)}, same bytes {same}, confirmed {confirmed}, still pending {len(left)}")

    expected = _expected(outcomes)
    held: dict[str, list[tuple[str, str, str]]] = {}
    deadline = time.monotonic() + patience
    while True:
        for name, sim in (("dms", sim_dms), ("platform", sim_platform)):
            items = (await http.get(f"{sim}/_sim/documents")).json().get("items", [])
            held[name] = [(str(i.get("documentId")), str(i.get("kind")), str(i.get("statusCode") or ""))
                          for i in items]
        if all(sorted(held[n]) == sorted(expected[n]) for n in expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    for name, label in (("platform", "the national platform (the ministries' documents and answers)"),
                        ("dms", "Tuyên Quang's system (its document and the ministries' answers)")):
        got, want = held[name], expected[name]
        check(f"{label}: each message delivered once, each document's package before its statuses",
              sorted(got) == sorted(want) and _in_order(got, want),
              f"{len(got)} of {len(want)} messages held")
    return outcomes


def _document_id(sender: str, number: int) -> str:
    with data.package(sender, [PROVINCE], number) as package:
        return package.header.document_id


def _expected(outcomes: list[DocumentOutcome]) -> dict[str, list[tuple[str, str, str]]]:
    """What each pushed-to simulator must hold, in the order sent: the ministries' packages and the
    province's answers on the platform, the reverse on Tuyên Quang's system."""
    expected: dict[str, list[tuple[str, str, str]]] = {"dms": [], "platform": []}

    def where(organ: str) -> str | None:
        if organ in (MINISTRY, FINANCE):
            return "platform"
        return "dms" if organ.endswith(".H60") else None

    for (_, sender, _, recipients, statuses), outcome in zip(SCRIPT, outcomes, strict=True):
        for organ in recipients:
            if (place := where(organ)) is not None:
                expected[place].append((outcome.document_id, "package", ""))
        for code, organ, _ in statuses:
            targets = recipients if organ == sender else [sender]
            for target in targets:
                if (place := where(target)) is not None:
                    expected[place].append((outcome.document_id, "status", code))
    pulled = outcomes[PULLED]
    expected["platform"].append((pulled.document_id, "status", "03"))  # Nghệ An's answer
    return expected


def _in_order(got: list[tuple[str, str, str]], want: list[tuple[str, str, str]]) -> bool:
    """Each document's messages in the order they were sent (one chain per document here)."""
    documents = {d for d, _, _ in want}
    return all([m for m in got if m[0] == d] == [m for m in want if m[0] == d] for d in documents)


async def _token(http: httpx.AsyncClient, base: str, client: str, secret: str) -> str:
    r = await http.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(client, secret))
    r.raise_for_status()
    return str(r.json()["access_token"])


def documents_table(outcomes: list[DocumentOutcome]) -> Table:
    table = Table(title=f"Official documents (edXML) through {DOCUMENTS.rsplit('/', 1)[-1]}")
    for col in ("document", "from", "to", "delivery", "statuses (in order)"):
        table.add_column(col)
    for o in outcomes:
        table.add_row(o.document_id, data.ORGANS.get(o.sender, o.sender),
                      ", ".join(data.ORGANS.get(r, r) for r in o.recipients), ", ".join(o.modes),
                      " → ".join(o.statuses) or "-")
    return table
