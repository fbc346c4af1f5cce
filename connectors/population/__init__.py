"""The national population database (CSDL quốc gia về dân cư): a SOAP connector and its simulator.

``connector.create`` is the ``population`` entry point of ``lienthong.connectors``;
``simulator.create_app`` the one of ``lienthong.simulators``.
"""

NAMESPACE = "http://dancuquocgia.bca"
WSDL = "population/dancu.wsdl"  # under the schemas folder

__all__ = ["NAMESPACE", "WSDL"]
