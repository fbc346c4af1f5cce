"""The flows' store writing a batch of filings (gateway/flows/store.py, ``_file_many``): the dossiers
filed before and those filed twice in the batch are found, the others inserted with one statement
per table; a filing that lost a race to another process (a look that did not see the winner) still
finds it, and the rest of its batch is stored. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.flows import store as flow_store
from gateway.flows.store import FlowRow, FlowStore, StepRow, new_flow_id
from gateway.flows.tables import flow_steps, flows
from gateway.storage.db import create_engine
from gateway.storage.writer import Request


def flow(code: str) -> FlowRow:
    return FlowRow(id=new_flow_id(), name="thu", dossier_code=code, client="motcua", exchange_id="x",
                   state="running", dossier={"MaHoSo": code}, subjects=("s1",), started_us=1, updated_us=1,
                   deadline_us=2, steps=[StepRow("a", 0, "A"), StepRow("b", 1, "B")])


def file_batch(store: FlowStore, filings: list[FlowRow]) -> list[tuple[FlowRow, bool]]:
    """The filings as one batch of the store's writer, in one transaction."""
    batch: list[Request[Any]] = [Request(flow_store._File.of(f, 5), done=threading.Event()) for f in filings]
    store._commit(batch)
    return [item.result for item in batch]


def stored(store: FlowStore) -> dict[str, tuple[str, int]]:
    """Each stored flow's dossier code: its id and how many steps it has."""
    with store.engine.connect() as conn:
        steps: dict[str, int] = dict(conn.execute(sa.select(flow_steps.c.flow_id, sa.func.count())
                                  .group_by(flow_steps.c.flow_id)).all())
        return {code: (flow_id, steps.get(flow_id, 0))
                for flow_id, code in conn.execute(sa.select(flows.c.id, flows.c.dossier_code))}


@pytest.fixture
def store(database_url: str) -> FlowStore:
    return FlowStore(create_engine(database_url))


def test_a_batch_inserts_the_new_and_finds_the_filed_and_the_twice_filed(store: FlowStore) -> None:
    earlier = flow("C1")
    store.file(earlier, 1)
    second, first = flow("C3"), flow("C3")
    results = file_batch(store, [flow("C2"), flow("C1"), first, second])
    assert [duplicate for _, duplicate in results] == [False, True, False, True]
    assert results[1][0].id == earlier.id and results[1][0].steps[0].step == "a"
    assert results[3][0].id == first.id  # the batch's own earlier filing of the dossier
    held = stored(store)
    assert set(held) == {"C1", "C2", "C3"} and all(n == 2 for _, n in held.values())
    assert held["C3"][0] == first.id and held["C2"][0] == results[0][0].id


def test_a_filing_that_lost_a_race_finds_the_winner_and_the_rest_is_stored(
        store: FlowStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The look for filed dossiers missed one that another process committed meanwhile
    (PostgreSQL): the batch's insert fails on it, and each filing is then stored on its own."""
    winner = flow("C1")
    store.file(winner, 1)
    monkeypatch.setattr(flow_store, "_filed", lambda conn, codes: set())
    results = file_batch(store, [flow("C2"), flow("C1")])
    assert results[0][1] is False and results[1] == (results[1][0], True)
    assert results[1][0].id == winner.id
    assert set(stored(store)) == {"C1", "C2"}


def test_a_step_reads_back_every_field_it_was_saved_with(store: FlowStore) -> None:
    """A claim and a look-up read each step's columns by place (``_flow_of``): every field, each
    given a value of its own, comes back where it was saved."""
    filed, _ = store.file(flow("H41-9"), 5)
    ((claimed, lease),) = store.claim(10, 1_000_000, 6)
    step = claimed.steps[0]
    step.state, step.delivery_id, step.sends, step.undo_delivery_id = "compensating", "d1", 3, "u1"
    step.started_us, step.finished_us, step.deadline_us, step.overdue = 11, 12, 13, True
    step.result, step.reason, step.due_us = {"So": "7/2026"}, {"code": "x"}, 14
    assert store.save(claimed, lease, 7, 7, [step])
    ((again, _),) = store.claim(10, 1_000_000, 8)
    assert again.steps == [step, filed.steps[1]]
    found = store.get(filed.id)
    assert found is not None and found.steps == again.steps
