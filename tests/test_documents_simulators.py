"""The document simulators' own protocols, in process: the provincial document-management system
(a package and a status kept once each, unreadable edXML refused) and the national platform's calls
(send, getPendingDocs, getDocument, updateStatus)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from connectors.dms import data
from connectors.dms.simulator import create_app as dms_app
from connectors.document_platform.simulator import create_app as platform_app

H60, MINISTRY, FINANCE = "000.00.00.H60", "000.00.00.G12", "000.00.00.G06"
DOC = f"{H60},2026/11/21,120/UBND-VP"


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


def test_dms_keeps_each_message_once() -> None:
    async def scenario() -> None:
        async with client_for(dms_app()) as c:
            package = data.package_bytes(H60, [MINISTRY], 120, attachments=2)
            first = await c.post("/edxml?to=000.01.00.H60", content=package,
                                 headers={"X-Road-Client": "VN/GOV/000.00.00.H60/QLVB"})
            assert first.json() == {"status": "OK", "duplicate": False, "kind": "package", "documentId": DOC}
            again = await c.post("/edxml?to=000.01.00.H60", content=package)
            assert again.json()["duplicate"] is True
            status = data.status_bytes(DOC, H60, "05", MINISTRY)
            assert (await c.post("/edxml?to=000.00.00.H60", content=status)).json()["kind"] == "status"
            bad = await c.post("/edxml", content=package.replace(b"</edXML:Subject>", b"</Subject>"))
            assert bad.status_code == 400 and bad.json()["error"] == "malformed"
            held = (await c.get("/_sim/documents")).json()
            assert held["total"] == 2
            assert [(i["kind"], i["to"], i.get("statusCode")) for i in held["items"]] == [
                ("package", "000.01.00.H60", None), ("status", H60, "05")]
            assert len(held["items"][0]["attachments"]) == 2
            assert held["items"][0]["xroadClient"] == "VN/GOV/000.00.00.H60/QLVB"
            assert (await c.get("/_sim/received")).json()["total"] == 4
            await c.post("/_sim/reset")
            assert (await c.get("/_sim/documents")).json()["total"] == 0

    asyncio.run(scenario())


def test_platform_send_pending_get_and_update_status() -> None:
    async def scenario() -> None:
        async with client_for(platform_app()) as c:
            package = data.package_bytes(H60, [MINISTRY, FINANCE], 120)
            sent = (await c.post("/sendDocument", content=package)).json()
            assert sent["status"] == "OK" and sent["duplicate"] is False
            assert (await c.post("/sendDocument", content=package)).json()["duplicate"] is True
            (pending,) = (await c.get("/getPendingDocs", params={"organId": MINISTRY})).json()["data"]
            assert pending["documentId"] == DOC and pending["kind"] == "package" and pending["from"] == H60
            got = await c.get("/getDocument", params={"organId": MINISTRY, "docId": pending["docId"]})
            assert got.status_code == 200 and got.content == package
            assert (await c.get("/getPendingDocs", params={"organId": MINISTRY})).json()["data"] == []
            missing = await c.get("/getDocument", params={"organId": MINISTRY, "docId": "999"})
            assert missing.status_code == 404
            # Finance answers without fetching first: the document leaves its list, the status goes to
            # the sender's
            answered = await c.post("/updateStatus", content=data.status_bytes(DOC, H60, "03", FINANCE))
            assert answered.json()["status"] == "OK"
            assert (await c.get("/getPendingDocs", params={"organId": FINANCE})).json()["data"] == []
            (status,) = (await c.get("/getPendingDocs", params={"organId": H60})).json()["data"]
            assert status["kind"] == "status" and status["statusCode"] == "03" and status["from"] == FINANCE
            refused = await c.post("/updateStatus", content=package)
            assert refused.status_code == 400 and refused.json()["error"] == "not-a-status"
            garbage = await c.post("/sendDocument", content=b"<edXML")
            assert garbage.status_code == 400
            assert (await c.get("/_sim/documents")).json()["total"] == 3

    asyncio.run(scenario())
