"""The signature package's speed-ups of its libraries answer exactly as the libraries do (issue 14).

``pdf_hex.read_hex_string`` is cross-checked against pyHanko's own hex-string reader (the naive
reference): the same object, the same exception, the stream left at the same place, on written
cases and on generated ones. ``name_prep.prepare`` is cross-checked against asn1crypto's string
preparation, refusals included. ``TrustStore.pinned`` keeps one anchor per signer, ``identity``
one set of names per certificate; the XML shape check's Id query is cross-checked against the
obvious one.
"""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfError

from gateway.signatures import name_prep, pdf_hex, verify
from gateway.signatures import trust as trust_module
from gateway.signatures import xml as xml_module
from gateway.signatures.trust import identity
from tests.pki import Pki, make_pki, sign_pdf


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("trust"))


def _outcome(reader: Any, data: bytes, at: int = 0) -> tuple[Any, ...]:
    """What a reader makes of ``data`` from ``at``: (type, bytes, position) or (exception type,)."""
    stream = BytesIO(data)
    stream.seek(at)
    try:
        found = reader(stream)
    except (PdfError, ValueError) as exc:
        return (type(exc),)
    return type(found), found.original_bytes, stream.tell()


# --- pdf_hex --------------------------------------------------------------------------------------

HEX_CASES = [
    b"<48656C6C6F>", b"<48656c6c6f> trailing", b"<>", b"<4>", b"<123>", b"<48 65\n6C\r6C\t6F\x00\x0c>",
    b"<FEFF00480069>",  # a UTF-16 text string: pyHanko decodes it as text
    b"<41 % a comment > with a bracket\n 42>", b"<41%\n42>", b"<4G>", b"<41 42", b"<", b"<41>>",
    b"<" + b"ab" * 3000 + b">after", b"<" + b"0" * 511 + b">", b"<" + b"0" * 512 + b">",
    b"<" + b"0" * 1535 + b"1>", b"<" + b" " * 2000 + b"41>",
]


@pytest.mark.parametrize("data", HEX_CASES)
def test_the_fast_hex_reader_answers_as_pyhanko_does(data: bytes) -> None:
    """Same object, same bytes, same position afterwards, same exception, case by case."""
    assert _outcome(pdf_hex.read_hex_string, data) == _outcome(pdf_hex._PYHANKO_READER, data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"0", b"7", b"a", b"F", b" ", b"\n", b"\x00", b"%", b">", b"<", b"z",
                                 b"\r", b"\x0c", b"ab" * 300]), max_size=40))
def test_the_fast_hex_reader_answers_as_pyhanko_does_on_generated_strings(parts: list[bytes]) -> None:
    """Generated strings of digits, whitespace, comments, brackets and strays: pyHanko's answer."""
    data = b"<" + b"".join(parts)
    assert _outcome(pdf_hex.read_hex_string, data) == _outcome(pdf_hex._PYHANKO_READER, data)


def test_the_fast_hex_reader_starts_where_the_stream_is() -> None:
    """A hex string in the middle of a stream is read from its position, and the stream left after it."""
    data = b"1 0 obj <414243> endobj"
    assert _outcome(pdf_hex.read_hex_string, data, 8) == (generic.TextStringObject, b"ABC", 16)
    assert _outcome(pdf_hex._PYHANKO_READER, data, 8) == (generic.TextStringObject, b"ABC", 16)


def test_pyhanko_reads_hex_strings_with_the_fast_reader() -> None:
    """Importing gateway.signatures puts the reader in pyHanko's parser, once."""
    assert pdf_hex.installed()
    pdf_hex.install()
    assert generic.read_hex_string_from_stream is pdf_hex.read_hex_string
    found = generic.read_object(BytesIO(b"<< /Contents <3082> /Name (x) >>"), generic.Reference(1, 0))
    assert isinstance(found, generic.DictionaryObject)
    assert found["/Contents"].original_bytes == b"\x30\x82"


def test_a_signed_pdf_is_read_without_pyhankos_slow_reader(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature's /Contents (plain hex) never falls back to the character-by-character reader."""
    fallbacks: list[int] = []

    def slow(stream: Any) -> Any:
        fallbacks.append(stream.tell())
        return generic.ByteStringObject(b"")

    monkeypatch.setattr(pdf_hex, "_PYHANKO_READER", slow)
    assert verify(sign_pdf(pki, pki.signer), "application/pdf", trust=pki.trust).reason == "ok"
    assert fallbacks == []


# --- name_prep ------------------------------------------------------------------------------------

NAME_VALUES = ["Nguyễn Văn An", "NGUYỄN  VĂN   AN ", "Liên Thông test PKI", "VN", "", " ",
               "Cục Chứng thực số và Bảo mật thông tin", "a\u00adb\u200bc", "tab\there", "ﬁ ligature",
               "Ａｂｃ", "x" * 300]
REFUSED_VALUES = ["private \ue000 use", "\ufffd", "\u05d0abc"]  # private use, replacement, mixed bidi


def _asn1crypto(value: str) -> str:
    result: str = name_prep._ASN1CRYPTO_PREP(None, value)
    return result


@pytest.mark.parametrize("value", NAME_VALUES)
def test_remembered_preparation_is_asn1cryptos(value: str) -> None:
    """The same prepared string, the first time and when remembered."""
    assert name_prep.prepare(None, value) == _asn1crypto(value)
    assert name_prep.prepare(None, value) == _asn1crypto(value)


@pytest.mark.parametrize("value", REFUSED_VALUES)
def test_a_refused_name_value_is_refused_every_time(value: str) -> None:
    """asn1crypto's ValueError each time: a refusal is not remembered as an answer."""
    with pytest.raises(ValueError):
        _asn1crypto(value)
    for _ in range(2):
        with pytest.raises(ValueError):
            name_prep.prepare(None, value)


def test_only_short_strings_are_remembered() -> None:
    """A value over MAX_LENGTH, or not a str, goes to asn1crypto each time and is not kept."""
    before = name_prep._remembered.cache_info().currsize
    long = "y" * (name_prep.MAX_LENGTH + 1)
    assert name_prep.prepare(None, long) == _asn1crypto(long)
    with pytest.raises(TypeError):
        name_prep.prepare(None, b"bytes")
    assert name_prep._remembered.cache_info().currsize == before
    assert name_prep._remembered.cache_info().maxsize == name_prep.MAX_VALUES


def test_asn1crypto_compares_names_with_the_remembered_preparation() -> None:
    """Installed once; names equal under RFC 5280 (case, spaces, string type) still compare equal."""
    assert name_prep.installed()
    name_prep.install()
    assert asn1_x509.NameTypeAndValue._ldap_string_prep is name_prep.prepare
    one = asn1_x509.Name.build({"common_name": "Nguyễn Văn An", "country_name": "VN"})
    other = asn1_x509.Name.build({"common_name": "NGUYỄN  VĂN AN ", "country_name": "VN"})
    stranger = asn1_x509.Name.build({"common_name": "Trần Thị Bình", "country_name": "VN"})
    utf8 = asn1_x509.Name.build({"common_name": "Tuyen Quang"})
    printable = asn1_x509.Name.build({"common_name": "tuyen  quang"}, use_printable=True)
    assert one == other
    assert one != stranger
    assert utf8 == printable


# --- the pinned anchor ----------------------------------------------------------------------------

def test_pinned_contexts_share_one_anchor_per_signer(pki: Pki) -> None:
    """Two contexts for the same signer (parsed twice) share its trust manager; another signer has
    its own; a store with cache_size=0 builds one each time."""
    first = pki.trust.pinned(pki.signer.asn1, None)
    again = pki.trust.pinned(pki.signer.asn1, None)
    other = pki.trust.pinned(pki.ec_signer.asn1, None)
    assert again.path_builder.trust_manager is first.path_builder.trust_manager
    assert other.path_builder.trust_manager is not first.path_builder.trust_manager
    assert first.path_builder.trust_manager.is_root(pki.signer.asn1)
    assert not other.path_builder.trust_manager.is_root(pki.signer.asn1)
    cold = replace(pki.trust, cache_size=0)
    assert (cold.pinned(pki.signer.asn1, None).path_builder.trust_manager
            is not cold.pinned(pki.signer.asn1, None).path_builder.trust_manager)


# --- the signer's names ---------------------------------------------------------------------------

def test_a_signers_names_are_formatted_once_and_alike_from_either_parser(pki: Pki) -> None:
    """identity() gives the same fields for cryptography's and asn1crypto's parse of a certificate,
    and formats a repeated certificate's names once."""
    first = identity(pki.ec_signer.cert)
    hits = trust_module._kept_names.cache_info().hits
    assert identity(pki.ec_signer.asn1) == first
    assert trust_module._kept_names.cache_info().hits == hits + 1
    assert first == {"subject": pki.ec_signer.cert.subject.rfc4514_string(),
                     "serial": format(pki.ec_signer.cert.serial_number, "x"),
                     "issuer": pki.ec_signer.cert.issuer.rfc4514_string()}


# --- XML: the elements bearing an Id -----------------------------------------------------------------

_NAIVE_BEARING_ID = etree.XPath("count(//*[@Id=$v or @ID=$v or @id=$v])")


@pytest.mark.parametrize("document", [
    b"<a Id='v'/>", b"<a Id='v'><b ID='v' Id='v'/><c id='v'/></a>", b"<a><b iD='v'/><c Id='w'/></a>",
    b"<a xmlns:p='urn:p' p:Id='v'><b xml:id='v'/><c Id=' v'/></a>", b"<a><b><c><d ID='v'/></c></b></a>",
    b"<a xmlns='urn:d' Id='v'><b Name='v'/></a>",
])
def test_counting_elements_that_bear_an_id_agrees_with_the_naive_query(document: bytes) -> None:
    """The faster query counts the same elements as the obvious one (an element bearing the value
    twice counts once; prefixed, xml:id and other attributes do not count)."""
    root = etree.fromstring(document)
    for value in ("v", "w", " v", "x"):
        assert xml_module._BEARING_ID(root, v=value) == _NAIVE_BEARING_ID(root, v=value)
