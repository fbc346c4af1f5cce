"""The headers every entry point reads alike (gateway/arrival.py) and the exchange built from them
(gateway/context.py ``Exchange.arrived``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.arrival import MAX_ID, Arrival, exchange_id
from gateway.context import Exchange


def scope(*headers: tuple[str, str]) -> dict[str, object]:
    return {"headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]}


def test_every_exchange_header_is_read_by_its_name() -> None:
    arrival = Arrival.read(scope(
        ("Authorization", "Bearer t"), ("Content-Type", "application/json"),
        ("X-Road-Client", "VN/GOV/000.00.00.H41/MOTCUA"), ("X-Road-Id", "abc"),
        ("X-Road-UserId", "cb01"), ("X-Road-Issue", "H41.31-250101-0001"),
        ("X-Road-Represented-Party", "VN/COM/0101"), ("Idempotency-Key", "k1"),
        ("X-Other", "ignored")))
    assert arrival == Arrival(authorization="Bearer t", content_type="application/json",
                              client_header="VN/GOV/000.00.00.H41/MOTCUA", xroad_id="abc",
                              user_id="cb01", issue="H41.31-250101-0001",
                              represented_party="VN/COM/0101", idempotency_key="k1")


def test_no_headers_read_as_nothing_and_the_last_of_a_repeated_header_wins() -> None:
    assert Arrival.read(scope()) == Arrival()
    assert Arrival.read(scope(("X-Road-Issue", "a"), ("X-Road-Issue", "b"))).issue == "b"


def test_headers_are_latin_1_as_http_sends_them() -> None:
    raw = {"headers": [(b"x-road-userid", "Nguyễn".encode())]}
    assert Arrival.read(raw).user_id == "Nguyễn".encode().decode("latin-1")


def test_a_sound_proposed_id_is_kept_in_order_of_preference() -> None:
    assert exchange_id("from-envelope", "from-http") == "from-envelope"
    assert exchange_id(None, "from-http") == "from-http"
    assert exchange_id("", "from-http") == "from-http"
    assert exchange_id("x" * MAX_ID) == "x" * MAX_ID


@given(st.one_of(st.text(min_size=MAX_ID + 1, max_size=MAX_ID + 20),
                 st.text(min_size=1, max_size=20).map(lambda t: t + "\n"),
                 st.text(min_size=1, max_size=20).map(lambda t: "\x00" + t)))
def test_an_unsound_proposed_id_is_replaced(proposed: str) -> None:
    chosen = exchange_id(proposed)
    assert chosen != proposed
    assert chosen.isprintable() and 0 < len(chosen) <= MAX_ID
    assert exchange_id(proposed) != chosen  # a new id each time


def test_an_exchange_takes_the_headers_and_what_the_dialect_said() -> None:
    arrival = Arrival(authorization="Bearer t", content_type="text/xml", client_header="c",
                      user_id="u", issue="i", represented_party="p", idempotency_key="k")
    ex = Exchange.arrived(arrival, id="x1", protocol="soap", method="POST", received_us=5,
                          service_id="VN/GOV/m/S/svc", body=b"<a/>", operation="Op")
    assert (ex.id, ex.protocol, ex.method, ex.received_us, ex.service_id, ex.body, ex.operation) == (
        "x1", "soap", "POST", 5, "VN/GOV/m/S/svc", b"<a/>", "Op")
    assert (ex.authorization, ex.content_type, ex.client_header, ex.user_id, ex.issue,
            ex.represented_party, ex.idempotency_key) == ("Bearer t", "text/xml", "c", "u", "i", "p", "k")
    assert ex.path == "" and ex.query == "" and ex.decode is None
