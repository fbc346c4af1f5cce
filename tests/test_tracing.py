"""Traces of the exchanges (gateway/tracing): the spans the pipeline makes and what they carry, the
W3C trace context taken from callers and handed to upstreams, export over OTLP/HTTP to a real
receiver, and, with tracing off (the default), no span and no OpenTelemetry in the process."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import tracing, upstream
from gateway.config import Config, TracingSettings
from gateway.connector import Call, Reply
from gateway.context import Exchange
from gateway.exchange import Pipeline
from gateway.policy import Policy
from gateway.runtime import Runtime, StartupError
from gateway.simulation import free_port
from gateway.tracing.spans import Tracer
from tests.conftest import ROOT, start_stack, stop
from tests.helpers import rest_only_config
from tests.test_pipeline_units import (
    CLIENT,
    OTHER,
    SERVICE,
    Sink,
    Upstream,
    echo,
    exchange,
    ports,
    render,
    rule,
    run,
)

PERSON = "001099012345"  # a SoDinhDanh: in the body, never in a span
TOKEN = "Bearer good"
OFFICIAL = "can-bo-7"  # X-Road-UserId
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(Tracer(provider))
    yield exporter
    tracing.install(None)
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    named = {span.name: span for span in finished}
    assert len(named) == len(finished), "one span of each name"
    return named


def personal_exchange(**extra: Any) -> Exchange:
    body = orjson.dumps({"SoDinhDanh": PERSON, "HoVaTen": "Nguyễn Văn An"})
    return exchange(body, user_id=OFFICIAL, represented_party="EE/BUSINESS/123",
                    issue=f"H41.31-250101-0001 {PERSON}", query=f"id={PERSON}",
                    **extra)


def attribute_values(span: ReadableSpan) -> list[str]:
    return [str(value) for value in (span.attributes or {}).values()]


# -- the spans of one exchange ------------------------------------------------------------------------

def test_an_exchange_is_one_span_with_policy_connector_and_audit_inside(
        spans: InMemorySpanExporter) -> None:
    """exchange (SERVER for REST) is the parent of policy, connector (CLIENT) and audit."""
    rendered = run(Pipeline(ports()).run(personal_exchange(), render))
    assert rendered.status == 200
    named = by_name(spans)
    assert set(named) == {"exchange", "policy", "connector", "audit"}
    root = named["exchange"]
    assert root.parent is None and root.kind is SpanKind.SERVER
    for child in ("policy", "connector", "audit"):
        parent = named[child].parent
        assert parent is not None and root.context is not None
        assert parent.span_id == root.context.span_id
        assert named[child].context.trace_id == root.context.trace_id
    assert named["connector"].kind is SpanKind.CLIENT
    assert root.attributes == {
        "lienthong.protocol": "rest", "lienthong.exchange_id": "ex-1", "http.request.method": "POST",
        "lienthong.service": SERVICE, "lienthong.operation": "echo", "lienthong.client": CLIENT,
        "lienthong.rule": "echo", "lienthong.outcome": "ok", "http.response.status_code": 200,
        "lienthong.audit.leaf": 0}
    assert named["policy"].attributes == {"lienthong.decision": "allowed", "lienthong.rule": "echo"}
    assert named["audit"].attributes == {"lienthong.audit.leaf": 0}
    assert named["connector"].attributes == {"lienthong.service": SERVICE,
                                             "url.full": "http://127.0.0.1:9/"}


def test_no_span_carries_a_body_a_token_a_personal_id_or_the_official(
        spans: InMemorySpanExporter) -> None:
    """Nothing of the body, the token, the path, the query, the purpose or the acting official."""
    run(Pipeline(ports()).run(personal_exchange(), render))
    run(Pipeline(ports(refusing())).run(personal_exchange(), render))
    finished = spans.get_finished_spans()
    assert len(finished) >= 6
    for span in finished:
        for value in attribute_values(span):
            for secret in (PERSON, "Nguyễn", "good", OFFICIAL, "EE/BUSINESS", "H41.31-250101"):
                assert secret not in value, (span.name, value)
        assert not span.events, "no exception events: their messages may quote the body"


def refusing() -> Policy:
    """A policy that lets nobody but another client call the service."""
    return Policy([rule(clients=[OTHER])])


def test_a_refusal_is_traced_with_the_policys_decision(spans: InMemorySpanExporter) -> None:
    """policy says refused, the exchange says refused with its status; no connector span."""
    rendered = run(Pipeline(ports(refusing())).run(personal_exchange(), render))
    assert rendered.status == 403
    named = by_name(spans)
    assert "connector" not in named
    assert named["policy"].attributes is not None
    assert named["policy"].attributes["lienthong.decision"] == "refused"
    assert named["policy"].attributes["lienthong.error"] == rendered.body.decode()  # the error code
    root = named["exchange"].attributes
    assert root is not None
    assert (root["lienthong.outcome"], root["http.response.status_code"]) == ("refused", 403)
    assert named["exchange"].status.status_code is StatusCode.UNSET  # a refusal is not a fault


def test_an_audit_log_that_fails_marks_the_audit_span_and_the_exchange(
        spans: InMemorySpanExporter) -> None:
    """The 503 the client gets is on the exchange span; the audit span is an error."""
    rendered = run(Pipeline(ports(sink=Sink(down=True))).run(exchange(b"{}"), render))
    assert rendered.status == 503
    named = by_name(spans)
    assert named["audit"].status.status_code is StatusCode.ERROR
    assert named["exchange"].status.status_code is StatusCode.ERROR
    assert named["exchange"].attributes is not None
    assert "lienthong.audit.leaf" not in named["exchange"].attributes


def test_a_path_naming_no_service_is_not_recorded(spans: InMemorySpanExporter) -> None:
    """Only registered ids: what an unknown path said stays out of the span."""
    rendered = run(Pipeline(ports()).run(exchange(b"{}", service_id=f"VN/GOV/{PERSON}/X/Y"), render))
    assert rendered.status == 404
    root = by_name(spans)["exchange"]
    assert root.attributes is not None and "lienthong.service" not in root.attributes
    assert all(PERSON not in value for value in attribute_values(root))


def test_a_callers_traceparent_is_the_exchanges_parent(spans: InMemorySpanExporter) -> None:
    """The caller's W3C trace id and span id become the exchange span's trace and parent."""
    run(Pipeline(ports()).run(exchange(b"{}", traceparent=TRACEPARENT, tracestate="vendor=1"), render))
    root = by_name(spans)["exchange"]
    assert f"{root.context.trace_id:032x}" == CALLER_TRACE
    assert root.parent is not None and f"{root.parent.span_id:016x}" == CALLER_SPAN
    assert root.parent.is_remote
    assert root.context.trace_state.get("vendor") == "1"


def test_a_malformed_traceparent_starts_a_trace_of_its_own(spans: InMemorySpanExporter) -> None:
    run(Pipeline(ports()).run(exchange(b"{}", traceparent="00-nonsense-01"), render))
    root = by_name(spans)["exchange"]
    assert root.parent is None


def test_a_delivery_or_flow_step_is_internal_and_not_parented_by_a_header(
        spans: InMemorySpanExporter) -> None:
    """Only the faces clients call take a trace from a header."""
    run(Pipeline(ports()).run(exchange(b"{}", protocol="flow", traceparent=TRACEPARENT), render))
    root = by_name(spans)["exchange"]
    assert root.kind is SpanKind.INTERNAL and root.parent is None
    assert root.attributes is not None and root.attributes["lienthong.protocol"] == "flow"


def test_the_upstream_request_carries_the_connector_spans_traceparent(
        spans: InMemorySpanExporter) -> None:
    """upstream.send adds traceparent (httpx path) naming the connector span; the upstream's
    status and server land on that span."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    async def connector(call: Call) -> Reply:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            got = await upstream.send(http, "POST", "https://user:pw@upstream.example:8443/a?id=1",
                                      deadline=5, content=call.body, headers={"X-A": "1"})
        return Reply(payload=orjson.loads(got.content), status=got.status_code)

    run(Pipeline(ports(upstream=Upstream(connector))).run(exchange(b"{}", traceparent=TRACEPARENT),
                                                           render))
    named = by_name(spans)
    span = named["connector"]
    assert seen[0].headers["traceparent"] == \
        f"00-{CALLER_TRACE}-{span.context.span_id:016x}-01"
    assert seen[0].headers["x-a"] == "1"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 201
    assert (span.attributes["server.address"], span.attributes["server.port"]) == \
        ("upstream.example", 8443)


def test_a_caller_that_does_not_sample_gets_no_spans_but_its_trace_goes_on_upstream(
        spans: InMemorySpanExporter) -> None:
    """traceparent flagged 00: nothing recorded, the upstream still gets the caller's trace."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async def connector(call: Call) -> Reply:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            got = await upstream.send(http, "POST", "http://upstream.example/", deadline=5)
        return Reply(payload=orjson.loads(got.content), status=got.status_code)

    unsampled = f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
    rendered = run(Pipeline(ports(upstream=Upstream(connector))).run(
        exchange(b"{}", traceparent=unsampled), render))
    assert rendered.status == 200
    assert spans.get_finished_spans() == ()
    sent = seen[0].headers["traceparent"]
    assert sent.startswith(f"00-{CALLER_TRACE}-") and sent.endswith("-00")


def test_upstream_send_outside_any_span_adds_no_traceparent(spans: InMemorySpanExporter) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            await upstream.send(http, "GET", "http://upstream.example/", deadline=5)

    run(call())
    assert "traceparent" not in seen[0].headers


def test_with_tracing_off_no_span_is_made() -> None:
    """The default: the hooks find no tracer, the pipeline runs as ever."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.ACTIVE is None
    assert run(Pipeline(ports(upstream=echo())).run(exchange(b"{}", traceparent=TRACEPARENT),
                                                    render)).status == 200
    assert exporter.get_finished_spans() == ()


# -- settings and start-up ------------------------------------------------------------------------

def test_tracing_is_off_by_default_and_its_settings_are_checked() -> None:
    settings = Config().tracing
    assert (settings.enabled, settings.endpoint, settings.service_name, settings.sample_ratio,
            settings.headers) == (False, None, "lienthong", 1.0, {})
    for bad in ({"sample_ratio": 1.5}, {"endpoint": "collector:4318"}, {"service_name": ""},
                {"exporter": "zipkin"}):
        with pytest.raises(ValueError):
            TracingSettings.model_validate(bad)


def test_export_headers_may_be_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTLP_KEY", "s3cret")
    config, _ = rest_only_config(tmp_path, tracing={"enabled": True, "headers": {"X-Api-Key": "${OTLP_KEY}"}})
    assert config.tracing.headers == {"X-Api-Key": "s3cret"}


def test_enabled_without_the_packages_stops_the_start_saying_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = rest_only_config(tmp_path, tracing={"enabled": True})
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    with pytest.raises(StartupError, match=r"pip install 'lienthong\[tracing\]'"):
        Runtime.build(config)


def test_start_and_stop_install_and_remove_the_exporting_tracer() -> None:
    settings = TracingSettings(enabled=True, endpoint=f"http://127.0.0.1:{free_port()}/v1/traces")
    tracer = tracing.start(settings)
    try:
        assert tracer is not None and tracing.ACTIVE is tracer
    finally:
        run(tracing.stop(tracer))
    assert tracing.ACTIVE is None
    assert tracing.start(TracingSettings()) is None


_OFF = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from fastapi.testclient import TestClient
from gateway.app import create_app
from tests.helpers import rest_only_config
from gateway.storage.db import upgrade
config, secrets = rest_only_config(Path({tmp!r}))
assert not config.tracing.enabled
upgrade(config.database_url)
client_id = "VN/GOV/000.00.00.H41/MOTCUA"
with TestClient(create_app(config)) as client:
    token = client.post("/oauth/token", data={{"grant_type": "client_credentials"}},
                        auth=(client_id, secrets[client_id])).json()["access_token"]
    r = client.post("/r1/VN/GOV/000.00.00.H41/DANHMUC/echo", json={{"a": 1}},
                    headers={{"Authorization": "Bearer " + token, "traceparent": {tp!r}}})
    assert r.headers["x-road-id"], r.text
print(sorted(name for name in sys.modules if name.startswith(_SDK)))
"""
# FastAPI itself imports opentelemetry-api (its native telemetry, idle while no global tracer
# provider is set, which the gateway never sets); what tracing would add is the SDK, the exporter,
# protobuf and gateway.tracing.spans.
_SDK = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "google.protobuf",
        "gateway.tracing.spans")


def test_a_gateway_with_tracing_off_loads_nothing_of_opentelemetrys_sdk(tmp_path: Path) -> None:
    """An in-process app (create_app) serving an exchange, in a fresh interpreter: no SDK, no
    exporter, no tracer of the gateway's."""
    script = f"_SDK = {_SDK!r}\n" + _OFF.format(root=str(ROOT), tmp=str(tmp_path), tp=TRACEPARENT)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- end to end: a gateway process exporting to an OTLP/HTTP receiver --------------------------------

class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint on loopback keeping the spans it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Export)
        self.spans: list[tuple[dict[str, Any], Any]] = []  # (resource attributes, span)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _Export(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.server.spans.extend((resource, span) for span in scope_spans.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _attributes(span: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in span.attributes:
        value = item.value
        found[item.key] = value.string_value if value.HasField("string_value") else value.int_value
    return found


def test_a_traced_gateway_exports_the_exchange_and_hands_its_trace_upstream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real sockets: a REST exchange with a caller's traceparent; the receiver gets the exchange's
    spans in the caller's trace, and the upstream got the connector span's traceparent."""
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s, not 5 s

    def edit(cfg: dict[str, Any]) -> None:
        cfg["tracing"] = {"enabled": True, "endpoint": receiver.url, "service_name": "lienthong-test"}

    stack, procs = start_stack(tmp_path, edit=edit)
    try:
        r = httpx.post(f"{stack.base}/r1/VN/GOV/000.00.00.H41/DANHMUC/echo",
                       json={"SoDinhDanh": PERSON},
                       headers={"Authorization": f"Bearer {stack.token(CLIENT)}",
                                "traceparent": TRACEPARENT})
        assert r.status_code == 200, r.text
        exchange_id = r.headers["x-road-id"]
        received = httpx.get(f"{stack.sims['rest']}/_sim/received").json()["items"]
        upstream_parent = received[-1]["headers"]["traceparent"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with receiver.lock:
                names = {span.name: (resource, span) for resource, span in receiver.spans}
            if {"exchange", "policy", "connector", "audit"} <= set(names):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"spans exported: {sorted(names)}")
    finally:
        stop(procs)
        receiver.shutdown()
    resource, root = names["exchange"]
    assert resource["service.name"] == "lienthong-test"
    assert root.trace_id.hex() == CALLER_TRACE and root.parent_span_id.hex() == CALLER_SPAN
    assert root.kind == root.SPAN_KIND_SERVER
    attributes = _attributes(root)
    assert attributes["lienthong.exchange_id"] == exchange_id
    assert (attributes["lienthong.client"], attributes["http.response.status_code"]) == (CLIENT, 200)
    _, connector = names["connector"]
    assert upstream_parent == f"00-{CALLER_TRACE}-{connector.span_id.hex()}-01"
    assert _attributes(connector)["http.response.status_code"] == 200
    for _, span in names.values():
        assert span.trace_id.hex() == CALLER_TRACE
        assert all(PERSON not in str(value) for value in _attributes(span).values())
