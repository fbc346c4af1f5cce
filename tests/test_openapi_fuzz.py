"""The OpenAPI document tells the truth: schemathesis, driven by it, finds no server error and no
status code it leaves out, with a token holding every scope and with none.

The gateway (demo catalog, SQLite, console off) is served by uvicorn on loopback in this process.
The fuzzing is bounded and deterministic: a few examples per operation (schema-valid and invalid
ones), derandomized, no example database. The exchange entry points (``/r1``, ``/soap``) need
upstreams and state, so they are left out of the fuzzing, but the document must still describe them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import status_code_conformance

from gateway.app import create_app
from gateway.config import load_config
from gateway.init import initialise
from gateway.simulation import free_port
from gateway.storage.db import upgrade

CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"
SCOPES = ["exchange", "operator", "stats", "audit.read", "audit.subject", "metrics"]
EXAMPLES = 12  # per operation, per generation mode, per token: ~1000 requests in all
ENTRY_POINTS = r"^/(r1|soap)(/|$)"
PROBLEM = "application/problem+json"


@dataclass
class Served:
    base: str
    token: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    init = initialise(tmp_path_factory.mktemp("fuzz") / "gw")
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["clients"] = [{**c, "scopes": SCOPES} if c["id"] == CLIENT else c for c in cfg["clients"]]
    cfg["console"] = {"enabled": False}
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    config = load_config(init.config_path)
    upgrade(config.database_url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="fuzzed-gateway", daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the gateway did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials",
                                                    "scope": " ".join(SCOPES)},
                       auth=(CLIENT, init.secrets[CLIENT]))
        assert r.status_code == 200, r.text
        yield Served(base, r.json()["access_token"])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def document(served: Served) -> dict[str, Any]:
    return dict(httpx.get(f"{served.base}/openapi.json").json())


def _fuzz(operation: Any, mode: GenerationMode, base: str, headers: dict[str, str]) -> list[str]:
    """What schemathesis finds wrong with one operation's answers in one mode (nothing, one hopes)."""
    found: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=base, headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        except FailureGroup as failures:  # the checks' own report: keep it, go on with the others
            found.extend(f"{operation.label} ({mode}): {response.status_code}, {type(f).__name__}: "
                         f"{case.as_curl_command(headers=headers)}" for f in failures.exceptions)

    try:
        fuzz()
    except Unsatisfiable:  # an operation with no parameters has no invalid input to make
        assert mode == GenerationMode.NEGATIVE, operation.label
    return found


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_fuzzing_finds_no_server_error_and_no_undocumented_status(
        served: Served, document: dict[str, Any], with_token: bool) -> None:
    """Every FastAPI operation, fed valid and invalid input, answers a status its document lists,
    and never 5xx."""
    schema = schemathesis.openapi.from_dict(document).exclude(path_regex=ENTRY_POINTS)
    headers = {"Authorization": f"Bearer {served.token}"} if with_token else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    found = [f for operation in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
             for f in _fuzz(operation, mode, served.base, headers)]
    assert not found, "\n".join(found)


def test_refusals_are_documented_as_problem_json(document: dict[str, Any]) -> None:
    """The routers' 400/401/403/404 answers are problem+json with the shared Problem schema, and
    FastAPI's own 422 shape, which the gateway never sends, is gone."""
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    for path in ("/audit/entries/{index}", "/deliveries", "/metrics", "/stats/dossiers"):
        answers = document["paths"][path]["get"]["responses"]
        for status in ("400", "401", "403", "404", "500"):
            schema = answers[status]["content"][PROBLEM]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (path, status)
        assert "422" not in answers, path
        assert document["paths"][path]["get"]["security"] == [{"bearerToken": []}]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    token = document["paths"]["/oauth/token"]["post"]["responses"]
    assert token["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/OAuthError")


def test_the_plain_asgi_entry_points_are_described(document: dict[str, Any]) -> None:
    """/r1 exchanges and the SOAP face appear in the document with their parameters, X-Road
    headers, bodies and answers, though no FastAPI route serves them."""
    service = "{instance}/{class}/{member}/{subsystem}/{service}"
    rest = document["paths"][f"/r1/{service}"]
    assert {"get", "post", "put", "patch", "delete"} <= set(rest)
    post = rest["post"]
    names = {(p["in"], p["name"]) for p in post["parameters"]}
    assert {("path", "instance"), ("path", "service"), ("header", "X-Road-Client"),
            ("header", "X-Road-UserId"), ("header", "X-Road-Issue"), ("header", "Idempotency-Key")} <= names
    assert "application/json" in post["requestBody"]["content"]
    for status in ("200", "202", "400", "401", "403", "404", "413", "422", "429", "502", "503", "504"):
        assert status in post["responses"], status
    assert post["responses"]["401"]["content"][PROBLEM]["schema"]["$ref"].endswith("/Problem")
    assert ("path", "path") in {(p["in"], p["name"]) for p in
                                document["paths"][f"/r1/{service}/{{path}}"]["get"]["parameters"]}
    soap = document["paths"][f"/soap/{service}"]
    assert "text/xml" in soap["post"]["requestBody"]["content"]
    assert {"200", "500"} <= set(soap["post"]["responses"])
    assert ("query", "wsdl") in {(p["in"], p["name"]) for p in soap["get"]["parameters"]}
    assert "post" in document["paths"]["/soap"]
    assert document["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
