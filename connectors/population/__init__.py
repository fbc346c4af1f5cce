"""The national population database (CSDL quốc gia về dân cư): a `soap` configuration, and a simulator.

``connector.create`` is the ``population`` entry point of ``lienthong.connectors`` (the generic SOAP
connector with this database's WSDL and fill rules as defaults); ``simulator.create_app`` the one
of ``lienthong.simulators``. The WSDL follows the published schemas, which use one namespace per
message family.
"""

NAMESPACE = "http://dancuquocgia.bca"  # XacThucThongTinCongDan, TraCuuThongTinCongDan, LoiNghiepVu
QLDC = "http://gtel.vn/qldc"  # XacMinhThongTinNhanThanRequest
DANCU = "http://www.mic.gov.vn/dancu/1.0"  # XacMinhThongTinNhanThanResponse, CongdanCollection
WSDL = "population/dancu.wsdl"  # under the schemas folder

__all__ = ["DANCU", "NAMESPACE", "QLDC", "WSDL"]
