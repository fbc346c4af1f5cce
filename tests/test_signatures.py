"""Signature verification (gateway/signatures/): a real test PKI, real signatures in each format.

The PKI (tests/pki.py) is made once per module with `cryptography`: a root, an intermediate that
issues every signer and a CRL, signers with the right usage, the wrong usage, an expired and a
revoked one, a self-signed stranger, and a time-stamping authority (pyHanko's in-process TSA makes
RFC 3161 tokens).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import XMLSigner

from gateway.signatures import REASONS, TrustStore, Verdict, verify
from gateway.signatures.trust import TrustStoreError
from tests.pki import (
    BODY,
    DAY,
    DOSSIER,
    NOW,
    REVOKED_AT,
    Pki,
    blank_pdf,
    make_pki,
    pems,
    sign_cms,
    sign_jws,
    sign_pdf,
    sign_xades,
    sign_xml,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("trust"))


def _tamper_xml(signed: bytes) -> bytes:
    assert b"0000001" in signed
    return signed.replace(b"0000001", b"0000009")


# --- the verdict ------------------------------------------------------------------------------------

def test_loading_the_verifiers_prints_no_library_warning() -> None:
    """pyHanko's import of cryptography's DSA type warned on stderr before `lienthong check`,
    `serve` and the demo; the package silences that one warning, every other stays visible."""
    probe = ("import warnings; warnings.simplefilter('always'); import gateway.signatures; "
             "warnings.warn('still shown')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          check=True, cwd=Path(__file__).resolve().parent.parent)
    assert "DSA is deprecated" not in done.stderr
    assert "still shown" in done.stderr


def test_verdict_record_is_small_json_with_the_evidence() -> None:
    """as_record keeps the signer, time, algorithm, digest and reason, in camelCase, times in UTC."""
    verdict = Verdict("jws", True, "ok", "fine", subject="CN=A", serial="1f", issuer="CN=CA",
                      signing_time=datetime(2026, 11, 21, 9, tzinfo=UTC), time_source="claimed",
                      algorithm="ES256", digest="ab" * 32)
    record = verdict.as_record()
    assert json.loads(json.dumps(record)) == record
    assert record == {"format": "jws", "valid": True, "reason": "ok",
                      "signer": {"subject": "CN=A", "serial": "1f", "issuer": "CN=CA"},
                      "signingTime": "2026-11-21T09:00:00Z", "timeSource": "claimed", "algorithm": "ES256",
                      "digest": {"sha256": "ab" * 32}}


def test_verdict_refuses_a_reason_outside_the_set_or_disagreeing_with_valid() -> None:
    """Only the closed set of reasons, and valid exactly when the reason is ok."""
    with pytest.raises(ValueError, match="unknown reason"):
        Verdict("jws", False, "nope", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot have valid"):
        Verdict("jws", True, "revoked", "x")
    assert Verdict(None, False, "unsupported", "x").as_record()["signer"] is None


# --- the trust store ------------------------------------------------------------------------------

def test_trust_store_refuses_an_empty_or_unreadable_folder(tmp_path: Path) -> None:
    """An anchors folder without certificates, or a broken CRL, fails at load with the file named."""
    with pytest.raises(TrustStoreError, match="no CA certificate"):
        TrustStore.load(tmp_path)
    (tmp_path / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TrustStoreError, match=r"ca\.pem"):
        TrustStore.load(tmp_path)


def test_trust_store_reads_der_and_pem_bundles(pki: Pki, tmp_path: Path) -> None:
    """Anchors may be DER files or PEM bundles of several certificates."""
    (tmp_path / "root.der").write_bytes(pki.root.der)
    (tmp_path / "bundle.pem").write_bytes(b"".join(p.cert.public_bytes(serialization.Encoding.PEM)
                                                   for p in (pki.root, pki.intermediate)))
    assert len(TrustStore.load(tmp_path).anchors) == 3


# --- XML-DSig and XAdES -----------------------------------------------------------------------------

def _xml(pki: Pki, body: bytes, trust: TrustStore | None = None) -> Verdict:
    return verify(body, "application/xml; charset=utf-8", trust=trust or pki.trust)


def test_xmldsig_valid(pki: Pki) -> None:
    """An enveloped XML-DSig by a trusted signer is ok, with the signer and digest as evidence."""
    verdict = _xml(pki, sign_xml(pki, pki.signer))
    assert (verdict.format, verdict.reason, verdict.valid) == ("xmldsig", "ok", True), verdict.message
    assert verdict.subject is not None and "Nguyễn Văn An" in verdict.subject
    assert verdict.serial == format(pki.signer.cert.serial_number, "x")
    assert verdict.algorithm == "rsa-sha256" and verdict.digest is not None and len(verdict.digest) == 64
    assert verdict.time_source == "verification"


def test_xmldsig_failures(pki: Pki) -> None:
    """Tampered, untrusted, expired, revoked, wrong usage and unsigned each get their reason."""
    cases = {
        "digest-mismatch": _tamper_xml(sign_xml(pki, pki.signer)),
        "untrusted": sign_xml(pki, pki.stranger),
        "expired": sign_xml(pki, pki.expired),
        "revoked": sign_xml(pki, pki.revoked),
        "wrong-usage": sign_xml(pki, pki.wrong_usage),
        "no-signature": DOSSIER,
    }
    for reason, body in cases.items():
        verdict = _xml(pki, body)
        assert (verdict.reason, verdict.valid) == (reason, False), (reason, verdict.message)


def test_xmldsig_signature_value_changed_is_bad_signature(pki: Pki) -> None:
    """A changed SignatureValue (the digests intact) is bad-signature."""
    signed = etree.fromstring(sign_xml(pki, pki.ec_signer))
    value = signed.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[-1] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    assert _xml(pki, etree.tostring(signed)).reason == "bad-signature"


def test_xml_refusals_by_shape(pki: Pki) -> None:
    """A DTD, a signature over one element only, two signatures: refused as unsupported, not verified."""
    assert _xml(pki, b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>").reason == "unsupported"
    inner = etree.fromstring(b"<Goi><HoSo Id='a'>1</HoSo><Khac>2</Khac></Goi>")
    signed_inner = XMLSigner(signature_algorithm="ecdsa-sha256").sign(
        inner, key=pki.ec_signer.pem_key, cert=pems(pki, pki.ec_signer), reference_uri="#a")
    verdict = _xml(pki, etree.tostring(signed_inner))
    assert verdict.reason == "unsupported" and "not the whole document" in verdict.message
    twice = etree.fromstring(sign_xml(pki, pki.ec_signer))
    twice.append(etree.fromstring(etree.tostring(twice[-1])))
    assert _xml(pki, etree.tostring(twice)).reason == "unsupported"


def test_xades_valid_and_tampered(pki: Pki) -> None:
    """XAdES-BES by a trusted signer is ok with its SigningTime; a changed dossier is digest-mismatch."""
    signed = sign_xades(pki, pki.signer, at=NOW - DAY)
    verdict = _xml(pki, signed)
    assert (verdict.format, verdict.reason) == ("xades", "ok"), verdict.message
    assert (verdict.signing_time, verdict.time_source) == (NOW - DAY, "claimed")
    assert _xml(pki, _tamper_xml(signed)).reason == "digest-mismatch"


def test_xades_signing_time_rule(pki: Pki) -> None:
    """Validity is judged at the signed SigningTime: expired now but valid then passes, unless the
    store trusts no claimed time; signed after expiry is expired; revoked after signing passes."""
    then = NOW - 700 * DAY  # inside the expired certificate's validity
    assert _xml(pki, sign_xades(pki, pki.expired, at=then)).reason == "ok"
    assert _xml(pki, sign_xades(pki, pki.expired, at=then), pki.strict).reason == "expired"
    assert _xml(pki, sign_xades(pki, pki.expired, at=NOW)).reason == "expired"
    assert _xml(pki, sign_xades(pki, pki.revoked, at=REVOKED_AT - 10 * DAY)).reason == "ok"
    assert _xml(pki, sign_xades(pki, pki.revoked, at=REVOKED_AT + DAY)).reason == "revoked"
    assert _xml(pki, sign_xades(pki, pki.signer, at=NOW - 400 * DAY)).reason == "not-yet-valid"


def test_xades_failures(pki: Pki) -> None:
    """XAdES: untrusted, wrong usage."""
    assert _xml(pki, sign_xades(pki, pki.stranger)).reason == "untrusted"
    assert _xml(pki, sign_xades(pki, pki.wrong_usage)).reason == "wrong-usage"


# --- PDF: PAdES and CMS ---------------------------------------------------------------------------

def _pdf(pki: Pki, body: bytes, trust: TrustStore | None = None) -> Verdict:
    return verify(body, "application/pdf", trust=trust or pki.trust)


def test_pades_valid(pki: Pki) -> None:
    """A PAdES signature by a trusted signer is ok; the digest is that of the signed byte ranges."""
    verdict = _pdf(pki, sign_pdf(pki, pki.signer))
    assert (verdict.format, verdict.reason) == ("pades", "ok"), verdict.message
    assert verdict.issuer is not None and "Test Signing CA" in verdict.issuer
    assert verdict.time_source == "claimed"
    legacy = _pdf(pki, sign_pdf(pki, pki.ec_signer, pades=False))
    assert (legacy.format, legacy.reason) == ("cms", "ok"), legacy.message


def test_pades_failures(pki: Pki) -> None:
    """Tampered signed bytes, untrusted, expired, revoked, wrong usage and an unsigned PDF."""
    signed = sign_pdf(pki, pki.signer)
    cases = {
        "digest-mismatch": signed.replace(b"595 842", b"595 843", 1),
        "untrusted": sign_pdf(pki, pki.stranger),
        "expired": sign_pdf(pki, pki.expired),
        "revoked": sign_pdf(pki, pki.revoked),
        "wrong-usage": sign_pdf(pki, pki.wrong_usage),
        "no-signature": blank_pdf(),
    }
    assert cases["digest-mismatch"] != signed
    for reason, body in cases.items():
        verdict = _pdf(pki, body)
        assert (verdict.reason, verdict.valid) == (reason, False), (reason, verdict.message)


def test_pades_signing_time_and_timestamp(pki: Pki) -> None:
    """The signer's /M time counts unless the store trusts no claim; an RFC 3161 timestamp always does."""
    then = NOW - 700 * DAY
    assert _pdf(pki, sign_pdf(pki, pki.expired, at=then)).reason == "ok"
    assert _pdf(pki, sign_pdf(pki, pki.expired, at=then), pki.strict).reason == "expired"
    stamped = _pdf(pki, sign_pdf(pki, pki.expired, at=then, stamped_at=then), pki.strict)
    assert (stamped.reason, stamped.time_source, stamped.signing_time) == ("ok", "timestamp", then), \
        stamped.message
    revoked_late = _pdf(pki, sign_pdf(pki, pki.revoked, stamped_at=NOW))
    assert revoked_late.reason == "revoked"


def test_pdf_unreadable_is_unsupported(pki: Pki) -> None:
    """Bytes that are not a PDF are refused, never an exception."""
    assert _pdf(pki, b"%PDF-1.7 garbage").reason in ("unsupported", "no-signature")
    assert verify(b"", "application/pdf", trust=pki.trust).valid is False


def test_cms_detached_over_bytes(pki: Pki) -> None:
    """A detached .p7s over a document: ok; the content changed: digest-mismatch; and each failure."""
    document = b"Quyet dinh so 123/QD-UBND" * 10
    verdict = verify(document, "application/octet-stream", trust=pki.trust,
                     detached=sign_cms(pki, pki.signer, document))
    assert (verdict.format, verdict.reason) == ("cms", "ok"), verdict.message
    assert verify(document + b".", "", trust=pki.trust,
                  detached=sign_cms(pki, pki.signer, document)).reason == "digest-mismatch"
    for reason, party in (("untrusted", pki.stranger), ("expired", pki.expired), ("revoked", pki.revoked),
                          ("wrong-usage", pki.wrong_usage)):
        got = verify(document, "", trust=pki.trust, detached=sign_cms(pki, party, document))
        assert got.reason == reason, (reason, got.message)
    then = NOW - 700 * DAY
    assert verify(document, "", trust=pki.trust,
                  detached=sign_cms(pki, pki.expired, document, at=then)).reason == "ok"


def test_cms_attached(pki: Pki) -> None:
    """A .p7m with the content inside is verified over that content."""
    signed = sign_cms(pki, pki.ec_signer, b"noi dung", detached=False)
    verdict = verify(signed, "application/pkcs7-mime", trust=pki.trust)
    assert (verdict.format, verdict.reason) == ("cms", "ok"), verdict.message
    assert verify(sign_cms(pki, pki.ec_signer, b"x"), "application/pkcs7-signature",
                  trust=pki.trust).reason == "bad-signature"


# --- JWS ----------------------------------------------------------------------------------------

def _json(pki: Pki, body: bytes, detached: bytes | None = None, trust: TrustStore | None = None) -> Verdict:
    return verify(body, "application/json", trust=trust or pki.trust, detached=detached)


def test_jws_compact_and_detached_valid(pki: Pki) -> None:
    """Compact with the body inside, detached (RFC 7515 F) and unencoded (RFC 7797): all ok."""
    compact = verify(sign_jws(pki, pki.signer), "application/jose", trust=pki.trust)
    assert (compact.format, compact.reason, compact.algorithm) == ("jws", "ok", "RS256"), compact.message
    detached = _json(pki, BODY, sign_jws(pki, pki.ec_signer, detached=True))
    assert detached.reason == "ok", detached.message
    unencoded = _json(pki, BODY, sign_jws(pki, pki.ec_signer, b64=False))
    assert unencoded.reason == "ok", unencoded.message
    assert compact.digest == detached.digest == unencoded.digest


def test_jws_failures(pki: Pki) -> None:
    """Changed body, untrusted, expired, revoked, wrong usage, no x5c, no signature."""
    cases = {
        "bad-signature": (BODY.replace(b"2", b"3"), sign_jws(pki, pki.signer, detached=True)),
        "untrusted": (BODY, sign_jws(pki, pki.stranger, detached=True)),
        "expired": (BODY, sign_jws(pki, pki.expired, detached=True)),
        "revoked": (BODY, sign_jws(pki, pki.revoked, detached=True)),
        "wrong-usage": (BODY, sign_jws(pki, pki.wrong_usage, detached=True)),
        "unsupported": (BODY, sign_jws(pki, pki.signer, detached=True, x5c=False)),
        "no-signature": (BODY, None),
    }
    for reason, (body, token) in cases.items():
        verdict = _json(pki, body, token)
        assert (verdict.reason, verdict.valid) == (reason, False), (reason, verdict.message)


def test_jws_signing_time_and_attached_payload(pki: Pki) -> None:
    """sigT is the claimed signing time; a JWS carrying its own payload beside a body is refused."""
    then = NOW - 700 * DAY
    assert _json(pki, BODY, sign_jws(pki, pki.expired, detached=True, at=then)).reason == "ok"
    strict = _json(pki, BODY, sign_jws(pki, pki.expired, detached=True, at=then), pki.strict)
    assert strict.reason == "expired"
    assert _json(pki, BODY, sign_jws(pki, pki.signer)).reason == "bad-signature"


def test_jws_refuses_symmetric_and_none(pki: Pki) -> None:
    """HS256 and none are not signatures by anyone: unsupported."""
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=")
    assert _json(pki, BODY, head + b"..c2ln").reason == "unsupported"
    head = base64.urlsafe_b64encode(b'{"alg":"HS256"}').rstrip(b"=")
    assert _json(pki, BODY, head + b"..c2ln").reason == "unsupported"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_breaks_the_jws(pki: Pki, data: st.DataObject) -> None:
    """Changing any one byte of a signed JSON body makes its detached JWS invalid."""
    token = _DETACHED.setdefault("token", sign_jws(pki, pki.ec_signer, detached=True))
    index = data.draw(st.integers(0, len(BODY) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != BODY[index]))
    changed = BODY[:index] + bytes([value]) + BODY[index + 1:]
    verdict = _json(pki, changed, token)
    assert not verdict.valid and verdict.reason == "bad-signature"


_DETACHED: dict[str, bytes] = {}


# --- dispatch ---------------------------------------------------------------------------------

def test_dispatch_by_content_type_and_content(pki: Pki) -> None:
    """Generic content types are recognised by their first bytes; unknown ones are unsupported."""
    xml = verify(sign_xml(pki, pki.ec_signer), "application/octet-stream", trust=pki.trust)
    assert (xml.format, xml.reason) == ("xmldsig", "ok")
    assert verify(sign_pdf(pki, pki.ec_signer), "", trust=pki.trust).reason == "ok"
    assert verify(sign_jws(pki, pki.ec_signer), "", trust=pki.trust).reason == "ok"
    unknown = verify(b"hello", "text/plain", trust=pki.trust)
    assert (unknown.format, unknown.reason) == (None, "unsupported")
    assert set(REASONS) >= {unknown.reason}


async def test_averify_inside_an_event_loop(pki: Pki) -> None:
    """averify is the same verdict for callers with a running loop."""
    from gateway.signatures import averify

    verdict = await averify(sign_xml(pki, pki.ec_signer), "text/xml", trust=pki.trust)
    assert verdict.reason == "ok", verdict.message


# --- where the intake step verifies ------------------------------------------------------------------

def test_a_large_body_is_verified_off_the_event_loop(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake step's check verifies a body of OFF_LOOP_BYTES or more in a worker thread (the
    event loop keeps serving), a small one on the loop; both verdicts are the library's."""
    import asyncio
    import threading

    import gateway.signatures as signatures
    from gateway.signed import OFF_LOOP_BYTES, check_of

    threads: list[int] = []
    real = signatures.verify

    def watched(*args: Any, **kwargs: Any) -> Verdict:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(signatures, "verify", watched)
    filler = "".join(f"<TaiLieu><Ma>TL-{n:05d}</Ma></TaiLieu>" for n in range(OFF_LOOP_BYTES // 20))
    large = sign_xml(pki, pki.signer, f"<HoSo Id='hs1'><MaHoSo>H60.23-20261121-0000001</MaHoSo>{filler}"
                                      "</HoSo>".encode())
    small = sign_xml(pki, pki.signer)
    assert len(large) >= OFF_LOOP_BYTES > len(small)
    check = check_of(pki.trust)

    async def both() -> tuple[Verdict, Verdict, int]:
        return (await check(large, "application/xml", None), await check(small, "application/xml", None),
                threading.get_ident())

    large_verdict, small_verdict, loop_thread = asyncio.run(both())
    assert (large_verdict.reason, small_verdict.reason) == ("ok", "ok"), large_verdict.message
    assert len(threads) == 1 and threads[0] != loop_thread  # the large one, in a worker thread
    tampered = large.replace(b"TL-00007", b"TL-00008")

    async def tampered_verdict() -> Verdict:
        return await check(tampered, "application/xml", None)

    assert asyncio.run(tampered_verdict()).reason == "digest-mismatch"
