"""The document exchange's KPIs (docs/documents.md, "KPIs"), SQLite and PostgreSQL: documents sent and
received per organ and period, the share exchanged electronically, answered on time by the DueDate,
from real edXML packages with known times, deliveries and statuses stored through the store and the
delivery queue; checked by hand and against a naive count of the same data. ``GET /stats/documents``
and ``lienthong stats documents``."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from connectors.dms import data
from gateway.app import create_app
from gateway.cli import main
from gateway.config import load_config
from gateway.delivery.messages import VIETNAM
from gateway.delivery.store import DeliveryStore
from gateway.delivery.tables import deliveries
from gateway.documents import stats
from gateway.documents.outbox import new_delivery
from gateway.documents.store import DocumentRow, DocumentStore, MessageRow
from gateway.documents.tables import document_messages, documents
from gateway.edxml import build
from gateway.ids import new_id
from gateway.init import initialise
from gateway.storage.db import create_engine

H60, VP, H41, G12 = "000.00.00.H60", "000.01.00.H60", "000.00.00.H41", "000.00.00.G12"
MEMBERS = {H60: "VN/GOV/000.00.00.H60", VP: "VN/GOV/000.00.00.H60", H41: "VN/GOV/000.00.00.H41",
           G12: "VN/GOV/000.00.00.G22"}
SYSTEM = {H60: "VN/GOV/000.00.00.H60/QLVB", VP: "VN/GOV/000.00.00.H60/QLVB",
          H41: "VN/GOV/000.00.00.H41/QLVB", G12: "VN/GOV/000.00.00.G22/TRUCVB"}
PUSH = {H60: "VN/GOV/000.00.00.H60/QLVB/NhanVanBan", VP: "VN/GOV/000.00.00.H60/QLVB/NhanVanBan",
        G12: "VN/GOV/000.00.00.G22/TRUCVB/sendDocument"}  # H41 pulls
H, D = 3_600_000_000, 86_400_000_000


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """A moment in Vietnamese time, µs since the epoch."""
    return int(datetime(year, month, day, hour, minute, tzinfo=VIETNAM).timestamp()) * 1_000_000


NOW = at(2026, 12, 3, 12)


@dataclass
class Recipient:
    delivery: tuple[str, int | None] | None = None  # pushed: the delivery's state, its answer's status
    confirmed: bool = False  # pulled: the recipient confirmed it
    statuses: list[tuple[str, int]] = field(default_factory=list)  # its status codes, when accepted


@dataclass
class Doc:
    number: int
    sender: str
    sent: int
    due: date | None
    to: dict[str, Recipient]
    recall: int | None = None  # the sender's own status 13, when accepted


DOCS = [
    # answered on time by VP; answered late by H41 (pulled, confirmed); recalled afterwards
    Doc(1, H60, at(2026, 11, 3, 9), date(2026, 11, 10),
        {VP: Recipient(("delivered", 200),
                       statuses=[("03", at(2026, 11, 3, 10)), ("06", at(2026, 11, 5, 9))]),
         H41: Recipient(confirmed=True, statuses=[("06", at(2026, 11, 13, 9))])}, recall=at(2026, 11, 20, 9)),
    # no DueDate; the platform's copy a dead letter: failed
    Doc(2, H60, at(2026, 11, 5, 9), None,
        {VP: Recipient(("delivered", 200)), G12: Recipient(("dead", None))}),
    # refused by the ministry (02, on time: a final answer); H41 pulled it, never confirmed: overdue
    Doc(3, H60, at(2026, 11, 20, 9), date(2026, 11, 25),
        {H41: Recipient(), G12: Recipient(("delivered", 200), statuses=[("02", at(2026, 11, 21, 8))])}),
    # 23:30 on the 30th in Vietnam (16:30 UTC): November there; the system answered 4xx: failed
    Doc(4, H60, at(2026, 11, 30, 23, 30), date(2026, 12, 1), {VP: Recipient(("delivered", 422))}),
    # December, from Nghệ An to Tuyên Quang: received, due at the end of the month, not overdue yet
    Doc(5, H41, at(2026, 12, 2, 8), date(2026, 12, 31), {H60: Recipient(("delivered", 200))}),
    # December, still on the queue (pending): in transit; due on the 2nd, unanswered: overdue
    Doc(6, H60, at(2026, 12, 2, 9), date(2026, 12, 2), {VP: Recipient(("pending", None))}),
]


def _status_body(doc: Doc, document_id: str, code: str, organ: str) -> bytes:
    return data.status_bytes(document_id, doc.sender, code, organ)


def seed(engine: Engine, docs: list[Doc] = DOCS, push: dict[str, str] = PUSH) -> dict[int, str]:
    """Store ``docs`` as the gateway would have: packages and copies, deliveries on the queue in the
    given states, pulled copies confirmed, the statuses; number -> the document's row id. ``push``:
    the organs pushed to (by their service), the others pull."""
    store, queue = DocumentStore(engine), DeliveryStore(engine)
    ids: dict[int, str] = {}
    try:
        for doc in docs:
            day = datetime.fromtimestamp(doc.sent / 1e6, VIETNAM).date()
            pkg = data.package(doc.sender, list(doc.to), doc.number, day=day)
            with replace(pkg, header=replace(pkg.header, due_date=doc.due)) as ready:
                out = io.BytesIO()
                build(ready, out)
            body = out.getvalue()
            sha = hashlib.sha256(body).hexdigest()
            row = DocumentRow(id=new_id(), document_id=pkg.header.document_id, sender_organ=doc.sender,
                              client=SYSTEM[doc.sender], exchange_id=new_id(), sha256=sha, size=len(body),
                              body=body, attachments=({"contentId": "att1", "name": "1-phu-luc-1.pdf",
                                                       "type": "application/pdf", "size": 2048,
                                                       "sha256": "0" * 64},), created_us=doc.sent)
            ids[doc.number] = row.id
            copies = [_message(row, "package", doc.sender, organ, None, None, sha, len(body), doc.sent, push)
                      for organ in doc.to]
            store.send(row, copies)
            for copy in copies:
                spec = doc.to[copy.to_organ]
                if spec.delivery is not None and copy.service is not None:
                    (accepted,) = queue.accept_many([new_delivery(replace(copy, body=body))])
                    assert not isinstance(accepted, Exception)
                    store.queued([(copy.id, accepted.id)])
                    state, answer = spec.delivery
                    with engine.begin() as conn:
                        conn.execute(deliveries.update().where(deliveries.c.id == accepted.id).values(
                            state=state, response_status=answer,
                            delivered_us=doc.sent + H if state == "delivered" else None))
                elif spec.confirmed:
                    store.fetched(copy.id, doc.sent + H)
                    store.confirm(copy.id, doc.sent + H)
            for organ, spec in doc.to.items():
                for code, when in spec.statuses:
                    status = _status_body(doc, row.document_id, code, organ)
                    store.add_status([_message(row, "status", organ, doc.sender, code, status,
                                               hashlib.sha256(status).hexdigest(), len(status), when, push)])
            if doc.recall is not None:
                status = _status_body(doc, row.document_id, "13", doc.sender)
                store.add_status([_message(row, "status", doc.sender, organ, "13", status,
                                           hashlib.sha256(status).hexdigest(), len(status), doc.recall, push)
                                  for organ in doc.to])
    finally:
        queue.close()
    return ids


def _message(doc: DocumentRow, kind: str, sender: str, organ: str, code: str | None, body: bytes | None,
             sha: str, size: int, now: int, push: dict[str, str]) -> MessageRow:
    key = hashlib.sha256(f"{kind}\x00{doc.id}\x00{organ}\x00{sha}".encode()).hexdigest()
    return MessageRow(id=new_id(), idem_key=key, document=doc.id, document_id=doc.document_id, kind=kind,
                      from_organ=sender, to_organ=organ, member=MEMBERS[organ], client=SYSTEM[organ],
                      service=push.get(organ), status_code=code, sha256=sha, size=size,
                      sender_client=SYSTEM[sender], rule="lien-thong-van-ban", exchange_id=new_id(),
                      created_us=now, body=body)


@pytest.fixture
def engine(database_url: str) -> Any:
    eng = create_engine(database_url)
    seed(eng)
    yield eng
    eng.dispose()


def by(items: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(i[k] for k in keys): i for i in items}


def test_figures_per_organ_and_month_by_hand(engine: Any) -> None:
    """Each figure of November and December as worked out by hand from DOCS."""
    found = stats.report(engine, period="month", now_us=NOW)
    got = by(found["agencies"], "organ", "period")
    sender = got[(H60, "2026-11")]
    assert sender["member"] == MEMBERS[H60]
    assert [sender[k] for k in stats.SENT] == [4, 1, 1, 2, 0]  # sent, electronic, refused, failed
    assert sender["electronicShare"] == 0.25 and sender["received"] == 0
    vp = got[(VP, "2026-11")]
    assert (vp["sent"], vp["received"], vp["receivedElectronic"], vp["withDueDate"]) == (0, 3, 2, 2)
    assert (vp["answered"], vp["answeredOnTime"], vp["answeredLate"], vp["overdue"]) == (1, 1, 0, 1)
    assert vp["onTimeShare"] == 0.5 and vp["electronicShare"] is None
    nghean = got[(H41, "2026-11")]
    assert (nghean["received"], nghean["receivedElectronic"], nghean["withDueDate"]) == (2, 1, 2)
    assert [nghean[k] for k in ("answered", "answeredOnTime", "answeredLate", "overdue")] == [1, 0, 1, 1]
    assert nghean["onTimeShare"] == 0.0
    ministry = got[(G12, "2026-11")]
    assert ministry["member"] == MEMBERS[G12]
    assert (ministry["received"], ministry["receivedElectronic"], ministry["answeredOnTime"]) == (2, 0, 1)
    assert ministry["onTimeShare"] == 1.0
    assert (got[(H41, "2026-12")]["sent"], got[(H41, "2026-12")]["electronicShare"]) == (1, 1.0)
    december = got[(H60, "2026-12")]
    assert (december["sent"], december["inTransit"], december["electronicShare"]) == (1, 1, None)
    assert (december["received"], december["withDueDate"], december["overdue"]) == (1, 1, 0)
    assert got[(VP, "2026-12")]["overdue"] == 1  # due on the 2nd, not answered by the 3rd
    totals = by(found["totals"], "period")
    assert (totals[("2026-11",)]["sent"], totals[("2026-11",)]["received"]) == (4, 7)
    assert (totals[("2026-12",)]["sent"], totals[("2026-12",)]["received"]) == (2, 2)


def naive(docs: list[Doc], period: str, now: int) -> dict[tuple[str, str], dict[str, int]]:
    """The figures counted document by document, copy by copy, from the definitions in
    docs/documents.md, without the store."""
    out: dict[tuple[str, str], dict[str, int]] = {}

    def when(us: int) -> str:
        moment = datetime.fromtimestamp(us / 1e6, VIETNAM)
        return {"day": moment.strftime("%Y-%m-%d"), "month": moment.strftime("%Y-%m"),
                "quarter": f"{moment.year}-Q{(moment.month - 1) // 3 + 1}", "year": str(moment.year),
                "all": "all"}[period]

    def row(organ: str, us: int) -> dict[str, int]:
        return out.setdefault((organ, when(us)), dict.fromkeys((*stats.SENT,
                                                                 *stats.RECEIVED), 0))

    for doc in docs:
        fates = []
        for organ, spec in doc.to.items():
            codes = [c for c, _ in spec.statuses]
            delivered = spec.delivery is not None and spec.delivery[0] == "delivered"
            answer = spec.delivery[1] if spec.delivery is not None else None
            if "02" in codes:
                fate = "refused"
            elif codes or spec.confirmed or (delivered and (answer or 200) < 400):
                fate = "received"
            elif spec.delivery is not None and (spec.delivery[0] == "dead"
                                                or (delivered and (answer or 0) >= 400)):
                fate = "failed"
            else:
                fate = "inTransit"
            fates.append(fate)
            mine = row(organ, doc.sent)
            mine["received"] += 1
            mine["receivedElectronic"] += fate == "received"
            if doc.due is None:
                continue
            mine["withDueDate"] += 1
            end = at(doc.due.year, doc.due.month, doc.due.day) + D
            final = [w for c, w in spec.statuses if c in ("02", "06", "15")]
            if final:
                mine["answered"] += 1
                mine["answeredOnTime" if final[0] < end else "answeredLate"] += 1
            elif end <= now:
                mine["overdue"] += 1
        sender = row(doc.sender, doc.sent)
        sender["sent"] += 1
        sender[("electronic" if set(fates) == {"received"} else "refused" if "refused" in fates
                else "failed" if "failed" in fates else "inTransit")] += 1
    return out


@pytest.mark.parametrize("period", ["day", "month", "quarter", "year", "all"])
def test_a_naive_count_agrees(engine: Any, period: str) -> None:
    """Every organ's counts in every period equal the naive count of DOCS."""
    got = {(a["organ"], a["period"]): {k: a[k] for k in (*stats.SENT, *stats.RECEIVED)}
           for a in stats.report(engine, period=period, now_us=NOW)["agencies"]}
    assert got == naive(DOCS, period, NOW)


def test_window_agency_filter_and_bad_period(engine: Any) -> None:
    """from (inclusive) / to (exclusive) in Vietnamese time; an organ or a member as the agency."""
    window = stats.report(engine, period="all", start="20261130000000", end="20261201000000", now_us=NOW)
    assert by(window["totals"], "period")[("all",)]["sent"] == 1  # only the 30th's, at 23:30 there
    organ = stats.report(engine, period="all", agency=H41, now_us=NOW)
    assert {a["organ"] for a in organ["agencies"]} == {H41}
    assert organ["totals"][0]["sent"] == 1 and organ["totals"][0]["received"] == 2
    member = stats.report(engine, period="all", agency=MEMBERS[H60], now_us=NOW)
    assert {a["organ"] for a in member["agencies"]} == {H60, VP}
    with pytest.raises(ValueError, match="period"):
        stats.report(engine, period="week", now_us=NOW)


def test_trace_and_header(engine: Any) -> None:
    """One document's trace: its header facts (no signer's name), each copy, every message in order."""
    ids = seed(engine, [replace(DOCS[0], number=41)])
    with engine.connect() as conn:
        found = stats.trace(conn, ids[41])
        assert stats.trace(conn, "nope") is None
    assert found is not None
    facts = found["facts"]
    assert facts.header.due_date == date(2026, 11, 10) and facts.header.subject == data.SUBJECTS[41 % 5]
    assert "full_name" not in facts.header.as_dict() and facts.outcome == "electronic"
    kinds = [(m["kind"], m["from"], m["to"], m["statusCode"]) for m in found["messages"]]
    assert kinds == [("package", H60, VP, None), ("package", H60, H41, None), ("status", VP, H60, "03"),
                     ("status", VP, H60, "06"), ("status", H41, H60, "06"), ("status", H60, VP, "13"),
                     ("status", H60, H41, "13")]
    assert found["messages"][0]["delivery"]["state"] == "delivered"
    assert found["messages"][1]["mode"] == "pull" and found["messages"][1]["state"] == "confirmed"


def test_a_replayed_dead_delivery_that_got_there_is_received(engine: Any) -> None:
    """An operator's replay of a dead copy (deliveries replay) that is delivered makes the copy
    received; a replay still pending makes it in transit again."""
    ids = seed(engine, [Doc(71, H60, at(2026, 10, 1, 9), None, {G12: Recipient(("dead", None))}),
                        Doc(72, H60, at(2026, 10, 1, 9), None, {G12: Recipient(("dead", None))})])

    def replay(number: int, state: str, answer: int | None) -> None:
        with engine.begin() as conn:
            dead = conn.execute(sa.select(deliveries).join(
                document_messages, document_messages.c.delivery_id == deliveries.c.id)
                .where(document_messages.c.document == ids[number])).one()
            row = {k: v for k, v in dead._mapping.items() if k != "seq"}
            first = new_id()
            row.update(id=first, idem_key=f"{first}:replay", state="dead", replay_of=dead.id)
            conn.execute(deliveries.insert().values(**row))  # a replay that died too, replayed again
            second = new_id()
            row.update(id=second, idem_key=f"{second}:replay", state=state, response_status=answer,
                       replay_of=first)
            conn.execute(deliveries.insert().values(**row))

    replay(71, "delivered", 200)
    replay(72, "pending", None)
    with engine.connect() as conn:
        found = {d.document_id.split(",")[-1]: d for d in stats.load(conn, documents.c.id.in_(ids.values()))}
    assert (found["71/UBND-VP"].outcome, found["71/UBND-VP"].copies[0].delivery_state) == ("electronic",
                                                                                          "delivered")
    assert found["72/UBND-VP"].outcome == "inTransit"


# -- the API and the command line ----------------------------------------------------------------------


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Any:
    init = initialise(tmp_path / "gw", database=database_url)
    raw = yaml.safe_load(init.config_path.read_text())
    for client in raw["clients"]:
        if client["id"].endswith("/GIAMSAT"):
            client["scopes"] = ["metrics", "stats"]
    init.config_path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    eng = create_engine(database_url)
    seed(eng)
    eng.dispose()
    return init


def test_api_scopes_and_bad_parameters(gateway: Any) -> None:
    """GET /stats/documents answers the stats (or operator) scope, refuses others, and says 400 as
    problem+json for a bad period or date."""
    with TestClient(create_app(load_config(gateway.config_path)), base_url="http://127.0.0.1") as client:
        def token(cid: str) -> str:
            r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(cid, gateway.secrets[cid]))
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])

        stats_client = next(c for c in gateway.secrets if c.endswith("/GIAMSAT"))
        auth = {"Authorization": f"Bearer {token(stats_client)}"}
        r = client.get("/stats/documents", headers=auth, params={"period": "month", "from": "2026-11",
                                                                 "to": "2026-12"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["period"], body["from"], body["to"]) == ("month", "2026-11", "2026-12")
        assert by(body["agencies"], "organ")[(H60,)]["electronicShare"] == 0.25
        assert [t["period"] for t in body["totals"]] == ["2026-11"]
        one = client.get("/stats/documents", headers=auth, params={"period": "all", "agency": G12}).json()
        assert [a["organ"] for a in one["agencies"]] == [G12]
        for params in ({"period": "week"}, {"from": "not-a-date"}, {"to": "2026-13"}):
            bad = client.get("/stats/documents", headers=auth, params=params)
            assert bad.status_code == 400, params
            assert bad.headers["content-type"].startswith("application/problem+json")
        onestop = next(c for c in gateway.secrets if c.endswith("H41/MOTCUA"))
        refused = client.get("/stats/documents", headers={"Authorization": f"Bearer {token(onestop)}"})
        assert refused.status_code == 403
        assert client.get("/stats/documents").status_code == 401


def test_cli_stats_documents(gateway: Any) -> None:
    """lienthong stats documents: JSON, a table, a bad date is a usage error."""
    runner = CliRunner()
    config = str(gateway.config_path)
    out = runner.invoke(main, ["stats", "documents", "--config", config, "--period", "quarter", "--json"])
    assert out.exit_code == 0, out.output
    found = by(json.loads(out.output)["agencies"], "organ", "period")
    assert found[(H60, "2026-Q4")]["sent"] == 5 and found[(H60, "2026-Q4")]["electronic"] == 1
    table = runner.invoke(main, ["stats", "documents", "--config", config, "--from", "2026-11", "--to",
                                 "2026-12", "--agency", H60], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    assert "25.0%" in table.output and "000.00.00.H60" in table.output
    assert runner.invoke(main, ["stats", "documents", "--config", config, "--from", "x"]).exit_code == 2
    assert "--agency" in runner.invoke(main, ["stats", "documents", "--help"]).output
