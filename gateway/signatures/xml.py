"""XML-DSig enveloped signatures and XAdES-BES on XML dossiers and documents (signxml).

What is accepted, for now: one ``ds:Signature``, a child of the document's root (in an edXML
package or status message, QCVN 102:2016, a child of ``edXML:edXMLHeader`` instead: the standard's
place for it; in a SOAP envelope, a block of its ``Header``), with exactly one data reference that
covers the whole document (``URI=""`` or ``#`` and the root's Id, borne by no other element:
signature wrapping), at most ``trust.MAX_CERTIFICATES`` certificates, and the signer's certificate
in ``ds:KeyInfo/ds:X509Data`` (a certificate named only by issuer and serial, or by a URL, is not
looked up: ``unsupported``). Anything else is ``unsupported`` rather than
verified in part: a signature over one element of a document says nothing about the rest. For
edXML this means the signature in the header must cover the whole document, attachments included
(they are outside the envelope, and the manifest carries no digests of them): a signature over the
envelope or the header alone is ``unsupported``.

The document is parsed by ``gateway/xml/safe.py`` (no DTD, no entities, no network, bounded), then
signxml checks the signature with the certificate from KeyInfo pinned (``x509_cert``), the XAdES
SigningCertificate digest against it, and SHA-1 refused (its default configuration); the path,
revocation and key usage are ``trust.py``'s. The signing time is XAdES ``SigningTime`` when present
(``xades:SignatureTimeStamp`` is not read yet), else now.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.exceptions import (
    InvalidCertificate,
    InvalidDigest,
    InvalidInput,
    InvalidSignature,
    SignXMLException,
)
from signxml.verifier import SignatureConfiguration, XMLVerifier
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from gateway.bounds import SIGNED_MOST
from gateway.signatures.trust import (
    Problem,
    SigningTime,
    TrustStore,
    identity,
    problem_from_ades,
    too_many_certificates,
)
from gateway.signatures.verdict import Format, Verdict
from gateway.xml import safe

__all__ = ["LIMITS", "verify_xml"]

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
_NS = {"ds": DS, "xades": XADES}
_SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
EDXML = "http://www.mic.gov.vn/TBT/QCVN_102_2016"  # gateway/edxml's namespace (not imported: xmlschema)
_EDXML_HEADER = f"{{{EDXML}}}edXMLEnvelope/{{{EDXML}}}edXMLHeader/"
# A signed SOAP request: the whole envelope signed (URI=""), its ds:Signature a block of the
# envelope's Header (the place SOAP-DSIG gives it), so the Body stays what the operation's schema
# reads. A WS-Security signature over the Body alone by wsu:Id is a part of the message: refused.
_SOAP_ENVELOPES = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")
_WEAK = re.compile(r"(sha1|md5)$", re.IGNORECASE)
# The elements bearing an Id: the value tested first, the name after (a third of the time of
# ``//*[@Id=$v or @ID=$v or @id=$v]``, which compares three attributes of every element).
_BEARING_ID = etree.XPath("count(//*[@*[.=$v][name()='Id' or name()='ID' or name()='id']])")
# Dossiers carry attachments inline (base64): larger than a SOAP request, still bounded.
LIMITS = safe.Limits(max_bytes=SIGNED_MOST, max_depth=64, max_elements=200_000)


async def verify_xml(body: bytes, trust: TrustStore) -> Verdict:
    """The verdict on the enveloped signature of an XML document."""
    try:
        root = safe.parse(body, LIMITS)
    except safe.XmlRefused as exc:
        return Verdict("xmldsig", False, "unsupported", f"the XML document was refused: {exc}")
    signatures = list(root.iter(f"{{{DS}}}Signature"))
    if not signatures:
        return Verdict("xmldsig", False, "no-signature", "the XML document has no ds:Signature")
    signature = signatures[0]
    fmt: Format = "xades" if signature.find(".//xades:SignedProperties", _NS) is not None else "xmldsig"
    refused = _shape_problem(root, signatures)
    if refused is not None:
        return Verdict(fmt, False, "unsupported", refused)
    nodes = signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS)
    oversized = too_many_certificates(len(nodes))
    if oversized is not None:
        return Verdict(fmt, False, "unsupported", oversized)
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(node.text or "")) for node in nodes]
    except ValueError as exc:
        return Verdict(fmt, False, "bad-signature", f"a certificate in ds:KeyInfo is unreadable: {exc}")
    if not chain:
        return Verdict(fmt, False, "unsupported", "no certificate in ds:KeyInfo/ds:X509Data/X509Certificate")
    signer = _signer(chain)
    claimed = _signing_time(signature)
    at = trust.signing_time(claimed=claimed)
    evidence = _evidence(signer, signature, at)
    try:
        digest = _check_signature(root, fmt, signer, at, claimed)
    except InvalidCertificate as exc:  # signxml's own validity check at the signing time
        found = problem_from_ades(None, _asn1(signer), at.moment or datetime.now(UTC))
        return Verdict(fmt, False, found.reason, f"{found.message}: {exc}", **evidence)
    except InvalidDigest as exc:
        return Verdict(fmt, False, "digest-mismatch", f"the signed content was changed: {exc}", **evidence)
    except InvalidInput as exc:
        return Verdict(fmt, False, "unsupported", f"the signature is not one the gateway accepts: {exc}",
                       **evidence)
    except (SignXMLException, ValueError) as exc:
        return Verdict(fmt, False, "bad-signature", f"the signature does not verify: {exc}", **evidence)
    others = [_asn1(cert) for cert in chain if cert is not signer]
    found_problem: Problem | None = await trust.check(_asn1(signer), others, at)
    if found_problem is not None:
        return Verdict(fmt, False, found_problem.reason, found_problem.message, digest=digest, **evidence)
    return Verdict(fmt, True, "ok", "the signature is valid", digest=digest, **evidence)


def _shape_problem(root: Any, signatures: list[Any]) -> str | None:
    """What makes this signature one the gateway does not verify yet, or None."""
    if len(signatures) > 1:
        return f"{len(signatures)} signatures in one document: only one is verified for now"
    signature = signatures[0]
    if _is_edxml(root):
        header = root.find(_EDXML_HEADER.rstrip("/"))
        if header is None or signature.getparent() is not header:
            return ("the ds:Signature of an edXML document is not a child of edXML:edXMLHeader, where "
                    "QCVN 102:2016 puts it")
    elif _soap_header(root) is not None:
        if signature.getparent() is not _soap_header(root):
            return ("the ds:Signature of a SOAP message is not a block of its Header: sign the whole "
                    "envelope and put the signature in soap:Header")
    elif signature.getparent() is not root:
        return "the ds:Signature is not a child of the document's root (only enveloped signatures are)"
    # Before any cryptography: a SHA-1 digest would otherwise pass as far as a good signature.
    weak = sorted({str(method.get("Algorithm", "")) for method in signature.iter(
        f"{{{DS}}}SignatureMethod", f"{{{DS}}}DigestMethod")
        if _WEAK.search(str(method.get("Algorithm", "")).rpartition("#")[2])})
    if weak:
        return f"SHA-1 and MD5 are not accepted ({', '.join(weak)})"
    data = [ref for ref in signature.findall("ds:SignedInfo/ds:Reference", _NS)
            if ref.get("Type") != _SIGNED_PROPERTIES_TYPE and not _inside(signature, ref.get("URI"))]
    if len(data) != 1:
        return (f"the signature has {len(data)} data references; exactly one, over the whole document, "
                "is needed")
    uri = data[0].get("URI")
    if uri and uri.startswith("#"):
        # Signature wrapping hides the signed element under a forged one bearing the same Id.
        named = int(_BEARING_ID(root, v=uri[1:]))
        if named > 1:
            return f"{named} elements bear the Id {uri[1:]!r} the signature refers to"
    root_ids = {f"#{root.get(name)}" for name in ("Id", "ID", "id") if root.get(name)}
    if uri != "" and uri not in root_ids:
        if _is_edxml(root):
            return (f"the signature covers {uri!r}, not the whole edXML document: the attachments "
                    "are outside the envelope, so only a reference to the whole document (URI=\"\") "
                    "signs them")
        return f"the signature covers {uri!r}, not the whole document"
    return None


def _is_edxml(root: Any) -> bool:
    return bool(root.tag == f"{{{EDXML}}}edXML")


def _soap_header(root: Any) -> Any:
    """A SOAP envelope's Header element, or None (not an envelope, or no Header)."""
    namespace = etree.QName(root).namespace
    if namespace not in _SOAP_ENVELOPES or etree.QName(root).localname != "Envelope":
        return None
    return root.find(f"{{{namespace}}}Header")


def _location(root: Any) -> str:
    """Where signxml is to find the signature: the root's child, the edXML header's, or the SOAP
    Header's."""
    if _is_edxml(root):
        return f"./{_EDXML_HEADER}"
    header = _soap_header(root)
    return f"./{header.tag}/" if header is not None else "./"


def _inside(signature: Any, uri: str | None) -> bool:
    """Whether a same-document reference points into the signature (KeyInfo, SignedProperties)."""
    if not uri or not uri.startswith("#"):
        return False
    target = uri[1:]
    return any(target in (node.get("Id"), node.get("ID"), node.get("id")) for node in signature.iter())


def _check_signature(root: Any, fmt: Format, signer: x509.Certificate, at: SigningTime,
                     claimed: datetime | None) -> str:
    """signxml's verdict on the signature; the SHA-256 of the signed data. Raises signxml's errors."""
    if fmt == "xades":
        results = XAdESVerifier().verify(root, x509_cert=signer, expect_config=XAdESSignatureConfiguration(
            location=_location(root), expect_references=True, verification_time=at.moment))
        properties = next(r.signed_properties for r in results if hasattr(r, "signed_properties"))
        if _signing_time_in(properties) != claimed:
            raise InvalidSignature("the SigningTime read is not the one signed")
        data = [r for r in results if not hasattr(r, "signed_properties")
                and r.signed_xml is not None and r.signed_xml.tag == root.tag]
        if len(data) != 1:
            raise InvalidInput("the signed document is not among the references")
        return hashlib.sha256(data[0].signed_data).hexdigest()
    result = XMLVerifier().verify(root, x509_cert=signer, expect_config=SignatureConfiguration(
        location=_location(root), expect_references=1, verification_time=at.moment))
    assert not isinstance(result, list)  # expect_references=1: one result
    return hashlib.sha256(result.signed_data).hexdigest()


def _signer(chain: list[x509.Certificate]) -> x509.Certificate:
    """The end-entity certificate: the one that issued none of the others (else the first)."""
    leaves = [cert for cert in chain
              if not any(other is not cert and other.issuer == cert.subject for other in chain)]
    return leaves[0] if len(leaves) == 1 else chain[0]


def _signing_time(signature: Any) -> datetime | None:
    properties = signature.find(".//xades:SignedProperties", _NS)
    return None if properties is None else _signing_time_in(properties)


def _signing_time_in(properties: Any) -> datetime | None:
    node = properties.find(".//xades:SigningTime", _NS)
    if node is None or not node.text:
        return None
    try:
        moment = datetime.fromisoformat(node.text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _evidence(signer: x509.Certificate, signature: Any, at: SigningTime) -> dict[str, Any]:
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", _NS)
    algorithm = None if method is None else str(method.get("Algorithm", "")).rpartition("#")[2] or None
    return {**identity(signer), "signing_time": at.moment or datetime.now(UTC),
            "time_source": at.source, "algorithm": algorithm}


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
