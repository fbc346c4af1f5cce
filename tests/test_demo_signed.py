"""The demo's signed-dossier scene (gateway/demo_signed.py) against the demo catalog served by real
processes: what `lienthong demo` checks, without the rest of the demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.demo import dossiers
from gateway.demo_pki import FOLDER
from gateway.demo_signed import signed_dossiers
from gateway.init import PORTAL, TUYEN_QUANG
from tests.conftest import Stack, random_id

MOTCUA = f"{TUYEN_QUANG}/MOTCUA"


def test_the_signed_dossier_scene_passes_its_checks(stack: Stack) -> None:
    checks: list[tuple[str, bool, str]] = []
    owner = "0790" + str(int(random_id(), 16))[-8:].rjust(8, "0")  # new for each run
    suffix = random_id()[:6]
    batch = [{**d, "MaHoSo": f"{d['MaHoSo']}{suffix}"} for d in dossiers(4)]  # codes new to the stack

    async def play() -> list[Any]:
        async with httpx.AsyncClient(timeout=30) as http:
            async def exchange(label: str, token: str, client: str, service: str, body: dict[str, Any],
                               **headers: str) -> httpx.Response:
                return await http.post(f"{stack.base}/r1/{service}", content=orjson.dumps(body),
                                       headers={"Authorization": f"Bearer {token}", "X-Road-Client": client,
                                                "Content-Type": "application/json", **headers})

            return await signed_dossiers(
                http, stack.base, stack.token(MOTCUA), MOTCUA, Path(stack.config_path).parent / FOLDER,
                stack.sims["dvcqg"], batch, exchange, lambda *c: checks.append(c),
                stack.secrets[f"{PORTAL}/KIEMTOAN"], owner)

    outcomes = asyncio.run(play())
    assert len(checks) == 5 and all(ok for _, ok, _ in checks), checks
    assert [(o.status, o.reason) for o in outcomes] == [(202, ""), (202, ""), (400, "bad-signature"),
                                                         (403, "revoked")]
