"""The demo's joint procedures (gateway/flows/demo.py) against the session's gateway and simulators
(real processes, SQLite and PostgreSQL): fifteen flows, an outage ridden out, one refusal."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
from rich.console import Console

from gateway.client import tool_client
from gateway.flows.demo import BIRTH, VN, FlowOutcome, flows_table, joint_dossiers, run_joint_procedures
from tests.conftest import Stack

pytestmark = pytest.mark.slow

ONESTOPS = ("VN/GOV/000.00.00.H41/MOTCUA", "VN/GOV/000.00.00.H60/MOTCUA")


def _ids(value: Any) -> list[str]:
    """Every personal id in a joint dossier."""
    if not isinstance(value, dict):
        return []
    own = [value["SoDinhDanh"]] if "SoDinhDanh" in value else []
    return own + [i for v in value.values() for i in _ids(v)]


def test_the_joint_dossiers_are_well_formed_and_distinct() -> None:
    """Ten births and five deaths, 12-digit ids, no citizen in two parts, one marked for refusal."""
    batch = joint_dossiers(datetime.now(VN).date())
    assert Counter(d.service == BIRTH for d in batch) == {True: 10, False: 5}
    assert [d.code for d in batch if d.refused] == [batch[5].code]
    assert sum(d.outage for d in batch) == 3 and len({d.code for d in batch}) == 15
    ids = [i for d in batch for i in _ids(d.body)]
    assert len(ids) > 30 and all(re.fullmatch(r"[0-9]{12}", i) for i in ids)
    people = [d.body.get(k, {}).get("SoDinhDanh") for d in batch for k in ("Me", "Cha", "NguoiChet")]
    named = [p for p in people if p]
    assert len(named) == len(set(named))


def test_the_demo_flows_ride_out_an_outage_and_report_a_refusal(stack: Stack) -> None:
    """14 flows complete, the refused one stops with the registry's reason, the three filed while the
    residence registry was down waited and then completed; the report shows each."""
    checks: list[tuple[str, bool, str]] = []
    first = 10_000 + time.time_ns() % 1_000_000  # codes unseen by the session's simulators
    batch = joint_dossiers(datetime.now(VN).date(), first=first, offset=500)

    async def scenario() -> list[FlowOutcome]:
        tokens = {client: stack.token(client) for client in ONESTOPS}
        async with tool_client() as http:
            async def exchange(label: str, token: str, client: str, service: str, body: dict[str, Any],
                               **headers: str) -> httpx.Response:
                return await http.post(f"{stack.base}/r1/{service}", json=body,
                                       headers={"Authorization": f"Bearer {token}", "X-Road-Client": client,
                                                **headers})

            return await run_joint_procedures(http, stack.base, tokens, stack.sims["residence"], exchange,
                                              lambda *c: checks.append(c), dossiers=batch)

    outcomes = asyncio.run(scenario())
    assert [c for c in checks if not c[1]] == [] and len(checks) == 4
    assert Counter(o.state for o in outcomes) == {"completed": 14, "rejected": 1}
    assert all(o.waited_then_completed() for o in outcomes if o.dossier.outage)
    (refused,) = [o for o in outcomes if o.state == "rejected"]
    assert refused.dossier.refused and "TEN_KHONG_KHOP" in refused.reason
    assert all(o.elapsed is not None and o.elapsed > 0 for o in outcomes)
    console = Console(record=True, width=200)
    console.print(flows_table(outcomes))
    text = console.export_text()
    assert all(d.code in text for d in batch)
    assert text.count("completed") >= 14 and "TEN_KHONG_KHOP" in text and "waiting" in text
