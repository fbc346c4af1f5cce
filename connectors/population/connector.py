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
default one). The SOAP face finds a service's WSDL in its catalog entry, so an entry that SOAP
clients call names ``schema`` itself, as the demo catalog does. Every answer goes through ``gateway.xml.safe``
(a DTD or entity is refused: 502) and is read by its XSD type (``TonTai`` must be an ``xs:boolean``:
anything else is a 502 schema error, never ``false``).
"""

from __future__ import annotations

from typing import Any

from connectors.population import WSDL
from connectors.soap.connector import SoapConnector
from connectors.soap.connector import create as create_soap
from gateway.config import Service
from gateway.connector import ConnectorContext

__all__ = ["DEFAULT_OPTIONS", "DEFAULT_SCHEMA", "configure", "create"]

DEFAULT_SCHEMA = WSDL
DEFAULT_OPTIONS: dict[str, Any] = {"fill": {"MaYeuCau": "id", "MaCanBo": "userId"}}


def configure(service: Service) -> Service:
    """The service as the ``soap`` connector takes it: this database's WSDL and fill rules by default."""
    return service.model_copy(update={"schema_": service.schema_ or DEFAULT_SCHEMA,
                                      "options": {**DEFAULT_OPTIONS, **service.options}})


def create(service: Service, context: ConnectorContext) -> SoapConnector:
    """The ``soap`` connector for one population database service, its WSDL compiled now."""
    return create_soap(configure(service), context)
