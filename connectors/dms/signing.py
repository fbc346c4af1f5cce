"""Signing an edXML package or status message as a document-management system does (QCVN 102:2016):
an enveloped XML-DSig ``ds:Signature`` in ``edXML:edXMLHeader`` (after the TraceHeaderList) with one
reference over the whole document (``URI=""``, the enveloped-signature transform, exclusive C14N),
so the attachments, outside the envelope, are signed too. This is the shape the gateway verifies
(gateway/signatures/xml.py; docs/documents.md, "Signatures").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import Certificate
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import XMLSigner

from gateway.edxml.codec import DS, NS

__all__ = ["sign"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_blank_text=False)


def sign(body: bytes, key: Any, chain: Sequence[Certificate]) -> bytes:
    """``body`` (an edXML package or status) signed with ``key``; ``chain`` starts with the signer's
    certificate. A signature already in the header is replaced."""
    root = etree.fromstring(body, _PARSER)
    header = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    if header is None:
        raise ValueError("not an edXML document: no edXML:edXMLEnvelope/edXML:edXMLHeader")
    for old in header.findall(f"{{{DS}}}Signature"):
        header.remove(old)
    etree.SubElement(header, f"{{{DS}}}Signature", {"Id": "placeholder"}, nsmap={"ds": DS})
    algorithm = "rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa-sha256"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    certs = [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]
    signer = XMLSigner(method=SignatureConstructionMethod.enveloped, signature_algorithm=algorithm,
                       digest_algorithm="sha256", c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    signed = signer.sign(root, key=pem, cert=certs)
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
