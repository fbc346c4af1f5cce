"""A service's SOAP contract: its operations, each with the compiled codecs of its messages.

A contract comes from a WSDL 1.1 (document/literal SOAP 1.1 bindings), or from XSD files plus an
operation map in the service's options::

    schema: population-db/XacMinhThongTinNhanThanRequest.xsd
    options:
      schemas: [population-db/XacMinhThongTinNhanThanResponse.xsd]   # more XSDs, if the messages span files
      operations:
        XacMinhThongTinNhanThan:
          input: XacMinhThongTinNhanThanRequest     # a global element: local name or {namespace}name
          output: XacMinhThongTinNhanThanResponse
          action: http://example.org/XacMinh        # SOAPAction (default empty)

``load_contract`` compiles everything once per process (the connector and the SOAP entry point
share the result). ``allowed_operations`` is which operations one service may call: those its
options list, else the one its catalog entry names (``service.operation_name``). The two options a
contract reads are ``ContractOptions`` (the ``soap`` connector's options extend it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from lxml import etree
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from gateway.xml import safe
from gateway.xml.catalog import SchemaError, load_wsdl, load_xsd
from gateway.xml.codec import Compiler, Element, compile_element

__all__ = ["Contract", "ContractOptions", "Operation", "OperationSpec", "SchemaError", "allowed_operations",
           "contract_options", "load_contract"]

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"
XROAD = "http://x-road.eu/xsd/xroad.xsd"


@dataclass(frozen=True)
class Operation:
    name: str
    action: str
    input: Element
    output: Element | None
    faults: Mapping[str, Element] = field(default_factory=dict)  # detail element tag -> codec
    xroad: bool = False  # the binding puts X-Road headers on its messages


@dataclass(frozen=True)
class Contract:
    source: Path
    operations: Mapping[str, Operation]
    by_input: Mapping[str, Operation]  # request body element tag -> operation
    document: bytes  # the WSDL to publish (generated for XSD contracts)
    elements: Mapping[str, Element] = field(default_factory=dict)  # every global element, compiled

    def publish(self, address: str) -> bytes:
        """The WSDL with every SOAP address pointing at ``address`` (the gateway's endpoint)."""
        root = safe.parse(self.document, safe.Limits(max_bytes=50_000_000, max_elements=1_000_000,
                                                     max_depth=256))
        for node in root.iter(f"{{{WSDL_SOAP}}}address"):
            node.set("location", address)
        wire: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
        return wire

    def detail_element(self, tag: str) -> Element | None:
        for operation in self.operations.values():
            found = operation.faults.get(tag)
            if found is not None:
                return found
        return self.elements.get(tag)


class OperationSpec(BaseModel):
    """One operation of a service described by XSD: its messages' global elements, each by local
    name or ``{namespace}name``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="the request's element")
    output: str | None = Field(None, description="the answer's element; none: a one-way operation")
    action: str | None = Field(None, description="the SOAPAction (empty by default)")
    faults: list[str] = Field([], description="elements a Fault's detail may hold")
    xroad: bool = Field(False, description="its messages carry X-Road headers")


def _operations_kind(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return "all" if value == "*" else None


Operations = Annotated[
    Annotated[list[str], Tag("list")] | Annotated[dict[str, OperationSpec], Tag("map")]
    | Annotated[Literal["*"], Tag("all")],
    Discriminator(_operations_kind, custom_error_type="operations",
                  custom_error_message="a list of operation names, a map of name: {input, output, "
                  "action, faults, xroad}, or '*'")]


class ContractOptions(BaseModel):
    """The options a service's contract reads; the others are its connector's, ignored here."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schemas: list[str] = Field([], description="more XSD files, when an XSD-described service's "
                               "messages span several (under schemas/, or absolute)")
    operations: Operations | None = Field(None, description=(
        "which operations the service may call: a list of names, '*' for all its WSDL's, or for a "
        "service described by XSD a map of name: {input, output, action, faults, xroad}; the "
        "service's own operation by default"))


def contract_options(options: ContractOptions | Mapping[str, Any] | None) -> ContractOptions:
    """The contract's options, read from a service's options (ValidationError if ill-typed)."""
    if isinstance(options, ContractOptions):
        return options
    return ContractOptions.model_validate(dict(options or {}))


_cache: dict[tuple[str, bytes], Contract] = {}
_lock = threading.Lock()


def load_contract(path: Path, options: ContractOptions | Mapping[str, Any] | None = None, *,
                  base: Path | None = None) -> Contract:
    """The contract in ``path`` (WSDL or XSD), compiled once per process; SchemaError if it cannot be."""
    read = contract_options(options)
    key = (str(path.resolve()), orjson.dumps(read.model_dump(mode="json", include={"schemas", "operations"}),
                                             option=orjson.OPT_SORT_KEYS))
    with _lock:
        found = _cache.get(key)
        if found is None:
            if path.suffix.lower() == ".wsdl" or _is_wsdl(path):
                found = _from_wsdl(path)
            else:
                extra = [(base or path.parent) / p for p in read.schemas]
                found = _from_xsd([path, *extra], read.operations)
            _cache[key] = found
    return found


def allowed_operations(contract: Contract | None, operation_name: str,
                       options: ContractOptions | Mapping[str, Any]) -> list[str]:
    """The operations one service may call (validated against the contract when there is one)."""
    listed = contract_options(options).operations
    if isinstance(listed, dict | list):
        names = list(listed)
    elif listed == "*" and contract is not None:
        names = list(contract.operations)
    else:
        names = [operation_name]
    if contract is not None:
        missing = [n for n in names if n not in contract.operations]
        if missing:
            have = ", ".join(sorted(contract.operations)) or "none"
            raise SchemaError(f"{contract.source.name} has no operation {', '.join(missing)} (it has {have})")
    return names


def _is_wsdl(path: Path) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return b"definitions" in head and WSDL.encode() in head


# --- WSDL ---------------------------------------------------------------------------------------------

def _from_wsdl(path: Path) -> Contract:
    document = load_wsdl(path)
    compiler = Compiler(document.schema.maps)
    operations: dict[str, Operation] = {}
    skipped: dict[str, str] = {}
    for binding in document.bindings.values():
        if binding.soap_binding is None:
            continue  # HTTP or SOAP 1.2 bindings: not this gateway's
        for (name, _, _), op in binding.operations.items():
            if name in operations:
                continue
            reason = _unsupported(op, binding)
            if reason:
                skipped[name] = reason
                continue
            request = _body_element(op.input)
            response = _body_element(op.output) if op.output is not None else None
            if request is None:
                skipped[name] = "its input has no element part"
                continue
            faults = {}
            for fault in op.faults.values():
                for part in (fault.message.parts.values() if fault.message else ()):
                    if type(part).__name__ == "XsdElement":
                        faults[part.name] = _compile(part, compiler)
            headers = list(op.input.soap_headers or ())
            xroad = any(h.part is not None and str(h.part.name).startswith(f"{{{XROAD}}}") for h in headers) \
                or (bool(headers) and XROAD in document.namespaces.values())
            output = _compile(response, compiler) if response is not None else None
            operations[name] = Operation(name=name, action=op.soap_action or "",
                                         input=_compile(request, compiler), output=output,
                                         faults=faults, xroad=xroad)
    if not operations:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no SOAP 1.1 binding"
        raise SchemaError(f"{path}: no document/literal SOAP 1.1 operation ({why})")
    elements = {tag: _compile(component, compiler)
                for tag, component in document.schema.maps.elements.items()
                if not tag.startswith((f"{{{XSD}}}", f"{{{WSDL}}}", f"{{{WSDL_SOAP}}}"))}
    return Contract(source=path, operations=operations,
                    by_input={op.input.tag: op for op in operations.values()},
                    document=path.read_bytes(), elements=elements)


def _unsupported(op: Any, binding: Any) -> str:
    # The attributes as written: xmlschema reports an operation without a style as "document", but
    # such an operation takes its binding's style (WSDL 1.1 sections 3.3, 3.4).
    own = op.soap_operation.get("style") if op.soap_operation is not None else None
    style = own or binding.soap_binding.get("style") or "document"
    if style != "document":
        return f"style {style} (only document/literal is supported)"
    for message in (op.input, op.output):
        body = getattr(message, "soap_body", None)
        if body is not None and body.use == "encoded":
            return "use encoded (only literal is supported)"
    return ""


def _body_element(message: Any) -> Any:
    if message is None or message.message is None:
        return None
    parts = message.message.parts
    wanted = list(message.soap_body.parts) if message.soap_body is not None and message.soap_body.parts \
        else list(parts)
    elements = [parts[p] for p in wanted if p in parts and type(parts[p]).__name__ == "XsdElement"]
    if len(elements) > 1:
        raise SchemaError(f"operation message {message.message.name} puts {len(elements)} elements in the "
                          "body; document/literal (WS-I) allows one")
    return elements[0] if elements else None


def _compile(component: Any, compiler: Compiler) -> Element:
    try:
        return compile_element(component, compiler)
    except ValueError as exc:
        raise SchemaError(f"element {component.name}: {exc}") from None


# --- XSD + operation map ---------------------------------------------------------------------------------

def _from_xsd(paths: list[Path], operations: list[str] | dict[str, OperationSpec] | str | None) -> Contract:
    schemas = [load_xsd(p) for p in paths]
    compilers = [Compiler(s.maps) for s in schemas]
    globals_: dict[str, tuple[Any, Compiler]] = {}
    for schema, compiler in zip(schemas, compilers, strict=True):
        for tag, component in schema.elements.items():
            globals_.setdefault(component.name or tag, (component, compiler))

    def element(text: str, role: str, operation: str) -> Element:
        matches = [item for tag, item in globals_.items()
                   if tag == text or tag.rsplit("}", 1)[-1] == text]
        if len(matches) != 1:
            found = "several" if matches else "no"
            raise SchemaError(f"{paths[0].name}: operation {operation}: {found} global element named "
                              f"{text!r} for its {role}")
        component, compiler = matches[0]
        return _compile(component, compiler)

    if not isinstance(operations, dict) or not operations:
        raise SchemaError(f"{paths[0]}: a service described by XSD needs options.operations: "
                          "{name: {input: element, output: element, action: soapAction}}")
    compiled: dict[str, Operation] = {}
    for name, spec in operations.items():
        compiled[name] = Operation(
            name=name, action=spec.action or "",
            input=element(spec.input, "input", name),
            output=element(spec.output, "output", name) if spec.output else None,
            faults={e.tag: e for e in (element(f, "fault", name) for f in spec.faults)},
            xroad=spec.xroad)
    elements = {tag: _compile(component, compiler) for tag, (component, compiler) in globals_.items()}
    return Contract(source=paths[0], operations=compiled,
                    by_input={op.input.tag: op for op in compiled.values()},
                    document=_generate_wsdl(paths, compiled), elements=elements)


def _generate_wsdl(paths: list[Path], operations: Mapping[str, Operation]) -> bytes:
    """A WSDL 1.1 document/literal description of XSD-defined operations, schemas inlined."""
    nsmap = {"wsdl": WSDL, "soap": WSDL_SOAP, "xs": XSD}
    target = "urn:lienthong:soap"
    namespaces: dict[str, str] = {}
    for op in operations.values():
        for element in (op.input, op.output, *op.faults.values()):
            if element is not None:
                namespaces.update({uri: prefix for prefix, uri in element.nsmap.items()})
    for uri, prefix in namespaces.items():
        if prefix not in nsmap:
            nsmap[prefix] = uri
    nsmap["tns"] = target
    root = etree.Element(f"{{{WSDL}}}definitions", nsmap=nsmap, targetNamespace=target, name="Service")
    types = etree.SubElement(root, f"{{{WSDL}}}types")
    inlined = {p.resolve().name for p in paths}
    for p in paths:
        schema = safe.parse(p.read_bytes(), safe.Limits(max_bytes=50_000_000, max_elements=1_000_000,
                                                        max_depth=256))
        for node in schema.iter(f"{{{XSD}}}import", f"{{{XSD}}}include"):
            location = node.get("schemaLocation")
            if location and Path(location).name in inlined:
                del node.attrib["schemaLocation"]
        types.append(schema)

    def prefixed(element: Element) -> str:
        tag = element.tag
        uri, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        prefix = next((p for p, u in nsmap.items() if u == uri and p), None)
        return f"{prefix}:{local}" if prefix else local

    for op in operations.values():
        for suffix, element in (("Request", op.input), ("Response", op.output)):
            if element is None:
                continue
            message = etree.SubElement(root, f"{{{WSDL}}}message", name=f"{op.name}{suffix}")
            etree.SubElement(message, f"{{{WSDL}}}part", name="body", element=prefixed(element))
    port_type = etree.SubElement(root, f"{{{WSDL}}}portType", name="ServicePortType")
    binding = etree.SubElement(root, f"{{{WSDL}}}binding", name="ServiceBinding", type="tns:ServicePortType")
    etree.SubElement(binding, f"{{{WSDL_SOAP}}}binding", style="document",
                     transport="http://schemas.xmlsoap.org/soap/http")
    for op in operations.values():
        node = etree.SubElement(port_type, f"{{{WSDL}}}operation", name=op.name)
        etree.SubElement(node, f"{{{WSDL}}}input", message=f"tns:{op.name}Request")
        if op.output is not None:
            etree.SubElement(node, f"{{{WSDL}}}output", message=f"tns:{op.name}Response")
        bound = etree.SubElement(binding, f"{{{WSDL}}}operation", name=op.name)
        etree.SubElement(bound, f"{{{WSDL_SOAP}}}operation", soapAction=op.action, style="document")
        for direction in ("input", "output") if op.output is not None else ("input",):
            etree.SubElement(etree.SubElement(bound, f"{{{WSDL}}}{direction}"), f"{{{WSDL_SOAP}}}body",
                             use="literal")
    service = etree.SubElement(root, f"{{{WSDL}}}service", name="Service")
    port = etree.SubElement(service, f"{{{WSDL}}}port", name="ServicePort", binding="tns:ServiceBinding")
    etree.SubElement(port, f"{{{WSDL_SOAP}}}address", location="http://localhost/")
    wire: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
    return wire
