"""X-Road's SOAP metaservices (PR-META): ``listMethods``, ``allowedMethods`` and ``getWsdl``.

A client POSTs an X-Road 4.0 request to ``/soap`` whose header's service is the provider's
``listMethods`` (``allowedMethods``, ``getWsdl``) and whose body is the element of that name (in the
``xroad`` namespace). The answer echoes the header with its ``requestHash``, as for every SOAP call:

- ``listMethodsResponse`` / ``allowedMethodsResponse``: a ``service`` identifier for each of the
  provider's services that has a SOAP face (a WSDL or XSD), all of them or those a policy rule lets
  the calling client call (gateway/metadata.py ``may_call``);
- ``getWsdlResponse`` echoing ``serviceCode`` (and ``serviceVersion``), in a ``multipart/related``
  message whose second part is the service's WSDL, its SOAP address replaced by PR-META's
  ``http://example.org/xroad-endpoint``.

The entry point builds the envelope's bytes here and hands them to the pipeline as the reply, so
its own ``render`` sends them as they are, and any refusal as its usual SOAP Fault.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from lxml import etree

from gateway.config import Config, Service
from gateway.connector import Reply
from gateway.errors import UnknownService
from gateway.exchange import Answer, Pipeline, Result
from gateway.metadata import SOAP_CODES, MetaCall, answered, identifier, meta_call, methods, provided
from gateway.soap import envelope as soap
from gateway.soap.faults import InvalidSoapBody
from gateway.xml.contract import Contract

__all__ = ["XROAD_ENDPOINT", "SoapMetadata"]

XROAD_ENDPOINT = "http://example.org/xroad-endpoint"  # PR-META 4: where a fetched WSDL points
XML = "text/xml; charset=utf-8"


class HasContract(Protocol):
    @property
    def contract(self) -> Contract | None: ...


class SoapMetadata:
    """The SOAP metaservices over the catalog and the SOAP face's contracts (service id -> face)."""

    def __init__(self, config: Config, faces: Mapping[str, HasContract]) -> None:
        self._config = config
        self._faces = faces

    def answer(self, pipeline: Pipeline, parsed: soap.Envelope, service_id: str) -> Answer | None:
        """The metaservice's answer for the pipeline, or None when the request names none."""
        call = meta_call(service_id, SOAP_CODES)
        if call is None or pipeline.config.service(service_id) is not None:
            return None  # not a metaservice, or one the catalog registers as a service of its own

        def answer(ctx: Result) -> Result:
            return answered(ctx, call.code, lambda: self.reply(pipeline, ctx, parsed, call))

        return answer

    def reply(self, pipeline: Pipeline, ctx: Result, parsed: soap.Envelope, call: MetaCall) -> Reply:
        if parsed.body.tag != f"{{{soap.XROAD}}}{call.code}":
            raise InvalidSoapBody(f"a {call.code} request's body is the element xroad:{call.code}, "
                                  f"not {parsed.body.tag}")
        services = provided(self._config, call.provider)
        if call.code == "getWsdl":
            return self._wsdl(parsed, services, call.provider)
        with_face = [s for s in services if self._contract(s) is not None]
        root, body = self._response(parsed)
        holder = etree.SubElement(body, f"{{{soap.XROAD}}}{call.code}Response")
        for service in methods(pipeline.policy, ctx, with_face, call.code):
            identifier(holder, f"{{{soap.XROAD}}}service", "SERVICE", service.id.split("/"))
        return Reply(soap.serialise(root), content_type=XML)

    def _contract(self, service: Service) -> Contract | None:
        face = self._faces.get(service.id)
        return face.contract if face is not None else None

    @staticmethod
    def _response(parsed: soap.Envelope) -> tuple[Any, Any]:
        root, header, body = soap.build({"xroad": soap.XROAD, "id": soap.IDEN})
        if parsed.xroad.present:
            for element in soap.echo_header(parsed.xroad, parsed.request_hash):
                header.append(element)
        else:
            root.remove(header)
        return root, body

    def _wsdl(self, parsed: soap.Envelope, services: list[Service], provider: str) -> Reply:
        code = (parsed.body.findtext(f"{{{soap.XROAD}}}serviceCode") or "").strip()
        version = (parsed.body.findtext(f"{{{soap.XROAD}}}serviceVersion") or "").strip()
        if not code:
            raise InvalidSoapBody("a getWsdl request names the service in xroad:serviceCode")
        wanted = f"{provider}/{code}" + (f"/{version}" if version else "")
        service = next((s for s in services if s.id == wanted), None)
        contract = self._contract(service) if service is not None else None
        if contract is None:
            raise UnknownService(f"no service {wanted} with a WSDL is registered here")
        root, body = self._response(parsed)
        holder = etree.SubElement(body, f"{{{soap.XROAD}}}getWsdlResponse")
        etree.SubElement(holder, f"{{{soap.XROAD}}}serviceCode").text = code
        if version:
            etree.SubElement(holder, f"{{{soap.XROAD}}}serviceVersion").text = version
        return multipart(soap.serialise(root), contract.publish(XROAD_ENDPOINT))


def multipart(envelope: bytes, wsdl: bytes) -> Reply:
    """The SOAP part and the WSDL as its attachment, as X-Road's getWsdl answers (PR-META C.7, C.8)."""
    boundary = f"xroad-{secrets.token_hex(12)}"
    parts = [(envelope, "<soap-part>"), (wsdl, "<wsdl>")]
    body = b"".join(f"--{boundary}\r\nContent-Type: {XML}\r\nContent-ID: {cid}\r\n"
                    f"Content-Transfer-Encoding: binary\r\n\r\n".encode() + data + b"\r\n"
                    for data, cid in parts) + f"--{boundary}--\r\n".encode()
    content_type = f'multipart/related; type="text/xml"; start="<soap-part>"; boundary="{boundary}"'
    return Reply(body, content_type=content_type)
