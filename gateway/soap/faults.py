"""The SOAP face's own refusals, in X-Road's words, as ``gateway.errors`` classes.

Each is a ``ClientError`` whose ``code`` is an X-Road message protocol fault code, so the pipeline
audits it like any other refusal and the REST face could render it too::

    SoapClientError                    400
    ├── InvalidSoap                    Client.InvalidSoap        not XML, not a SOAP 1.1 envelope, a DTD,
    │                                                            a processing instruction
    ├── InvalidContentType             Client.InvalidContentType not text/xml or multipart/related (415);
    │                                                            a MIME part with no Content-Type, a SOAP
    │                                                            part that is not text/xml (400)
    ├── MimeParsingFailed              Client.MimeParsingFailed  a MIME part whose header is broken
    ├── MissingSoap                    Client.MissingSoap        a multipart message with no part at all
    ├── InvalidXml                     Client.InvalidXml         an identifier without a known objectType
    ├── MissingHeader                  Client.MissingHeader      /soap without a SOAP Header
    ├── MissingHeaderField             Client.MissingHeaderField client, service, id or protocolVersion
    ├── DuplicateHeaderField           Client.DuplicateHeaderField
    ├── InvalidProtocolVersion         Client.InvalidProtocolVersion  not 4.x
    ├── InvalidClientIdentifier        Client.InvalidClientIdentifier
    ├── InvalidServiceIdentifier       Client.InvalidServiceIdentifier
    ├── MissingBody                    Client.MissingBody
    ├── InvalidSoapBody                Client.InvalidBody        not exactly one element
    ├── ClientFault                    Client.{its faultcode}    a SOAP Fault sent as a request (X-Road
    │                                                            answers the client's own fault back)
    └── InconsistentHeaders            Client.InconsistentHeaders  body element vs service, path vs header

``PassedFault`` is an upstream's SOAP Fault on a pass-through: the SOAP face answers the upstream's
own envelope; the REST face its code, string and detail as problem+json.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import ClientError, UpstreamFault

__all__ = [
    "ClientFault", "DuplicateHeaderField", "InconsistentHeaders", "InvalidClientIdentifier",
    "InvalidContentType", "InvalidProtocolVersion", "InvalidServiceIdentifier", "InvalidSoap",
    "InvalidSoapBody", "InvalidXml", "MimeParsingFailed", "MissingBody", "MissingHeader",
    "MissingHeaderField", "MissingSoap", "PassedFault", "SoapClientError",
]


class SoapClientError(ClientError):
    title = "Invalid SOAP request"
    type_slug = "invalid-soap"


class InvalidSoap(SoapClientError):
    code = "Client.InvalidSoap"


class InvalidContentType(SoapClientError):
    status = 415
    code = "Client.InvalidContentType"
    type_slug = "unsupported-media-type"


class MimeParsingFailed(SoapClientError):
    code = "Client.MimeParsingFailed"


class MissingSoap(SoapClientError):
    code = "Client.MissingSoap"


class InvalidXml(SoapClientError):
    code = "Client.InvalidXml"


class MissingHeader(SoapClientError):
    code = "Client.MissingHeader"


class MissingHeaderField(SoapClientError):
    code = "Client.MissingHeaderField"


class DuplicateHeaderField(SoapClientError):
    code = "Client.DuplicateHeaderField"


class InvalidProtocolVersion(SoapClientError):
    code = "Client.InvalidProtocolVersion"


class InvalidClientIdentifier(SoapClientError):
    code = "Client.InvalidClientIdentifier"


class InvalidServiceIdentifier(SoapClientError):
    code = "Client.InvalidServiceIdentifier"


class MissingBody(SoapClientError):
    code = "Client.MissingBody"


class InvalidSoapBody(SoapClientError):
    code = "Client.InvalidBody"


class InconsistentHeaders(SoapClientError):
    code = "Client.InconsistentHeaders"


class ClientFault(SoapClientError):
    """A SOAP Fault sent where a request belongs. X-Road's client proxy takes it as the client's own
    error and answers it back prefixed ``Client.`` (its proxy test ``SoapFaultToClientProxy``); a
    fault code that is not a plain dotted name is answered ``Client.InvalidBody`` instead."""

    code = "Client.InvalidBody"

    def __init__(self, detail: str, *, faultcode: str) -> None:
        super().__init__(detail)
        if _FAULT_CODE.fullmatch(faultcode):
            self.code = f"Client.{faultcode}"


_FAULT_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")


class PassedFault(UpstreamFault):
    """An upstream's SOAP Fault, with the envelope exactly as the upstream sent it."""

    def __init__(self, detail: str, *, faultcode: str, faultstring: str, faultdetail: Any,
                 envelope: bytes, content_type: str) -> None:
        super().__init__(detail, faultcode=faultcode, faultstring=faultstring, faultdetail=faultdetail)
        self.envelope = envelope
        self.content_type = content_type
