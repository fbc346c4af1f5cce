"""The population database connector: the generic ``soap`` connector, configured for this database.

There is one SOAP stack in the gateway (``gateway.xml``: the hardened parser, the schema codec and
the contract loader). The population database is a service of it like any other: a catalog entry
``connector: soap`` with ``schema: population/dancu.wsdl`` does the same as this entry point, which
only supplies what such an entry would otherwise have to repeat::

    - id: VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan
      connector: population                 # = soap, with the defaults below
      upstream: http://127.0.0.1:9101/dancu
      # schema: population/dancu.wsdl       (default)
      # options.fill: {MaYeuCau: id, MaCanBo: userId}   (default; the request id and the official)

Options given in the catalog win over these defaults (key by key: a catalog ``fill`` replaces the
default one); they are the ``soap`` connector's (``Options`` below). The SOAP face finds a service's
WSDL in its catalog entry, so an entry that SOAP clients call names ``schema`` itself, as the demo
catalog does. Every answer goes through ``gateway.xml.safe`` (a DTD or entity is refused: 502) and
is read by its XSD type (``TonTai`` must be an ``xs:boolean``: anything else is a 502 schema error,
never ``false``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from connectors.population import WSDL
from connectors.soap.connector import FillSource, SoapConnector
from connectors.soap.connector import Options as SoapOptions
from connectors.soap.connector import create as create_soap
from gateway.config import Service
from gateway.connector import ConnectorContext
from gateway.plugins import read_options

__all__ = ["DEFAULT_OPTIONS", "DEFAULT_SCHEMA", "Options", "configure", "create"]

DEFAULT_SCHEMA = WSDL
DEFAULT_OPTIONS: dict[str, Any] = {"fill": {"MaYeuCau": "id", "MaCanBo": "userId"}}


class Options(SoapOptions):
    """The ``soap`` connector's options, filling the request id and the official by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fill: dict[str, FillSource] = Field(
        default_factory=lambda: dict(DEFAULT_OPTIONS["fill"]),
        description="as the soap connector's; by default MaYeuCau from the exchange id (X-Road-Id) "
        "and MaCanBo from the official (X-Road-UserId)")


def configure(service: Service) -> Service:
    """The service as the ``soap`` connector takes it: this database's WSDL and fill rules by default."""
    return service.model_copy(update={"schema_": service.schema_ or DEFAULT_SCHEMA,
                                      "options": {**DEFAULT_OPTIONS, **service.options}})


def create(service: Service, context: ConnectorContext) -> SoapConnector:
    """The ``soap`` connector for one population database service, its WSDL compiled now."""
    return create_soap(configure(service), context, read_options(Options, service))
