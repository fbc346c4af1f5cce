"""What the OpenAPI document says beyond FastAPI's own reading of the routes.

FastAPI documents 200 and a 422 of its own shape for every route; the gateway answers refusals and
failures as RFC 9457 problem+json instead (validation errors too, as 400), and OAuth errors in RFC
6749's shape. The routers take their error answers from ``PROBLEMS`` and ``OAUTH_ERRORS``, and
``install`` makes the document honest: the ``Problem`` and ``OAuthError`` schemas, no 422 that the
gateway never sends, and the two entry points that are plain ASGI beside FastAPI (``/r1/…`` exchanges
and the SOAP face at ``/soap…``), described for readers and clients but served by no FastAPI route.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.problems import PROBLEM_TYPE

__all__ = ["OAUTH_ERRORS", "PROBLEMS", "install", "problems"]

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_TEXT = {"schema": {"type": "string"}}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details. Other members may follow: `errors` (what was invalid, "
                   "with its JSON path), `rule`, `upstreamStatus` and what the upstream said.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "example": "urn:lienthong:problem:invalid-request"},
        "title": {"type": "string", "example": "Bad request"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "X-Road style fault code",
                 "example": "Client.InvalidRequest"},
        "instance": {"type": "string", "description": "the path asked for"},
        "exchangeId": {"type": "string", "description": "the exchange's X-Road-Id (exchanges only)"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}

OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "title": "OAuthError",
    "type": "object",
    "description": "RFC 6749 5.2 error answer",
    "required": ["error"],
    "properties": {"error": {"type": "string", "example": "invalid_client"},
                   "error_description": {"type": "string"}},
}


def _problem(description: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {PROBLEM_TYPE: {"schema": _PROBLEM_REF}}}
    if headers:
        answer["headers"] = {name: {"description": text, **_TEXT} for name, text in headers.items()}
    return answer


PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: _problem("The request is not valid: a parameter out of range or of the wrong type, a body "
                  "that does not parse, or an Authorization header that is not one bearer token"),
    401: _problem("No access token, or one that is forged, expired, revoked or for another audience",
                  **{"WWW-Authenticate": "Bearer, with the RFC 6750 error"}),
    403: _problem("The token lacks the scope this needs, or a rule refuses the call (`rule` names it)",
                  **{"WWW-Authenticate": "Bearer, error=\"insufficient_scope\" and the scope needed"}),
    404: _problem("Nothing is found at this address, or nothing this client may see"),
    405: _problem("The method is not allowed here", Allow="the methods that are"),
    413: _problem("The body is over the gateway's limit"),
    415: _problem("The body's media type is not one this service reads"),
    422: _problem("The body breaks the service's schema (`errors` lists each JSON path)"),
    429: _problem("Too many requests from this client", **{"Retry-After": "seconds to wait"}),
    500: _problem("The gateway failed unexpectedly; the error is logged"),
    502: _problem("The upstream answered with an error or something unreadable"),
    503: _problem("The audit log or the upstream is unavailable: nothing is answered unaudited"),
    504: _problem("The upstream did not answer in time"),
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem+json answers of these status codes, for a router's or a route's ``responses``."""
    return {code: PROBLEMS[code] for code in codes}


def _oauth(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}}


OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _oauth("invalid_request, invalid_grant, invalid_scope or unsupported_grant_type"),
    401: _oauth("invalid_client: the client could not be authenticated"),
    429: _oauth("Too many attempts by this client; see Retry-After"),
    503: _oauth("temporarily_unavailable: a store the server needs did not answer"),
}


# -- the plain ASGI entry points, described --------------------------------------------------------

def _path_param(name: str, description: str, example: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}, "example": example}


_SERVICE_PARAMS = [
    _path_param("instance", "X-Road instance", "VN"),
    _path_param("class", "member class", "GOV"),
    _path_param("member", "member code (the agency)", "000.00.00.H41"),
    _path_param("subsystem", "the providing subsystem", "DANHMUC"),
    _path_param("service", "service code", "items"),
]
_REST_PATH = _path_param("path", "the rest of the upstream path, one or more segments (`/` between "
                                 "them is allowed here; an encoded `%2F` stays inside its segment)",
                         "2026/06")


def _header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string", **schema}}


_XROAD_HEADERS = [
    _header("X-Road-Client", "the calling client (a subsystem, or a member); when present it must be the "
            "token's client",
            example="VN/GOV/000.00.00.H22/MOTCUA"),
    _header("X-Road-Id", "the exchange id (generated when absent)", maxLength=128),
    _header("X-Road-UserId", "the acting official (required by rules with require_user_id)"),
    _header("X-Road-Issue", "the purpose: a dossier code or a legal basis (rules with require_issue)"),
    _header("X-Road-Represented-Party", "the party the client acts for"),
]
_ANSWER_HEADERS = {
    "X-Road-Id": {"description": "the exchange id, also the audit record's id", **_TEXT},
    "X-Road-Request-Hash": {"description": "X-Road REST r1: base64 SHA-512(SHA-512(request line and "
                                           "X-Road headers) + SHA-512(body)) (docs/exchange.md)", **_TEXT},
    "X-Road-Error": {"description": "on an error the gateway produced: its code, e.g. "
                                    "Server.ServerProxy.AccessDenied (X-Road REST r1 section 4.6)", **_TEXT},
}
_EXCHANGE_ERRORS = problems(400, 401, 403, 404, 405, 413, 415, 422, 429, 500, 502, 503, 504)


def _rest_operation(method: str, with_path: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["Exchanges"],
        "summary": f"{method.upper()} an exchange with a registered service"
                   + (" (a sub-path)" if with_path else ""),
        "description": "A plain ASGI entry point beside the FastAPI app (docs/exchange.md): the "
                       "bearer token is checked, a policy rule must allow the call, the exchange is "
                       "written to the audit log and the service's connector calls the upstream. "
                       "A service with delivery `async` stores the request and answers 202.",
        "operationId": f"exchange_{method}" + ("_path" if with_path else ""),
        "security": [{"bearerToken": []}],
        "parameters": [*_SERVICE_PARAMS, *([_REST_PATH] if with_path else []), *_XROAD_HEADERS,
                       *([_header("Idempotency-Key", "store-and-forward services: the same key finds "
                                                     "the first delivery")] if method == "post" else [])],
        "responses": {
            "200": {"description": "The upstream's answer (JSON unless the service says otherwise)",
                    "headers": _ANSWER_HEADERS, "content": {"application/json": {"schema": {}}}},
            "202": {"description": "Stored for delivery (services with delivery: async)",
                    "headers": {**_ANSWER_HEADERS, "Location": {"description": "the delivery", **_TEXT}},
                    "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "deliveryId": {"type": "string"}, "location": {"type": "string"},
                        "state": {"type": "string"}, "duplicate": {"type": "boolean"}}}}}},
            **{str(code): answer for code, answer in _EXCHANGE_ERRORS.items()},
            "default": {"description": "Another status the upstream answered with, passed on"},
        },
    }
    if method in ("post", "put", "patch"):
        operation["requestBody"] = {"required": False, "description": "JSON, checked against the "
                                    "service's schema when it has one",
                                    "content": {"application/json": {"schema": {}}}}
    return operation


_SOAP_XML = {"text/xml": {"schema": {"type": "string", "description": "a SOAP 1.1 envelope"}}}
_SOAP_FAULT = {"description": "A SOAP Fault with an X-Road style faultcode (SOAP 1.1 sends every "
                              "fault with 500): refused, unknown service, or a failed upstream",
               "content": _SOAP_XML}


def _soap_post(with_service: bool) -> dict[str, Any]:
    return {
        "tags": ["SOAP"],
        "summary": "Call a service in SOAP 1.1" + ("" if with_service else " (X-Road 4.0 header)"),
        "description": ("Plain SOAP clients: X-Road headers optional; when present their service "
                        "must be the path's." if with_service else
                        "X-Road 4.0 clients: the envelope's header names client, service, id, "
                        "userId, issue, protocolVersion and representedParty.") +
                       " The token goes in the HTTP Authorization header, as for /r1.",
        "operationId": "soap_call" + ("_service" if with_service else ""),
        "security": [{"bearerToken": []}],
        "parameters": [*(_SERVICE_PARAMS if with_service else []), *_XROAD_HEADERS,
                       _header("SOAPAction", "optional; the body's element names the operation")],
        "requestBody": {"required": True, "content": _SOAP_XML},
        "responses": {"200": {"description": "The SOAP response, the X-Road header echoed with its "
                                             "requestHash", "content": _SOAP_XML},
                      "405": {"description": "Not POST (GET ?wsdl for the WSDL)", "content": _SOAP_XML,
                              "headers": {"Allow": _TEXT}},
                      "413": {"description": "The body is over the limit", "content": _SOAP_XML},
                      "500": _SOAP_FAULT},
    }


def _soap_wsdl() -> dict[str, Any]:
    return {
        "tags": ["SOAP"], "summary": "The service's WSDL, its address pointing at the gateway",
        "operationId": "soap_wsdl",
        "parameters": [*_SERVICE_PARAMS, {"name": "wsdl", "in": "query", "required": True,
                                          "allowEmptyValue": True, "schema": {"type": "string"},
                                          "description": "present, empty: `?wsdl`"}],
        "responses": {"200": {"description": "The WSDL", "content": _SOAP_XML},
                      "405": {"description": "GET without ?wsdl", "content": _SOAP_XML},
                      "500": _SOAP_FAULT},
    }


_PROVIDER_PARAMS = _SERVICE_PARAMS[:4]
_IDENTIFIER = {"type": "object", "properties": {
    name: {"type": "string"} for name in ("object_type", "xroad_instance", "member_class", "member_code",
                                          "subsystem_code")}}
_REST_SERVICES = {"type": "object", "description": "X-Road PR-MREST's list of REST services", "properties": {
    "service": {"type": "array", "items": {"type": "object", "properties": {
        **{name: {"type": "string"} for name in ("object_type", "xroad_instance", "member_class",
                                                  "member_code", "subsystem_code", "service_code",
                                                  "service_version")},
        "service_type": {"type": "string", "enum": ["REST", "OPENAPI", "WSDL"]},
        "endpoint_list": {"type": "array", "items": {"type": "object", "properties": {
            "method": {"type": "string"}, "path": {"type": "string"}}}}}}}}}
_META_ERRORS = problems(400, 401, 403, 404, 405, 500, 503)


def _metaservice(code: str, summary: str, answer: dict[str, Any],
                 parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An X-Road metaservice of the REST face (docs/exchange.md, gateway/metadata.py)."""
    return {"get": {
        "tags": ["Metadata"], "summary": summary, "operationId": f"metadata_{code}",
        "description": "X-Road's service metadata protocol for REST (PR-MREST), answered from the "
                       "catalog and the policies. A bearer token is needed, as for every exchange; "
                       "the call is audited like one.",
        "security": [{"bearerToken": []}],
        "parameters": [*_PROVIDER_PARAMS, *(parameters or []), *_XROAD_HEADERS[:2]],
        "responses": {"200": {"description": "The answer", "headers": _ANSWER_HEADERS,
                              "content": {"application/json": {"schema": answer}}},
                      **{str(code_): item for code_, item in _META_ERRORS.items()}}}}


_PROVIDER_PATH = "{instance}/{class}/{member}/{subsystem}"
METADATA_ENTRY_POINTS: dict[str, dict[str, Any]] = {
    f"/r1/{_PROVIDER_PATH}/listMethods": _metaservice(
        "listMethods", "The provider's services", _REST_SERVICES),
    f"/r1/{_PROVIDER_PATH}/allowedMethods": _metaservice(
        "allowedMethods", "The provider's services that a policy rule lets the calling client call",
        _REST_SERVICES),
    f"/r1/{_PROVIDER_PATH}/getOpenAPI": _metaservice(
        "getOpenAPI", "An OpenAPI description of one of the provider's services",
        {"type": "object", "description": "an OpenAPI 3 document"},
        [{"name": "serviceCode", "in": "query", "required": True, "schema": {"type": "string"},
          "example": "XacThucThongTinCongDan"}]),
    "/listClients": {"get": {
        "tags": ["Metadata"], "summary": "The members and subsystems of the catalog",
        "operationId": "metadata_listClients",
        "description": "X-Road's listClients (PR-META): the clientList XML, or JSON when the request "
                       "accepts application/json. A bearer token is needed; the call is audited.",
        "security": [{"bearerToken": []}],
        "parameters": [{"name": "xRoadInstance", "in": "query", "required": False,
                        "schema": {"type": "string"}, "description": "this gateway's by default"}],
        "responses": {"200": {"description": "The list", "content": {
            "text/xml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object", "properties": {"member": {
                "type": "array", "items": {"type": "object", "properties": {
                    "id": _IDENTIFIER, "name": {"type": "string"},
                    "subsystem_name": {"type": "string"}}}}}}}}},
            **{str(code_): item for code_, item in problems(400, 401, 405, 500, 503).items()}}}},
}

_SERVICE_PATH = "{instance}/{class}/{member}/{subsystem}/{service}"
ENTRY_POINTS: dict[str, dict[str, Any]] = {
    f"/r1/{_SERVICE_PATH}": {m: _rest_operation(m, False) for m in ("get", "post", "put", "patch", "delete")},
    f"/r1/{_SERVICE_PATH}/{{path}}": {m: _rest_operation(m, True)
                                      for m in ("get", "post", "put", "patch", "delete")},
    f"/soap/{_SERVICE_PATH}": {"post": _soap_post(True), "get": _soap_wsdl()},
    "/soap": {"post": _soap_post(False)},
    **METADATA_ENTRY_POINTS,
}


def _without_framework_422(document: dict[str, Any]) -> None:
    """FastAPI's 422 (its HTTPValidationError) is never sent: validation errors are problem+json 400."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422")
            if answer and "HTTPValidationError" in str(answer):
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in str(document.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _bearer_where_refused(document: dict[str, Any]) -> None:
    """The routes that answer a problem+json 401 read a bearer token: say so, for the docs' Authorize."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if PROBLEM_TYPE in str(operation.get("responses", {}).get("401", {}).get("content", {})):
                operation.setdefault("security", [{"bearerToken": []}])


def build(api: FastAPI) -> dict[str, Any]:
    """The whole document: FastAPI's reading of the routes, corrected and completed."""
    document = get_openapi(title=api.title, version=api.version, description=api.description,
                           routes=api.routes, tags=api.openapi_tags, servers=api.servers)
    _without_framework_422(document)
    _bearer_where_refused(document)
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(Problem=PROBLEM_SCHEMA, OAuthError=OAUTH_ERROR_SCHEMA)
    components.setdefault("securitySchemes", {})["bearerToken"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An RFC 9068 access token from POST /oauth/token"}
    document["paths"].update(ENTRY_POINTS)
    return document


def install(api: FastAPI) -> None:
    """Serve ``build(api)`` at the app's OpenAPI URL (computed once, on first use)."""
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = build(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
