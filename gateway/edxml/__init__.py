"""edXML (QCVN 102:2016/BTTTT): official documents between agencies, as packages and status messages.

``codec`` reads and writes them (validated, attachments streamed to spooled files), ``model`` holds
them as typed values (docs/edxml.md). The exchange through the gateway is gateway/documents.
"""

from gateway.edxml.codec import EdxmlError, Limits, build, build_status, parse, parse_message, parse_status
from gateway.edxml.model import Attachment, MessageHeader, Package, Reference, StatusMessage

__all__ = ["Attachment", "EdxmlError", "Limits", "MessageHeader", "Package", "Reference", "StatusMessage",
           "build", "build_status", "parse", "parse_message", "parse_status"]
