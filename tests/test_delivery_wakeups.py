"""What the intake hands the dispatcher and remembers itself, without a database: a stored delivery
wakes only its own lane, and a dossier's owner is looked up once per process."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.config import Config
from gateway.context import Exchange, Result
from gateway.delivery.intake import Intake
from gateway.delivery.worker import Dispatcher, upstream_key
from tests.helpers import rest_only_config

PROGRESS = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
BIRTH = "VN/GOV/000.00.00.G15/HOTICH/DangKyKhaiSinh"
OWNER = ("a" * 64,)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return rest_only_config(tmp_path_factory.mktemp("wakeups"))[0]


def test_a_delivery_wakes_its_own_lane_only(config: Config) -> None:
    """Each lane woken looks for due work in the database: one delivery, one look."""
    dispatcher = Dispatcher(None, None, config, worker="w", queued=[BIRTH])  # type: ignore[arg-type]
    progress, birth = (config.service(s) for s in (PROGRESS, BIRTH))
    assert progress is not None and birth is not None and len(dispatcher.lanes) > 2
    dispatcher.poke(PROGRESS)
    woken = {name for name, lane in dispatcher.lanes.items() if lane.wake.is_set()}
    assert woken == {upstream_key(progress)}
    for unknown in (None, "VN/GOV/000.00.00.H41/DANHMUC/echo"):  # not queued here: every lane looks
        for lane in dispatcher.lanes.values():
            lane.wake.clear()
        dispatcher.poke(unknown)
        assert all(lane.wake.is_set() for lane in dispatcher.lanes.values())


class Store:
    """The queue's look-up of a dossier's owner: what it answers, and how often it was asked."""

    def __init__(self, answers: dict[str, tuple[str, ...]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def subjects_of(self, dossier: str) -> tuple[str, ...]:
        self.asked.append(dossier)
        return self.answers.get(dossier, ())


def progress(config: Config, code: str, subjects: tuple[str, ...] = ()) -> Result:
    body = orjson.dumps({"MaHoSo": code, "TrangThai": "4"})
    exchange = Exchange(id="x", protocol="rest", received_us=1, method="POST", service_id=PROGRESS, body=body,
                        content_type="application/json")
    return Result(exchange=exchange, request_sha256="0" * 64, client="c", operation="CapNhatTienDoHoSoMC",
                  payload=orjson.loads(body), service=config.service(PROGRESS), subjects=subjects)


async def test_a_dossiers_owner_is_looked_up_once(config: Config) -> None:
    store = Store({"H41-1": OWNER})
    intake = Intake(store, config)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await intake._owner_of_progress(progress(config, "H41-1"))).subjects == OWNER
    assert store.asked == ["H41-1"]


async def test_a_dossier_with_no_owner_yet_is_asked_again(config: Config) -> None:
    """Its first message may still be on its way (another process): nothing is remembered."""
    store = Store({})
    intake = Intake(store, config)  # type: ignore[arg-type]
    assert (await intake._owner_of_progress(progress(config, "H41-2"))).subjects == ()
    store.answers["H41-2"] = OWNER
    assert (await intake._owner_of_progress(progress(config, "H41-2"))).subjects == OWNER
    assert store.asked == ["H41-2", "H41-2"]


async def test_an_update_that_names_people_keeps_them(config: Config) -> None:
    store = Store({"H41-3": OWNER})
    named: Any = ("b" * 64,)
    assert (await Intake(store, config)._owner_of_progress(  # type: ignore[arg-type]
        progress(config, "H41-3", named))).subjects == named
    assert store.asked == []
