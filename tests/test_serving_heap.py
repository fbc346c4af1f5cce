"""A serving process's heap (gateway/app.py, ``freeze_heap``): what start-up built is frozen out of
the cyclic collector's sight, and its young pass waits for 50,000 new objects rather than 700. An
app built for tests leaves the collector as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import YOUNG_COLLECTION_AT, create_app
from gateway.storage.db import upgrade
from tests.helpers import rest_only_config


@pytest.fixture
def collector() -> Iterator[tuple[int, int, int]]:
    """The collector's thresholds, and nothing frozen, restored after the test."""
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_serving_process_freezes_start_up_and_collects_young_objects_later(
        tmp_path: Path, collector: tuple[int, int, int]) -> None:
    config, _ = rest_only_config(tmp_path)
    upgrade(config.database_url)
    with TestClient(create_app(config, freeze_heap=True)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold() == (YOUNG_COLLECTION_AT, *collector[1:])
        assert gc.get_freeze_count() > 0


def test_an_app_built_for_tests_leaves_the_collector_alone(tmp_path: Path,
                                                           collector: tuple[int, int, int]) -> None:
    config, _ = rest_only_config(tmp_path)
    upgrade(config.database_url)
    frozen = gc.get_freeze_count()
    with TestClient(create_app(config)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold() == collector
        assert gc.get_freeze_count() == frozen
