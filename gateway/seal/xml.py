"""The enveloped XML seal: plain XML-DSig (not XAdES) by signxml, over the whole document.

One ``ds:Signature``, the root's last child, one reference ``URI=""`` with the enveloped-signature
transform, canonical XML 1.1 (signxml's default), SHA-256, and the seal certificate in
``ds:KeyInfo/ds:X509Data``: the shape ``gateway/signatures/xml.py`` verifies, so another Liên
Thông gateway can check it like any signed document. Plain XML-DSig rather than XAdES-BES: a seal
needs no signing-time claim (the audit record has the time), and skipping the signed properties
keeps it one reference to canonicalise and digest.
"""

from __future__ import annotations

from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.signer import XMLSigner

from gateway.seal.keys import SealKey
from gateway.xml import safe

__all__ = ["SOAP_ENVELOPES", "envelop"]

SOAP_ENVELOPES = frozenset({"http://schemas.xmlsoap.org/soap/envelope/",
                            "http://www.w3.org/2003/05/soap-envelope"})
# As large as the dossiers the gateway verifies (gateway/signatures/xml.py).
LIMITS = safe.Limits(max_bytes=16 * 1_048_576, max_depth=64, max_elements=200_000)
_METHODS = {"ES256": SignatureMethod.ECDSA_SHA256, "RS256": SignatureMethod.RSA_SHA256,
            "PS256": SignatureMethod.SHA256_RSA_MGF1}


def envelop(body: bytes, key: SealKey) -> bytes | None:
    """``body`` signed enveloped, or None when it cannot be (not readable XML, a SOAP envelope)."""
    assert key.private is not None and key.algorithm is not None
    try:
        root = safe.parse(body, LIMITS)
    except safe.XmlRefused:
        return None
    if etree.QName(root).namespace in SOAP_ENVELOPES:
        return None  # a signature after the Body is SOAP 1.1 only, and WS-Security is not done
    signer = XMLSigner(signature_algorithm=_METHODS[key.algorithm], digest_algorithm=DigestAlgorithm.SHA256)
    try:
        signed = signer.sign(root, key=key.private, cert=list(key.chain))
    except SignXMLException:
        return None
    declared = body.lstrip().startswith(b"<?xml")
    return bytes(etree.tostring(signed, encoding="UTF-8", xml_declaration=declared))
