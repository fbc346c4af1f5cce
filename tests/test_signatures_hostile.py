"""Hostile signed inputs (issue 14, item 6): each is refused with its reason, never an exception.

XML signature wrapping (the signed element moved under a new root, an unsigned copy beside or in
the signature), a signature over another element than the document used, certificate and key URLs
that must never be fetched (a local HTTP server counts every request), several signatures that
disagree, a PDF changed by an incremental update after signing, oversized certificate chains, RSA
keys under 2048 bits, SHA-1; and the path cache (``TrustStore.check``): repeated signers are served
from it, and a revocation or an expiry is still honoured at its date.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from joserfc import jws
from joserfc.jwk import RSAKey
from lxml import etree
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore
from signxml.signer import XMLSigner

from gateway.signatures import TrustStore, Verdict, verify
from gateway.signatures.pdf import MAX_SIGNATURE_BYTES
from gateway.signatures.trust import MAX_CERTIFICATES, SigningTime
from tests.pki import (
    BODY,
    DAY,
    DOSSIER,
    NOW,
    REVOKED_AT,
    SIGNING,
    Party,
    Pki,
    _cms_signer,
    blank_pdf,
    make_pki,
    pems,
    sign_jws,
    sign_pdf,
    sign_xml,
)

DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("trust"))


@dataclass
class Recorder:
    """A loopback HTTP server that answers 404 and remembers every path asked."""

    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found.hits.append(self.path)
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


def issue(pki: Pki, cn: str, *, key: Any = None, urls: str | None = None, issuer: Party | None = None,
          ca: bool = False) -> Party:
    """A certificate (RSA unless ``key`` says) from the test intermediate (or ``issuer``); ``urls``:
    a base URL for its CRL distribution point, OCSP responder and CA issuers, never to be contacted."""
    issuer = issuer or pki.intermediate
    key = key or rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - 30 * DAY).not_valid_after(NOW + 300 * DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(SIGNING, critical=True)
    if urls is not None:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(f"{urls}/crl/{cn}")], None, None, None)]), critical=False)
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(f"{urls}/ocsp/{cn}")),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(f"{urls}/ca/{cn}"))]), critical=False)
    return Party(key, builder.sign(issuer.key, hashes.SHA256()))


def _sha1_signed(pki: Pki, party: Party) -> Party:
    """``party``'s certificate signed again by the (EC) intermediate with ECDSA-SHA1, which
    `cryptography` no longer writes: the TBS rebuilt with asn1crypto."""
    cert = asn1_x509.Certificate.load(party.der)
    algorithm = asn1_x509.SignedDigestAlgorithm({"algorithm": "sha1_ecdsa"})
    tbs = cert["tbs_certificate"]
    tbs["signature"] = algorithm
    value = pki.intermediate.key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA1()))  # noqa: S303
    resigned = asn1_x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": algorithm,
                                      "signature_value": value})
    return Party(party.key, x509.load_der_x509_certificate(resigned.dump()))


def _xml(pki: Pki, body: bytes) -> Verdict:
    return verify(body, "application/xml", trust=pki.trust)


def _sign(pki: Pki, party: Party, body: bytes, *, algorithm: str = "rsa-sha256", digest: str = "sha256",
          reference_uri: str | list[str] | None = None) -> Any:
    """signxml's enveloped signature of ``body``, as an element (RSA, SHA-256 unless told)."""
    signer = XMLSigner(signature_algorithm=algorithm, digest_algorithm=digest)
    chain = [p.cert.public_bytes(encoding=_PEM).decode() for p in (party, pki.intermediate)]
    return signer.sign(etree.fromstring(body), key=party.pem_key, cert=chain, reference_uri=reference_uri)


_PEM = Encoding.PEM


# --- XML signature wrapping -----------------------------------------------------------------------

def test_wrapping_the_signed_element_under_a_new_root_is_refused(pki: Pki) -> None:
    """The signed dossier (signed by its Id) moved inside a forged one, the signature moved up to the
    new root: the signature no longer covers the document the gateway would use."""
    signed = XMLSigner(signature_algorithm="rsa-sha256").sign(
        etree.fromstring(DOSSIER), key=pki.signer.pem_key, cert=pems(pki, pki.signer), reference_uri="#hs1")
    signature = signed.find(f"{{{DS}}}Signature")
    signed.remove(signature)
    forged = etree.fromstring(b"<HoSo Id='gia'><MaHoSo>H60.23-20261121-0666666</MaHoSo><Goc/></HoSo>")
    forged.find("Goc").append(signed)
    forged.append(signature)
    verdict = _xml(pki, etree.tostring(forged))
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message
    assert "not the whole document" in verdict.message


def test_wrapping_with_the_same_id_twice_is_refused(pki: Pki) -> None:
    """A forged root takes the signed element's Id and keeps the original inside: two elements with
    one Id, so which one the reference means is ambiguous: refused, never verified against either."""
    signed = XMLSigner(signature_algorithm="rsa-sha256").sign(
        etree.fromstring(DOSSIER), key=pki.signer.pem_key, cert=pems(pki, pki.signer), reference_uri="#hs1")
    signature = signed.find(f"{{{DS}}}Signature")
    signed.remove(signature)
    forged = etree.fromstring(b"<HoSo Id='hs1'><MaHoSo>H60.23-20261121-0666666</MaHoSo><Goc/></HoSo>")
    forged.find("Goc").append(signed)
    forged.append(signature)
    verdict = _xml(pki, etree.tostring(forged))
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message
    assert "hs1" in verdict.message


def test_an_unsigned_copy_inside_the_signature_is_refused(pki: Pki) -> None:
    """The classic wrapping: the original signed content hidden in a ds:Object of the signature, a
    forged dossier with the same Id as the root. The reference then points into the signature."""
    signed = XMLSigner(signature_algorithm="rsa-sha256").sign(
        etree.fromstring(DOSSIER), key=pki.signer.pem_key, cert=pems(pki, pki.signer), reference_uri="#hs1")
    signature = signed.find(f"{{{DS}}}Signature")
    signed.remove(signature)
    holder = etree.SubElement(signature, f"{{{DS}}}Object")
    holder.append(signed)
    forged = etree.fromstring(b"<HoSo Id='hs1'><MaHoSo>H60.23-20261121-0666666</MaHoSo></HoSo>")
    forged.append(signature)
    verdict = _xml(pki, etree.tostring(forged))
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message


def test_a_second_unsigned_copy_beside_the_signed_dossier_is_refused(pki: Pki) -> None:
    """The whole signed document wrapped with an unsigned twin next to it: the signature is no
    longer the root's child, and a reader taking the first dossier would read the forged one."""
    signed = etree.fromstring(sign_xml(pki, pki.signer))
    wrapper = etree.fromstring(b"<Goi><HoSo><MaHoSo>H60.23-20261121-0666666</MaHoSo></HoSo></Goi>")
    wrapper.append(signed)
    verdict = _xml(pki, etree.tostring(wrapper))
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message


def test_a_signature_over_another_element_than_the_document_is_refused(pki: Pki) -> None:
    """A signature whose one reference covers a child element, not the root the gateway passes on."""
    body = b"<Goi><HoSo Id='hs1'><MaHoSo>1</MaHoSo></HoSo><KetQua>cap phep</KetQua></Goi>"
    signed = _sign(pki, pki.signer, body, reference_uri="#hs1")
    verdict = _xml(pki, etree.tostring(signed))
    assert verdict.reason == "unsupported" and "not the whole document" in verdict.message


def test_extra_references_beside_the_document_are_refused(pki: Pki) -> None:
    """Two data references (the document and one of its elements): exactly one is accepted."""
    body = b"<HoSo Id='hs1'><MaHoSo Id='ma'>1</MaHoSo></HoSo>"
    signed = _sign(pki, pki.signer, body, reference_uri=["#hs1", "#ma"])
    verdict = _xml(pki, etree.tostring(signed))
    assert verdict.reason == "unsupported" and "2 data references" in verdict.message


# --- nothing is ever fetched --------------------------------------------------------------------

def test_key_and_certificate_urls_are_never_fetched(pki: Pki, recorder: Recorder) -> None:
    """A ds:RetrievalMethod, a JWS x5u/jku, and certificates naming a CRL distribution point, an OCSP
    responder and CA issuers on a live local server: refused or verified offline, zero requests."""
    before = list(recorder.hits)
    # XML: the certificate only by a URL.
    signed = etree.fromstring(sign_xml(pki, pki.signer))
    key_info = signed.find(f"{{{DS}}}Signature/{{{DS}}}KeyInfo")
    for child in list(key_info):
        key_info.remove(child)
    etree.SubElement(key_info, f"{{{DS}}}RetrievalMethod", URI=f"{recorder.url}/keyinfo",
                     Type="http://www.w3.org/2000/09/xmldsig#rawX509Certificate")
    verdict = _xml(pki, etree.tostring(signed))
    assert verdict.reason == "unsupported" and "KeyInfo" in verdict.message
    # JWS: x5u and jku, no x5c.
    for header in ("x5u", "jku"):
        head = base64.urlsafe_b64encode(
            f'{{"alg":"RS256","{header}":"{recorder.url}/{header}"}}'.encode()).rstrip(b"=")
        got = verify(BODY, "application/json", trust=pki.trust, detached=head + b"..c2lnbmF0dXJl")
        assert (got.reason, got.valid) == ("unsupported", False), got.message
    # Certificates pointing at the server: verified from the files on record, fetched from nowhere.
    pointing = issue(pki, "Tro Ve May Chu", urls=recorder.url)
    assert _xml(pki, sign_xml(pki, pointing)).reason == "ok"
    assert verify(BODY, "application/json", trust=pki.trust,
                  detached=sign_jws(pki, pointing, detached=True)).reason == "ok"
    assert verify(sign_pdf(pki, pointing), "application/pdf", trust=pki.trust).reason == "ok"
    # The intermediate left out: CA issuers would name where to get it; the path is not built.
    alone = XMLSigner(signature_algorithm="rsa-sha256").sign(
        etree.fromstring(DOSSIER), key=pointing.pem_key,
        cert=[pointing.cert.public_bytes(encoding=_PEM).decode()])
    assert _xml(pki, etree.tostring(alone)).reason == "untrusted"
    assert recorder.hits == before, f"the verifier contacted {recorder.hits[len(before):]}"


# --- several signatures --------------------------------------------------------------------------

def _countersign_pdf(pki: Pki, signed: bytes, party: Party, name: str = "ChuKy2") -> bytes:
    meta = signers.PdfSignatureMetadata(field_name=name, subfilter=fields.SigSeedSubFilter.PADES)
    out = signers.PdfSigner(meta, signer=_cms_signer(pki, party)).sign_pdf(
        IncrementalPdfFileWriter(BytesIO(signed)))
    return bytes(out.getvalue())


def test_several_signatures_each_count(pki: Pki) -> None:
    """A PDF signed twice: ok when both hold; when the second signer is revoked or a stranger the
    verdict is that signature's refusal; several XML signatures are refused as such."""
    first = sign_pdf(pki, pki.signer)
    both = _countersign_pdf(pki, first, pki.ec_signer)
    assert verify(both, "application/pdf", trust=pki.trust).reason == "ok"
    for reason, party in (("revoked", pki.revoked), ("untrusted", pki.stranger)):
        verdict = verify(_countersign_pdf(pki, first, party), "application/pdf", trust=pki.trust)
        assert (verdict.reason, verdict.valid) == (reason, False), verdict.message
    twice = etree.fromstring(sign_xml(pki, pki.signer))
    other = etree.fromstring(sign_xml(pki, pki.stranger))
    twice.append(other.find(f"{{{DS}}}Signature"))
    verdict = _xml(pki, etree.tostring(twice))
    assert verdict.reason == "unsupported" and "2 signatures" in verdict.message


# --- PDF: changed after signing -------------------------------------------------------------------

def test_a_pdf_changed_by_an_incremental_update_after_signing_is_refused(pki: Pki) -> None:
    """An incremental update appended after the signature that changes the page (its content and
    size): the signed bytes are intact, but the document shown is not what was signed."""
    signed = sign_pdf(pki, pki.signer)
    writer = IncrementalPdfFileWriter(BytesIO(signed))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    page["/MediaBox"] = generic.ArrayObject([generic.NumberObject(n)  # type: ignore[no-untyped-call]
                                             for n in (0, 0, 842, 595)])
    content = generic.StreamObject(stream_data=b"BT /F1 24 Tf 72 720 Td (Da huy) Tj ET")
    page["/Contents"] = writer.add_object(content)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    changed = out.getvalue()
    assert changed.startswith(signed)
    verdict = verify(changed, "application/pdf", trust=pki.trust)
    assert (verdict.reason, verdict.valid) == ("bad-signature", False), verdict.message
    assert "changed after signing" in verdict.message


# --- oversized chains, weak keys, SHA-1 ---------------------------------------------------------------

def test_an_oversized_certificate_chain_is_refused(pki: Pki) -> None:
    """More certificates than any real chain needs, in X509Data, x5c or the CMS set: refused before
    any path is built."""
    many = [pki.intermediate] * (MAX_CERTIFICATES + 4)
    xml = XMLSigner(signature_algorithm="rsa-sha256").sign(
        etree.fromstring(DOSSIER), key=pki.signer.pem_key,
        cert=[p.cert.public_bytes(encoding=_PEM).decode() for p in (pki.signer, *many)])
    verdict = _xml(pki, etree.tostring(xml))
    assert verdict.reason == "unsupported" and "certificates" in verdict.message, verdict.message
    head = {"alg": "RS256", "x5c": [base64.b64encode(p.der).decode() for p in (pki.signer, *many)]}
    class Big(jws.JWSRegistry):
        max_header_length = 1_000_000

    token = jws.serialize_compact(head, BODY, RSAKey.import_key(pki.signer.pem_key),
                                  registry=Big(algorithms=["RS256"])).encode()
    head_b64, _, signature = token.split(b".")
    got = verify(BODY, "application/json", trust=pki.trust, detached=head_b64 + b".." + signature)
    assert (got.reason, got.valid) == ("unsupported", False), got.message
    meta = signers.PdfSignatureMetadata(field_name="ChuKy1")
    cas = [issue(pki, f"CA {n}", key=ec.generate_private_key(ec.SECP256R1()), ca=True).asn1
           for n in range(MAX_CERTIFICATES + 4)]
    cms_signer = signers.SimpleSigner(signing_cert=pki.signer.asn1, signing_key=pki.signer.asn1_key,
                                      cert_registry=SimpleCertificateStore.from_certs(cas))  # type: ignore[no-untyped-call]
    pdf = signers.PdfSigner(meta, signer=cms_signer).sign_pdf(IncrementalPdfFileWriter(BytesIO(blank_pdf())))
    got = verify(bytes(pdf.getvalue()), "application/pdf", trust=pki.trust)
    assert got.reason == "unsupported" and "certificates" in got.message, got.message


def _reserved_pdf(pki: Pki, reserved: int) -> bytes:
    """A valid PAdES signature in a /Contents of ``reserved`` bytes (pyHanko counts hex characters)."""
    meta = signers.PdfSignatureMetadata(field_name="ChuKy1", subfilter=fields.SigSeedSubFilter.PADES)
    out = signers.PdfSigner(meta, signer=_cms_signer(pki, pki.signer)).sign_pdf(
        IncrementalPdfFileWriter(BytesIO(blank_pdf())), bytes_reserved=2 * reserved)
    return bytes(out.getvalue())


def test_an_oversized_pdf_signature_is_refused_before_it_is_read(pki: Pki) -> None:
    """pyHanko reads /Contents one hex character at a time: a signature over MAX_SIGNATURE_BYTES
    (a valid one, padded) is refused unread; a generous 64 KiB one is verified; an unterminated
    hex string of a megabyte is refused the same way."""
    verdict = verify(_reserved_pdf(pki, MAX_SIGNATURE_BYTES + 1024), "application/pdf", trust=pki.trust)
    assert verdict.reason == "unsupported" and "/Contents" in verdict.message, verdict.message
    assert verify(_reserved_pdf(pki, 65_536), "application/pdf", trust=pki.trust).reason == "ok"
    endless = b"%PDF-1.7\n1 0 obj\n<< /Type /Sig /Contents <" + b"0" * 1_048_576
    assert verify(endless, "application/pdf", trust=pki.trust).reason == "unsupported"


@pytest.mark.filterwarnings("ignore:Key size should be")  # joserfc, signing with the weak key
def test_rsa_keys_under_2048_bits_are_refused(pki: Pki) -> None:
    """A signer's 1024-bit RSA key, in every format, and a CA's: unsupported, even though certified."""
    weak = issue(pki, "Khóa Yếu", key=rsa.generate_private_key(65537, 1024))  # noqa: S505 - the point
    detached = sign_jws(pki, weak, detached=True)
    for verdict in (_xml(pki, sign_xml(pki, weak)),
                    verify(BODY, "application/json", trust=pki.trust, detached=detached),
                    verify(sign_pdf(pki, weak), "application/pdf", trust=pki.trust)):
        assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message
        assert "1024" in verdict.message or "algorithm" in verdict.message
    weak_ca = issue(pki, "CA Khóa Yếu", key=rsa.generate_private_key(65537, 1024), ca=True)  # noqa: S505
    under_weak = issue(pki, "Dưới CA Yếu", issuer=weak_ca)
    body = XMLSigner(signature_algorithm="rsa-sha256").sign(
        etree.fromstring(DOSSIER), key=under_weak.pem_key,
        cert=[p.cert.public_bytes(encoding=_PEM).decode() for p in (under_weak, weak_ca, pki.intermediate)])
    verdict = _xml(pki, etree.tostring(body))
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message


def test_sha1_is_refused(pki: Pki) -> None:
    """SHA-1 as the XML signature or digest method, as a CMS digest, or in a certificate's signature."""
    # signxml will not even sign with SHA-1: the methods named in a SHA-256 signature are changed.
    for method, sha1 in (("SignatureMethod", f"{DS}rsa-sha1"), ("DigestMethod", f"{DS}sha1")):
        signed = _sign(pki, pki.signer, DOSSIER)
        signed.find(f".//{{{DS}}}{method}").set("Algorithm", sha1)
        verdict = _xml(pki, etree.tostring(signed))
        assert (verdict.reason, verdict.valid) == ("unsupported", False), (method, verdict.message)
        assert "SHA-1" in verdict.message
    meta = signers.PdfSignatureMetadata(field_name="ChuKy1", md_algorithm="sha1")
    pdf = signers.PdfSigner(meta, signer=_cms_signer(pki, pki.signer)).sign_pdf(
        IncrementalPdfFileWriter(BytesIO(blank_pdf())))
    verdict = verify(bytes(pdf.getvalue()), "application/pdf", trust=pki.trust)
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message
    verdict = _xml(pki, sign_xml(pki, _sha1_signed(pki, issue(pki, "Chứng Thư SHA1"))))
    assert (verdict.reason, verdict.valid) == ("unsupported", False), verdict.message


# --- the path cache --------------------------------------------------------------------------------

def _fresh(pki: Pki, **changes: Any) -> TrustStore:
    return replace(pki.trust, **changes)


def test_repeated_signers_are_answered_from_the_cache(pki: Pki) -> None:
    """The second verification of the same signer at the same hour builds no path; the verdicts agree."""
    # The cache's key holds the signing time's hour: an XML signature without XAdES is judged at
    # the verification time, so keep the whole test inside one hour, and sign the PDF now (not at
    # tests/pki.py's NOW, taken when the module was imported, maybe an hour ago).
    into_hour = datetime.now(UTC).minute * 60 + datetime.now(UTC).second
    if into_hour > 3600 - 30:
        time.sleep(3600 - into_hour + 1)
    trust = _fresh(pki)
    body = sign_xml(pki, pki.signer)
    first = verify(body, "application/xml", trust=trust)
    info = trust.cache_info()
    assert (info.hits, info.misses, info.size) == (0, 1, 1)
    second = verify(body, "application/xml", trust=trust)
    assert trust.cache_info().hits == 1 and first.reason == second.reason == "ok"
    verify(sign_pdf(pki, pki.signer, at=datetime.now(UTC)), "application/pdf", trust=trust)  # same signer
    assert trust.cache_info().hits == 2
    refused = [verify(sign_xml(pki, pki.revoked), "application/xml", trust=trust).reason for _ in range(2)]
    assert refused == ["revoked", "revoked"] and trust.cache_info().hits == 3


def test_the_cache_honours_revocation_and_expiry_at_their_dates(pki: Pki) -> None:
    """An answer is reused only between the events around its moment: the revoked signer is ok just
    before its revocation date and revoked just after, in the same hour bucket; the expired signer
    likewise around its notAfter."""
    trust = _fresh(pki)

    def check(party: Party, moment: datetime) -> str | None:
        at = SigningTime(moment, "claimed")
        problem = asyncio.run(trust.check(party.asn1, [pki.intermediate.asn1], at))
        return None if problem is None else problem.reason

    # Two seconds before the revocation (answered, cached), two seconds after, and before again.
    assert check(pki.revoked, REVOKED_AT - _seconds(2)) is None
    assert check(pki.revoked, REVOKED_AT + _seconds(2)) == "revoked"
    assert check(pki.revoked, REVOKED_AT - _seconds(2)) is None
    end = pki.expired.cert.not_valid_after_utc
    assert check(pki.expired, end - _seconds(5)) is None
    assert check(pki.expired, end + _seconds(5)) == "expired"
    assert trust.cache_info().size >= 2


def test_the_cache_is_bounded_and_each_store_has_its_own(pki: Pki) -> None:
    """At most cache_size answers; a store made with replace() (another revocation mode, say) starts
    empty; cache_size 0 keeps nothing."""
    trust = _fresh(pki, cache_size=2)
    for party in (pki.signer, pki.ec_signer, pki.expired, pki.revoked):
        verify(BODY, "application/json", trust=trust, detached=sign_jws(pki, party, detached=True))
    assert trust.cache_info().size == 2
    other = replace(trust, revocation_mode="soft-fail")
    assert other.cache_info().size == 0
    none = _fresh(pki, cache_size=0)
    verify(sign_xml(pki, pki.signer), "application/xml", trust=none)
    verify(sign_xml(pki, pki.signer), "application/xml", trust=none)
    assert none.cache_info().hits == 0 and none.cache_info().size == 0


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


def test_hostile_files_never_raise(pki: Pki, tmp_path: Path) -> None:
    """Garbage in every slot (a broken KeyInfo certificate, a truncated PDF signature, an x5c entry
    that is not base64): a verdict each time, never an exception."""
    signed = etree.fromstring(sign_xml(pki, pki.signer))
    cert = signed.find(f".//{{{DS}}}X509Certificate")
    cert.text = base64.b64encode(b"\x30\x82\xff\xff" + b"\x00" * 40).decode()
    assert not _xml(pki, etree.tostring(signed)).valid
    pdf = sign_pdf(pki, pki.signer)
    start = pdf.index(b"/Contents <") + len(b"/Contents <")
    broken = pdf[:start] + b"0" * 200 + pdf[start + 200:]
    assert not verify(broken, "application/pdf", trust=pki.trust).valid
    head = base64.urlsafe_b64encode(b'{"alg":"RS256","x5c":["%%%"]}').rstrip(b"=")
    verdict = verify(BODY, "application/json", trust=pki.trust, detached=head + b"..c2ln")
    assert verdict.reason == "unsupported"
