"""Generic SOAP 1.1 services: a schema-driven connector and a simulator of SOAP upstreams.

``connector.create`` is the ``soap`` entry point of ``lienthong.connectors``; ``simulator.create_app``
the one of ``lienthong.simulators``.
"""
