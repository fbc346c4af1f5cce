"""X-Road style identifiers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.identifiers import IdentifierError, ServiceId, SubsystemId, normalise_client


def test_service_id_slash_and_colon_forms_agree() -> None:
    """A service id reads the same in slash and colon form."""
    a = ServiceId.parse("VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC")
    b = ServiceId.parse("VN:GOV:000.00.00.G22:DVCQG:DongBoHoSoMC")
    assert a == b
    assert str(a.subsystem_id) == "VN/GOV/000.00.00.G22/DVCQG"


def test_service_id_with_version() -> None:
    """A sixth part is the service version."""
    sid = ServiceId.parse("VN/GOV/000.00.00.G22/DVCQG/TraCuuHoSo/v1")
    assert sid.version == "v1" and str(sid).endswith("/TraCuuHoSo/v1")


@pytest.mark.parametrize("bad", ["", "VN/GOV", "VN/GOV/000.00.00.H22", "VN//X/Y/Z", "VN/GOV/a b/S/T",
                                 "VN/GOV/x/y/z/w/extra"])
def test_bad_service_ids_are_refused(bad: str) -> None:
    """Ids with the wrong number of parts or odd characters are refused."""
    with pytest.raises(IdentifierError):
        ServiceId.parse(bad)


def test_client_ids_normalise_to_slash_form() -> None:
    """A client id in colon form normalises to the slash form tokens carry."""
    assert normalise_client("VN:GOV:000.00.00.H22:MOTCUA") == "VN/GOV/000.00.00.H22/MOTCUA"
    with pytest.raises(IdentifierError):
        SubsystemId.parse("VN/GOV/000.00.00.H22")


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True), min_size=4,
                max_size=4))
def test_subsystem_round_trip(parts: list[str]) -> None:
    """Any well-formed subsystem id survives parse and str."""
    text = "/".join(parts)
    assert str(SubsystemId.parse(text)) == text
