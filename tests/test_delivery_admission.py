"""The intake decision (gateway/delivery/admission.py), pure: given a batch of new deliveries and what
the table holds for their idempotency keys and dossier codes, each is admitted, a duplicate of a
delivery already made, or refused. No database: plain data in, plain data out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.admission import Admission, Admit, Duplicate, Held, IntakeStatus, Refuse, admit
from gateway.delivery.model import DEAD, DELIVERED, PENDING, NewDelivery
from gateway.delivery.transitions import impossible
from gateway.errors import InvalidBody

H60 = "000.00.00.H60"
H22 = "000.00.00.H22"
CODE = "H60.23-20261121-0000001"


def new(index: int, key: str | None = None, *, dossier: str | None = CODE, status: int | None = None,
        transitions: str = "refuse", agency: str | None = H60) -> NewDelivery:
    """A checked async request, as the intake hands it to the queue."""
    return NewDelivery(
        id=f"d{index:031d}", idem_key=key or f"key-{index}", order_key=f"sub|{dossier or index}",
        dossier=dossier, service="VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC", operation="DongBoHoSoMC",
        client="VN/GOV/000.00.00.H60/MOTCUA", rule="motcua-push", exchange_id=f"x{index}", user_id=None,
        purpose=None, represented_party=None, method="POST", path="/r1/…", query="",
        content_type="application/json", body=b"{}", body_sha256="0" * 64, subjects=(),
        agency=agency, status=status, transitions=transitions)


# -- unit cases ------------------------------------------------------------------------------------

def test_an_empty_batch_decides_nothing() -> None:
    """No deliveries, no verdicts, no dossier touched."""
    assert admit([], {}, {}) == Admission((), {})


def test_a_new_key_is_admitted_and_its_dossier_noted() -> None:
    """A first push is stored; its dossier's intake status becomes the status it carries."""
    decided = admit([new(1, status=2)], {}, {})
    assert decided.verdicts == (Admit(),)
    assert decided.dossiers == {CODE: IntakeStatus(H60, 2)}


def test_a_key_the_table_holds_is_a_duplicate_of_that_delivery() -> None:
    """The client is answered with the delivery already made, in the state it is in now, with its flag."""
    held = {"key-1": Held("first", DELIVERED, "a flag")}
    decided = admit([new(1, status=4)], held, {CODE: 4})
    assert decided.verdicts == (Duplicate("first", DELIVERED, "a flag", in_batch=False),)
    assert decided.dossiers == {}  # nothing new: the intake status stays


def test_the_first_of_a_key_in_a_batch_is_admitted_the_others_repeat_it() -> None:
    """Two pushes of the same content in one batch make one delivery; the second is told its id."""
    decided = admit([new(1, "k"), new(2, "k"), new(3, "other"), new(4, "k")], {}, {})
    first = Duplicate(new(1).id, PENDING, None, in_batch=True)
    assert decided.verdicts == (Admit(), first, Admit(), first)


def test_a_held_key_wins_over_an_impossible_change() -> None:
    """A repeated push is answered with its first delivery even if its status could not come now: it
    is the same push, not a new change."""
    decided = admit([new(1, status=2)], {"key-1": Held("first", PENDING)}, {CODE: 10})
    assert decided.verdicts == (Duplicate("first", PENDING),)


def test_an_impossible_change_is_refused_422_naming_the_dossier() -> None:
    """Out of a final status nothing goes: 422, the dossier and the reason in the detail, path $."""
    (verdict,) = admit([new(1, status=4)], {}, {CODE: 10}).verdicts
    assert isinstance(verdict, Refuse)
    error = verdict.error
    assert isinstance(error, InvalidBody) and error.status == 422
    reason = impossible(10, 4)
    assert reason is not None and "cannot become 4" in reason
    assert error.detail == f"dossier {CODE}: {reason}"
    assert error.extra == {"errors": [{"path": "$", "message": reason}]}


def test_a_refusal_stores_nothing_and_moves_no_status() -> None:
    """A refused update leaves the intake status as it was; the next update is checked against it."""
    decided = admit([new(1, status=1), new(2, status=5)], {}, {CODE: 4})
    assert isinstance(decided.verdicts[0], Refuse)  # back to 1: impossible
    assert decided.verdicts[1] == Admit()  # 4 -> 5, not 1 -> 5
    assert decided.dossiers == {CODE: IntakeStatus(H60, 5)}


def test_a_key_refused_earlier_in_the_batch_is_judged_again() -> None:
    """A refused delivery made nothing, so a later one with the same key is no duplicate of it."""
    decided = admit([new(1, "same", status=1), new(2, "same", status=6)], {}, {CODE: 5})
    assert isinstance(decided.verdicts[0], Refuse)
    assert decided.verdicts[1] == Admit()


def test_the_status_moves_with_each_admitted_delivery_of_the_batch() -> None:
    """The second of two updates in one batch is checked against the first, as if sent one at a time."""
    decided = admit([new(1, status=9), new(2, status=4), new(3, status=10)], {}, {CODE: 4})
    assert decided.verdicts[0] == Admit()
    assert isinstance(decided.verdicts[1], Refuse)  # 9 processed: only 10 may follow
    assert decided.verdicts[2] == Admit()
    assert decided.dossiers == {CODE: IntakeStatus(H60, 10)}


def test_flagged_transitions_are_admitted_with_the_reason() -> None:
    """With ``transitions: flag`` the impossible change is stored and its reason kept as the flag."""
    decided = admit([new(1, status=4, transitions="flag")], {}, {CODE: 10})
    assert decided.verdicts == (Admit(impossible(10, 4)),)
    assert decided.dossiers == {CODE: IntakeStatus(H60, 4)}  # the flagged status is the latest


def test_a_flagged_delivery_repeated_in_the_batch_carries_the_flag() -> None:
    """The duplicate of a flagged delivery is told the same flag."""
    decided = admit([new(1, "k", status=4, transitions="flag"), new(2, "k", status=4, transitions="flag")],
                    {}, {CODE: 10})
    assert decided.verdicts[1] == Duplicate(new(1).id, PENDING, impossible(10, 4), in_batch=True)


def test_transitions_off_checks_nothing_but_still_notes_the_status() -> None:
    """``transitions: off``: any change is admitted unflagged; the status is still remembered."""
    decided = admit([new(1, status=1, transitions="off")], {}, {CODE: 10})
    assert decided.verdicts == (Admit(),)
    assert decided.dossiers == {CODE: IntakeStatus(H60, 1)}


@pytest.mark.parametrize("untracked", [{"agency": None}, {"dossier": None}])
def test_untracked_deliveries_are_neither_checked_nor_noted(untracked: dict[str, Any]) -> None:
    """A service that carries no dossier messages (no agency, or no code) has no status to check."""
    decided = admit([new(1, status=1, **untracked)], {}, {CODE: 10})
    assert decided.verdicts == (Admit(),)
    assert decided.dossiers == {}


def test_a_statusless_delivery_keeps_the_held_status() -> None:
    """A message that carries no status leaves the dossier's intake status as the table has it."""
    decided = admit([new(1, status=None)], {}, {CODE: 7})
    assert decided.verdicts == (Admit(),)
    assert decided.dossiers == {CODE: IntakeStatus(H60, 7)}


def test_the_agency_noted_is_the_last_admitted_deliverys() -> None:
    """The agency passed on with a dossier's intake status is that of its last admitted delivery (the
    queue keeps the agency a held row already has)."""
    decided = admit([new(1, status=2, agency=H22), new(2, status=4, agency=H60)], {}, {})
    assert decided.dossiers == {CODE: IntakeStatus(H60, 4)}


def test_dossiers_are_decided_apart() -> None:
    """One dossier's status does not bear on another's."""
    other = "H60.23-20261121-0000002"
    decided = admit([new(1, status=10), new(2, dossier=other, status=4), new(3, status=4)], {}, {})
    assert decided.verdicts[:2] == (Admit(), Admit())
    assert isinstance(decided.verdicts[2], Refuse)
    assert decided.dossiers == {CODE: IntakeStatus(H60, 10), other: IntakeStatus(H60, 4)}


def test_the_inputs_are_left_as_they_were() -> None:
    """The decision reads its inputs and changes none of them."""
    held = {"key-9": Held("nine", DEAD)}
    statuses: dict[str, int | None] = {CODE: 4}
    batch = [new(1, status=5), new(9, status=6)]
    admit(batch, held, statuses)
    assert held == {"key-9": Held("nine", DEAD)} and statuses == {CODE: 4}
    assert [n.status for n in batch] == [5, 6]


# -- properties --------------------------------------------------------------------------------------

KEYS = st.sampled_from([f"k{i}" for i in range(6)])
CODES = st.sampled_from([CODE, "H60.23-20261121-0000002", "H22.31.20-20261121-0000003"])
STATUSES = st.one_of(st.none(), st.integers(1, 10))
MODES = st.sampled_from(["refuse", "flag", "off"])


@st.composite
def batches(draw: st.DrawFn, modes: st.SearchStrategy[str] = MODES) -> list[NewDelivery]:
    size = draw(st.integers(0, 14))
    out = []
    for index in range(size):
        tracked = draw(st.booleans()) or draw(st.booleans())  # mostly tracked
        out.append(new(index, draw(KEYS), dossier=draw(CODES), status=draw(STATUSES),
                       transitions=draw(modes), agency=H60 if tracked else None))
    return out


HELD = st.dictionaries(KEYS, st.builds(Held, st.sampled_from(["h1", "h2", "h3"]),
                                       st.sampled_from([PENDING, DELIVERED, DEAD]),
                                       st.one_of(st.none(), st.just("flagged"))), max_size=3)
INTAKE = st.dictionaries(CODES, STATUSES, max_size=3)


@given(batches(modes=st.just("off")))
def test_each_key_makes_exactly_one_delivery_and_the_rest_repeat_it(batch: list[NewDelivery]) -> None:
    """With nothing held and nothing refused, every key is admitted once, at its first push, and every
    later push of it is a duplicate of that one."""
    decided = admit(batch, {}, {})
    assert len(decided.verdicts) == len(batch)
    first: dict[str, str] = {}
    for item, verdict in zip(batch, decided.verdicts, strict=True):
        if item.idem_key not in first:
            assert verdict == Admit()
            first[item.idem_key] = item.id
        else:
            assert verdict == Duplicate(first[item.idem_key], PENDING, None, in_batch=True)
    assert sum(isinstance(v, Admit) for v in decided.verdicts) == len({n.idem_key for n in batch})


@given(batches(), HELD, INTAKE)
def test_a_held_key_is_never_stored_again(batch: list[NewDelivery], held: dict[str, Held],
                                          statuses: dict[str, int | None]) -> None:
    """Whatever it carries, a push whose key the table holds is a duplicate of the held delivery."""
    decided = admit(batch, held, statuses)
    for item, verdict in zip(batch, decided.verdicts, strict=True):
        if item.idem_key in held:
            found = held[item.idem_key]
            assert verdict == Duplicate(found.id, found.state, found.flag, in_batch=False)


@given(batches(modes=st.just("refuse")), HELD, INTAKE)
def test_refusing_admits_no_impossible_change(batch: list[NewDelivery], held: dict[str, Held],
                                               statuses: dict[str, int | None]) -> None:
    """With transitions refused, the statuses a dossier takes through its admitted deliveries, from
    the one held, never make an impossible step, and each refusal was one."""
    decided = admit(batch, held, statuses)
    now = dict(statuses)
    for item, verdict in zip(batch, decided.verdicts, strict=True):
        code = item.tracked
        if isinstance(verdict, Refuse):
            assert code is not None
            assert impossible(now.get(code), item.status) is not None
            assert verdict.error.status == 422 and code in verdict.error.detail
        elif isinstance(verdict, Admit):
            assert verdict.flag is None
            if code is not None:
                assert impossible(now.get(code), item.status) is None
                if item.status is not None:
                    now[code] = item.status


@given(batches(), HELD, INTAKE)
def test_a_batch_decides_as_its_deliveries_one_at_a_time(batch: list[NewDelivery], held: dict[str, Held],
                                                         statuses: dict[str, int | None]) -> None:
    """Cross-check against a naive reference that stores each admitted delivery before it looks at
    the next: the same verdicts, and the same intake statuses left behind."""
    decided = admit(batch, held, statuses)
    expected = one_at_a_time(batch, held, statuses)
    assert [_plain(v) for v in decided.verdicts] == expected.verdicts
    assert {code: note.status for code, note in decided.dossiers.items()} == expected.statuses


@given(batches(), HELD, INTAKE)
def test_splitting_a_batch_changes_no_verdict(batch: list[NewDelivery], held: dict[str, Held],
                                              statuses: dict[str, int | None]) -> None:
    """Group commit is invisible: the first half decided, its admitted deliveries stored, then the
    second half decided, gives what the whole batch gives."""
    whole = admit(batch, held, statuses)
    half = len(batch) // 2
    first = admit(batch[:half], held, statuses)
    stored = dict(held)
    stored.update({n.idem_key: Held(n.id, PENDING, v.flag) for n, v in zip(batch[:half], first.verdicts,
                                                                             strict=True)
                   if isinstance(v, Admit)})
    after = {**statuses, **{code: note.status for code, note in first.dossiers.items()}}
    second = admit(batch[half:], stored, after)
    assert [_plain(v) for v in whole.verdicts] == [_plain(v) for v in first.verdicts + second.verdicts]


@given(batches(), HELD, INTAKE)
def test_flag_and_off_never_refuse(batch: list[NewDelivery], held: dict[str, Held],
                                   statuses: dict[str, int | None]) -> None:
    """Only ``transitions: refuse`` refuses; ``off`` never flags."""
    decided = admit(batch, held, statuses)
    for item, verdict in zip(batch, decided.verdicts, strict=True):
        if item.transitions != "refuse":
            assert not isinstance(verdict, Refuse)
        if item.transitions == "off" and isinstance(verdict, Admit):
            assert verdict.flag is None


# -- the naive reference -----------------------------------------------------------------------------

@dataclass
class Reference:
    verdicts: list[tuple[Any, ...]]
    statuses: dict[str, int | None]


def one_at_a_time(batch: Sequence[NewDelivery], held: Mapping[str, Held],
                  statuses: Mapping[str, int | None]) -> Reference:
    """Each delivery against a table that already holds every delivery admitted before it."""
    table = {key: ("duplicate", h.id, h.state, h.flag) for key, h in held.items()}
    status = dict(statuses)
    touched: set[str] = set()
    verdicts: list[tuple[Any, ...]] = []
    for item in batch:
        if item.idem_key in table:
            verdicts.append(table[item.idem_key])
            continue
        tracked = item.dossier is not None and item.agency is not None
        reason = None
        if tracked and item.transitions != "off":
            assert item.dossier is not None
            reason = impossible(status.get(item.dossier), item.status)
        if reason is not None and item.transitions == "refuse":
            verdicts.append(("refused", f"dossier {item.dossier}: {reason}"))
            continue
        verdicts.append(("admitted", reason))
        table[item.idem_key] = ("duplicate", item.id, PENDING, reason)
        if tracked:
            assert item.dossier is not None
            touched.add(item.dossier)
            if item.status is not None:
                status[item.dossier] = item.status
    return Reference(verdicts, {code: status.get(code) for code in touched})


def _plain(verdict: Admit | Duplicate | Refuse) -> tuple[Any, ...]:
    """A verdict without what only a batch can know (whether a duplicate's delivery is stored yet)."""
    if isinstance(verdict, Admit):
        return ("admitted", verdict.flag)
    if isinstance(verdict, Duplicate):
        return ("duplicate", verdict.of, verdict.state, verdict.flag)
    return ("refused", verdict.error.detail)


def test_the_reference_is_not_trivially_equal() -> None:
    """The cross-check can fail: a decision that forgot the batch's own statuses differs from it."""
    batch = [new(1, status=10), new(2, status=4)]
    forgetful = [_plain(admit([item], {}, {}).verdicts[0]) for item in batch]
    assert forgetful != one_at_a_time(batch, {}, {}).verdicts
    assert [_plain(v) for v in admit(batch, {}, {}).verdicts] == one_at_a_time(batch, {}, {}).verdicts


def test_new_delivery_tracked_names_the_dossier_only_with_an_agency() -> None:
    """``tracked``: the code when the delivery counts for an agency, else None."""
    assert new(1).tracked == CODE
    assert new(1, agency=None).tracked is None
    assert replace(new(1), dossier="").tracked is None
