"""What a connector is: one method and a close.

A connector knows one kind of upstream system. The pipeline hands it a ``Call`` (the operation, the
JSON-shaped payload and what the client sent) and gets back a ``Reply`` (the JSON-shaped answer and
the exact bytes that went over the wire, which the audit log hashes). Connectors are found by name
through the entry-point group ``lienthong.connectors``; each entry point is a factory
``create(service, context) -> Connector``. Nothing in ``gateway/`` names a concrete connector.

Connectors raise only ``gateway.errors`` classes: foreign exceptions (httpx, zeep, lxml) are
translated at the connector's boundary, chained with ``from exc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import httpx

from gateway.config import Service

if TYPE_CHECKING:
    from gateway.spool import Spooled


@dataclass(frozen=True, slots=True)
class Call:
    """One request for the upstream, already authenticated, authorised and parsed."""

    exchange_id: str
    service: Service
    operation: str
    method: str = "POST"
    path: str = ""  # what followed the service id in the URL, with its leading slash
    query: str = ""
    payload: Any = None  # parsed JSON body (dict, list, scalar) or None
    body: bytes = b""  # the raw body the client sent
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # X-Road-* headers of the exchange
    # A large body in a file (gateway/spool.py), ``body`` then b"": only for a connector whose
    # ``streams`` is True, which sends it from there (``gateway.upstream.send`` takes it).
    spooled: Spooled | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The upstream's answer, shaped for the client, with the wire bytes for the audit log."""

    payload: Any
    status: int = 200
    wire_request: bytes = b""
    wire_response: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # for the client (e.g. a 202's Location)


class Connector(Protocol):
    async def call(self, call: Call) -> Reply: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ForwardsSoap(Protocol):
    """A connector that takes a SOAP client's envelope as it came (the ``soap`` connector): the
    SOAP face hands it the bytes, not a translation, and lets attachments through."""

    forwards_soap: Literal[True]


def forwards_soap(connector: object) -> bool:
    """Whether the SOAP face should hand ``connector`` the client's envelope as it came."""
    return isinstance(connector, ForwardsSoap) and connector.forwards_soap is True


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the gateway lends every connector: a pooled HTTP client and where schemas live."""

    http: httpx.AsyncClient
    schemas_dir: Path


ConnectorFactory = Callable[[Service, ConnectorContext], Connector]
