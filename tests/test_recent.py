"""The bounded memory of recent answers (gateway/recent.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.recent import Recent


def test_the_least_recently_used_is_forgotten_first() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now the more recent
    recent.put("c", 3)
    assert recent.get("b") is None and recent.get("a") == 1 and recent.get("c") == 3
    assert recent.pop("a") == 1 and recent.pop("a") is None and len(recent) == 1


@given(st.lists(st.tuples(st.integers(0, 20), st.integers()), max_size=200), st.integers(1, 8))
def test_it_never_holds_more_than_its_size_and_keeps_the_latest(puts: list[tuple[int, int]],
                                                                size: int) -> None:
    recent: Recent[int, int] = Recent(size)
    for key, value in puts:
        recent.put(key, value)
        assert len(recent) <= size and recent.get(key) == value
