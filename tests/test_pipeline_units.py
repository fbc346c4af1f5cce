"""The pipeline and its steps as units: built from plain functions and small stand-ins, no app,
no database, no sockets (gateway/exchange.py, gateway/steps.py, gateway/context.py)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import exchange as exchange_module
from gateway import steps
from gateway.audit.bodies import Bodies
from gateway.audit.record import AuditRecord, BodyDigest
from gateway.config import Config
from gateway.connector import Call, Reply
from gateway.context import Exchange, OutOfOrder, Rendered, Result, Stop, stop
from gateway.errors import (
    AccessDenied,
    AuditUnavailable,
    Forbidden,
    GatewayError,
    InvalidBody,
    RateLimited,
    ServerError,
    UnknownMember,
    UnknownService,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.exchange import Pipeline, Ports
from gateway.oauth.verifier import TokenInfo
from gateway.policy import Kept, Policy
from gateway.policy.rules import Rule
from gateway.ratelimit import LocalLimiter, Quota, Rate, Verdict
from gateway.spool import spool_pieces

MEMBER = "VN/GOV/000.00.00.H41"
CLIENT = f"{MEMBER}/MOTCUA"
OTHER = "VN/GOV/000.00.00.G01/BCA"
SERVICE = f"{MEMBER}/DANHMUC/echo"
T = TypeVar("T")


def config(**extra: Any) -> Config:
    data: dict[str, Any] = {
        "members": [{"id": MEMBER, "subsystems": [{"code": "MOTCUA"}, {"code": "DANHMUC"}]},
                    {"id": "VN/GOV/000.00.00.G01", "subsystems": [{"code": "BCA"}]}],
        "services": [{"id": SERVICE, "connector": "rest", "upstream": "http://127.0.0.1:9/",
                      "subjects": ["SoDinhDanh"]},
                     {"id": f"{MEMBER}/DANHMUC/queue", "connector": "rest",
                      "upstream": "http://127.0.0.1:9/", "delivery": "async"},
                     {"id": f"{MEMBER}/DANHMUC/items", "connector": "rest",
                      "upstream": "http://127.0.0.1:9/", "extra_path": "/items"}],
    }
    data.update(extra)
    return Config.model_validate(data)


def rule(name: str = "echo", **extra: Any) -> Rule:
    return Rule.model_validate({"name": name, "services": [f"{MEMBER}/DANHMUC/*"],
                                "clients": [CLIENT], **extra})


def exchange(body: bytes = b"", content_type: str = "application/json", **extra: Any) -> Exchange:
    fields: dict[str, Any] = {"id": "ex-1", "protocol": "rest", "received_us": 1, "method": "POST",
                              "service_id": SERVICE, "body": body, "content_type": content_type,
                              "authorization": "Bearer good", **extra}
    return Exchange(**fields)


def start(ex: Exchange | None = None, **extra: Any) -> Result:
    ex = ex or exchange()
    return Result(exchange=ex, request_sha256=hashlib.sha256(ex.body).hexdigest(), **extra)


def tokens(holder: str = CLIENT, scopes: frozenset[str] = frozenset()) -> steps.TokenCheck:
    def check(authorization: str | None) -> TokenInfo:
        if authorization != "Bearer good":
            raise AccessDenied("no valid token")
        return TokenInfo(client_id=holder, scopes=scopes, expires_at=2**40, jti="j")
    return check


def hasher(value: str) -> str:
    return "h:" + value


@dataclass
class Sink:
    """An audit log that keeps records in a list, or refuses them all."""

    records: list[AuditRecord] = field(default_factory=list)
    bodies: list[Bodies | None] = field(default_factory=list)
    down: bool = False

    async def append(self, record: AuditRecord, *, bodies: Bodies | None = None) -> int:
        if self.down:
            raise AuditUnavailable("the audit log is down")
        self.records.append(record)
        self.bodies.append(bodies)
        return len(self.records) - 1


@dataclass
class Upstream:
    """A connector answering with a function of the call."""

    answer: Callable[[Call], Awaitable[Reply]]
    calls: list[Call] = field(default_factory=list)

    async def call(self, call: Call) -> Reply:
        self.calls.append(call)
        return await self.answer(call)

    async def aclose(self) -> None:
        return None


def echo(payload: Any = None) -> Upstream:
    async def answer(call: Call) -> Reply:
        return Reply(payload=payload if payload is not None else call.payload,
                     wire_request=call.body, wire_response=b"wire")
    return Upstream(answer)


def ports(policy: Policy | None = None, *, sink: Sink | None = None, upstream: Upstream | None = None,
          **extra: Any) -> Ports:
    return Ports(config=extra.pop("catalog", None) or config(), tokens=extra.pop("check", None) or tokens(),
                 policy=policy or Policy([rule()]), connectors={SERVICE: upstream or echo()},
                 audit=sink or Sink(), subjects=hasher, **extra)


def render(ctx: Result) -> Rendered:
    if ctx.error is not None:
        return Rendered(ctx.error.status, [], ctx.error.code.encode())
    assert ctx.reply is not None
    return Rendered(ctx.reply.status, [], orjson.dumps(ctx.reply.payload))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# -- a pipeline from plain functions ------------------------------------------------------------------

def test_a_pipeline_runs_its_own_steps_in_order_and_audits_once() -> None:
    seen: list[str] = []

    def named(name: str) -> Callable[[Result], Awaitable[Result]]:
        async def step(ctx: Result) -> Result:
            seen.append(name)
            return replace(ctx, operation=(ctx.operation or "") + name)
        return step

    async def answer(ctx: Result) -> Result:
        seen.append("send")
        return replace(ctx, reply=Reply(payload={"op": ctx.operation}))

    sink = Sink()
    pipeline = Pipeline(ports(sink=sink), checks=[named("a"), named("b"), named("c")], send=answer)
    rendered = run(pipeline.run(exchange(), render))
    assert seen == ["a", "b", "c", "send"]
    assert (rendered.status, orjson.loads(rendered.body)) == (200, {"op": "abc"})
    assert [(r.outcome, r.status, r.operation) for r in sink.records] == [("ok", 200, "abc")]


def test_a_stop_keeps_what_its_step_learnt_and_skips_the_rest() -> None:
    sent: list[Result] = []

    async def learns_then_refuses(ctx: Result) -> Result:
        raise stop(replace(ctx, rule="learnt"), Forbidden("no"))

    async def never(ctx: Result) -> Result:
        sent.append(ctx)
        return ctx

    sink = Sink()
    pipeline = Pipeline(ports(sink=sink), checks=[learns_then_refuses, never], send=never)
    rendered = run(pipeline.run(exchange(), render))
    assert sent == []
    assert rendered.status == 403
    assert (sink.records[0].rule, sink.records[0].outcome) == ("learnt", "refused")


def test_a_plain_gateway_error_stops_with_the_context_before_its_step() -> None:
    async def first(ctx: Result) -> Result:
        return replace(ctx, rule="first")

    async def refuses(ctx: Result) -> Result:
        raise InvalidBody("bad body")

    sink = Sink()
    rendered = run(Pipeline(ports(sink=sink), checks=[first, refuses], send=first).run(exchange(), render))
    assert rendered.status == InvalidBody.status
    assert sink.records[0].rule == "first"
    assert sink.records[0].error == InvalidBody.code


def logged(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The statuses of the exchange log lines the pipeline writes from now on (as ``_log`` is asked
    to write them: structlog's own capture misses a logger another test's app has cached)."""
    lines: list[int] = []
    monkeypatch.setattr(exchange_module, "_log", lambda ctx, rendered: lines.append(rendered.status))
    return lines


def test_a_pipeline_audits_only_the_outcomes_it_is_told_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow engine's: its accepted hand-overs to the queue are audited and logged by the
    deliveries' attempts; a refused one is an exchange denied, a leaf and a line."""
    async def first(ctx: Result) -> Result:
        return replace(ctx, rule="first")

    async def accepted(ctx: Result) -> Result:
        return replace(ctx, reply=Reply(payload={"deliveryId": "d1"}, status=202))

    async def refuses(ctx: Result) -> Result:
        raise Forbidden("no")

    sink = Sink()

    def refused(ctx: Result) -> bool:
        return ctx.error is not None

    accepting = Pipeline(ports(sink=sink), checks=[first], send=accepted, audited=refused)
    refusing = Pipeline(ports(sink=sink), checks=[first, refuses], send=accepted, audited=refused)
    lines = logged(monkeypatch)  # nor a log line: the deliveries' attempts have theirs
    ok = run(accepting.run(exchange(), render))
    assert ok.status == 202 and sink.records == [] and lines == []
    no = run(refusing.run(exchange(), render))
    assert no.status == 403
    assert [(r.outcome, r.rule) for r in sink.records] == [("refused", "first")]
    assert lines == [403]


def test_an_answer_the_dialect_cannot_say_is_rendered_as_its_error() -> None:
    def picky(ctx: Result) -> Rendered:
        if ctx.error is None:
            raise UpstreamError("the reply cannot be said in this dialect")
        return render(ctx)

    sink = Sink()
    rendered = run(Pipeline(ports(sink=sink)).run(exchange(b"{}"), picky))
    assert rendered.status == UpstreamError.status
    assert sink.records[0].error == UpstreamError.code


def test_no_answer_leaves_unaudited() -> None:
    """The audit log refusing the record turns the answer into its 503: the reply is dropped."""
    upstream = echo({"secret": "kept back"})
    rendered = run(Pipeline(ports(sink=Sink(down=True), upstream=upstream)).run(exchange(b"{}"), render))
    assert upstream.calls, "the call was made"
    assert rendered.status == 503
    assert b"kept back" not in rendered.body


def test_refuse_audits_an_entry_point_refusal_without_running_a_step() -> None:
    async def boom(ctx: Result) -> Result:
        raise AssertionError("no step runs for a refused exchange")

    sink = Sink()
    pipeline = Pipeline(ports(sink=sink), checks=[boom], send=boom)
    rendered = run(pipeline.refuse(exchange(), InvalidBody("too large"), render))
    assert rendered.status == 400
    assert sink.records[0].error == InvalidBody.code
    assert sink.records[0].client is None


def test_answer_authenticates_then_lets_the_gateway_answer() -> None:
    sink = Sink()
    pipeline = Pipeline(ports(sink=sink))
    ok = run(pipeline.answer(exchange(), lambda ctx: replace(ctx, reply=Reply({"who": ctx.caller()})),
                             render))
    assert orjson.loads(ok.body) == {"who": CLIENT}
    refused = run(pipeline.answer(exchange(authorization=None),
                                  lambda ctx: pytest.fail("not authenticated"), render))
    assert refused.status == AccessDenied.status
    assert [r.client for r in sink.records] == [CLIENT, None]


def test_the_standard_pipeline_end_to_end_over_stand_ins() -> None:
    sink, upstream = Sink(), echo()
    pipeline = Pipeline(ports(sink=sink, upstream=upstream))
    body = orjson.dumps({"SoDinhDanh": "001099012345", "x": 1})
    rendered = run(pipeline.run(exchange(body, issue="H41.31-250101-0001", user_id="u1"), render))
    assert rendered.status == 200
    assert orjson.loads(rendered.body) == {"SoDinhDanh": "001099012345", "x": 1}
    call = upstream.calls[0]
    assert call.headers == {"X-Road-Id": "ex-1", "X-Road-Client": CLIENT, "X-Road-UserId": "u1",
                            "X-Road-Issue": "H41.31-250101-0001"}
    record = sink.records[0]
    assert (record.client, record.service, record.rule, record.subjects) == (
        CLIENT, SERVICE, "echo", ("h:001099012345",))
    assert record.purpose == "H41.31-250101-0001"
    assert record.upstream_response is not None


def test_a_reloaded_policy_decides_the_next_exchange() -> None:
    pipeline = Pipeline(ports())
    assert run(pipeline.run(exchange(b"{}"), render)).status == 200
    pipeline.policy = Policy([rule(clients=[OTHER])])
    refused = run(pipeline.run(exchange(b"{}"), render))
    assert refused.status == 403


def test_a_refused_lookup_still_names_its_subject() -> None:
    """A refusal before the body was read: the record still carries the person it was about."""
    sink = Sink()
    pipeline = Pipeline(ports(Policy([rule(clients=[OTHER])]), sink=sink))
    run(pipeline.run(exchange(orjson.dumps({"SoDinhDanh": "001099000001"})), render))
    assert sink.records[0].subjects == ("h:001099000001",)
    garbled = run(pipeline.run(exchange(b"{not json"), render))
    assert garbled.status == 403 and sink.records[1].subjects == ()


def test_bodies_are_kept_only_where_the_rule_says() -> None:
    sink = Sink()
    run(Pipeline(ports(Policy([rule(keep_bodies=True, retention_days=30)]), sink=sink))
        .run(exchange(b'{"a":1}'), render))
    run(Pipeline(ports(sink=sink)).run(exchange(b'{"a":1}'), render))
    kept, none = sink.bodies
    assert kept is not None and kept.request == b'{"a":1}' and kept.retention_days == 30
    assert none is None


def test_kept_bodies_of_a_spooled_request_match_the_records_digests(tmp_path: Path) -> None:
    """A large body sent from its file (a pushed document, a package sent in): the record says the
    upstream got the request as it came, so the kept upstream request is those bytes, not the
    connector's empty wire copy (``lienthong audit verify`` matches each kept body to its digest)."""
    body = b"<edXMLEnvelope/>" * 100_000
    sink = Sink()
    pipeline = Pipeline(ports(Policy([rule(keep_bodies=True)]), sink=sink,
                              upstream=Streaming(echo({"ok": True}).answer)))
    spooled = spool_pieces([body], tmp_path)
    try:
        arrived = replace(exchange(b""), spooled=spooled)
        run(pipeline.run(arrived, render))
    finally:
        spooled.close()
    (record,), (kept,) = sink.records, sink.bodies
    assert kept is not None and kept.request == body and kept.upstream_request == body
    assert record.request == BodyDigest.of(body) == record.upstream_request
    assert record.response == BodyDigest.of(kept.response)


# -- deliveries --------------------------------------------------------------------------------------

def stored(rule_name: str | None) -> Result:
    service = config().service(SERVICE)
    return start(exchange(b'{"a":1,"b":2}', protocol="delivery"), client=CLIENT, service=service,
                 operation="echo", rule=rule_name, payload={"a": 1, "b": 2})


def test_a_delivery_is_sent_under_the_fields_it_was_accepted_with() -> None:
    upstream = echo({"a": 1, "b": 2})
    pipeline = Pipeline(ports(Policy([rule(response_fields=["a", "b"])]), upstream=upstream))
    _, rendered = run(pipeline.deliver(stored("echo"), render, Kept(("a",))))
    assert orjson.loads(rendered.body) == {"a": 1}
    whole, _ = run(pipeline.deliver(stored("echo"), render, Kept(None)))
    assert whole.reply is not None and whole.reply.payload == {"a": 1, "b": 2}
    now, _ = run(pipeline.deliver(stored("echo"), render, None))  # stored before decisions were kept
    assert now.reply is not None and now.reply.payload == {"a": 1, "b": 2}


def test_a_delivery_whose_rule_is_gone_is_forbidden_and_not_sent() -> None:
    upstream, sink = echo(), Sink()
    pipeline = Pipeline(ports(sink=sink, upstream=upstream))
    for name in ("renamed-away", None):
        ctx, rendered = run(pipeline.deliver(stored(name), render, Kept(None)))
        assert isinstance(ctx.error, Forbidden) and rendered.status == 403
    assert upstream.calls == []
    assert [r.protocol for r in sink.records] == ["delivery", "delivery"]


# -- the standard steps, one at a time ------------------------------------------------------------

def test_authenticate_takes_the_tokens_client_and_scopes() -> None:
    ctx = steps.authenticate(start(), tokens(scopes=frozenset({"a"})), config())
    assert (ctx.client, ctx.scopes) == (CLIENT, frozenset({"a"}))
    with pytest.raises(AccessDenied):
        steps.authenticate(start(exchange(authorization="Bearer bad")), tokens(), config())


@pytest.mark.parametrize(("header", "error"), [
    ("not an id", Forbidden),
    (OTHER, Forbidden),  # declared, but not the token's
    ("VN/GOV/000.00.00.Z99/NOBODY", UnknownMember),  # nobody declared it
    (MEMBER, Forbidden),  # the member is another client than its subsystem
])
def test_authenticate_refuses_a_client_header_that_is_not_the_token_holder(
        header: str, error: type[GatewayError]) -> None:
    with pytest.raises(Stop) as stopped:
        steps.authenticate(start(exchange(client_header=header)), tokens(), config())
    assert type(stopped.value.result.error) is error
    assert stopped.value.result.client == CLIENT


def test_authenticate_accepts_the_holders_own_name() -> None:
    ctx = steps.authenticate(start(exchange(client_header=CLIENT)), tokens(), config())
    assert ctx.client == CLIENT


def test_resolve_finds_the_service_and_its_operation() -> None:
    ctx = steps.resolve(start(), config())
    assert ctx.service is not None and ctx.service.id == SERVICE and ctx.operation == "echo"
    named = steps.resolve(start(exchange(operation="Other")), config())
    assert named.operation == "Other"


def test_resolve_refuses_an_unknown_service_and_a_path_outside_it() -> None:
    with pytest.raises(Stop) as unknown:
        steps.resolve(start(exchange(service_id=f"{MEMBER}/DANHMUC/nope")), config())
    assert isinstance(unknown.value.result.error, UnknownService)
    with pytest.raises(Stop) as escaped:
        steps.resolve(start(exchange(service_id=f"{MEMBER}/DANHMUC/items", path="/other")), config())
    assert escaped.value.result.error is not None and escaped.value.result.error.status == 404
    assert escaped.value.result.service is not None  # the record names the service it was about
    inside = steps.resolve(start(exchange(service_id=f"{MEMBER}/DANHMUC/items", path="/items/7")),
                           config())
    assert inside.service is not None


def merged() -> Config:
    """H22 ended yesterday; H60 took its work, with a service of the same subsystem and code."""
    yesterday = (date.today() - timedelta(days=2)).isoformat()
    today = (date.today() - timedelta(days=1)).isoformat()
    return Config.model_validate({
        "members": [
            {"id": "VN/GOV/000.00.00.H22", "subsystems": [{"code": "DANHMUC"}], "valid_until": yesterday,
             "successor": "VN/GOV/000.00.00.H60"},
            {"id": "VN/GOV/000.00.00.H60", "subsystems": [{"code": "DANHMUC"}, {"code": "MOTCUA"}],
             "valid_from": today}],
        "services": [{"id": "VN/GOV/000.00.00.H60/DANHMUC/echo", "connector": "rest",
                      "upstream": "http://127.0.0.1:9/"}]})


def test_resolve_sends_a_former_agencys_call_to_its_successor() -> None:
    ctx = steps.resolve(start(exchange(service_id="VN/GOV/000.00.00.H22/DANHMUC/echo")), merged())
    assert ctx.service is not None and ctx.service.id == "VN/GOV/000.00.00.H60/DANHMUC/echo"
    assert ctx.agency is not None
    assert (ctx.agency.addressed, ctx.agency.actual) == ("VN/GOV/000.00.00.H22", "VN/GOV/000.00.00.H60")
    with pytest.raises(Stop) as none:
        steps.resolve(start(exchange(service_id="VN/GOV/000.00.00.H22/DANHMUC/other")), merged())
    assert none.value.result.error is not None
    assert "VN/GOV/000.00.00.H60/DANHMUC/other" in none.value.result.error.detail


def authenticated_and_resolved(**extra: Any) -> Result:
    return steps.resolve(steps.authenticate(start(exchange(**extra)), tokens(), config()), config())


def test_authorise_records_the_rule_and_where_subjects_sit() -> None:
    ctx = steps.authorise(authenticated_and_resolved(), Policy([rule(subjects=["Con.SoDinhDanh"])]),
                          config())
    assert ctx.rule == "echo"
    assert ctx.subject_paths == ("SoDinhDanh", "Con.SoDinhDanh")
    assert ctx.decision is not None and ctx.decision.rule.name == "echo"


def test_authorise_denies_by_default_naming_the_refusing_rule() -> None:
    with pytest.raises(Stop) as refused:
        steps.authorise(authenticated_and_resolved(), Policy([]), config())
    assert isinstance(refused.value.result.error, Forbidden)
    assert refused.value.result.rule == refused.value.result.error.rule


def test_steps_out_of_order_name_the_missing_step() -> None:
    with pytest.raises(OutOfOrder, match="authenticate"):
        start().caller()
    with pytest.raises(OutOfOrder, match="resolve"):
        steps.authorise(steps.authenticate(start(), tokens(), config()), Policy([rule()]), config())
    assert issubclass(OutOfOrder, ServerError)


@dataclass
class Counter:
    allowed: bool
    keys: list[str] = field(default_factory=list)

    async def admit(self, key: str, rate: Rate | None, quota: Quota | None) -> Verdict:
        self.keys.append(key)
        return Verdict(allowed=self.allowed, exceeded=None if self.allowed else "rate", retry_after=7)


def test_admit_counts_per_client_and_service_and_names_the_rule() -> None:
    limited = Policy([rule(rate_limit={"rate": 1, "per": "second"})])
    ctx = steps.authorise(authenticated_and_resolved(), limited, config())
    counter = Counter(allowed=True)
    assert run(steps.admit(ctx, counter)) is ctx
    assert len(counter.keys) == 1 and CLIENT in counter.keys[0] and SERVICE in counter.keys[0]
    with pytest.raises(RateLimited) as refused:
        run(steps.admit(ctx, Counter(allowed=False)))
    assert refused.value.rule == "echo" and "rate limit" in refused.value.detail


def test_admit_lets_an_unlimited_rule_pass_without_counting() -> None:
    ctx = steps.authorise(authenticated_and_resolved(), Policy([rule()]), config())
    counter = Counter(allowed=False)
    assert run(steps.admit(ctx, counter)) is ctx
    assert counter.keys == []


def test_admit_with_a_real_limiter_refuses_the_second_call_in_a_second() -> None:
    limited = Policy([rule(rate_limit={"rate": 1, "per": "minute"})])
    ctx = steps.authorise(authenticated_and_resolved(), limited, config())
    limiter = LocalLimiter()
    run(steps.admit(ctx, limiter))
    with pytest.raises(RateLimited):
        run(steps.admit(ctx, limiter))


def test_parse_reads_json_and_hashes_named_subjects() -> None:
    ctx = replace(start(exchange(b'{"SoDinhDanh": "001099012345"}', "application/json; charset=utf-8")),
                  subject_paths=("SoDinhDanh",))
    parsed = steps.parse(ctx, hasher)
    assert parsed.payload == {"SoDinhDanh": "001099012345"}
    assert parsed.subjects == ("h:001099012345",)
    vendor = steps.parse(start(exchange(b"[1]", "application/vnd.x+json")), hasher)
    assert vendor.payload == [1]
    other = steps.parse(start(exchange(b"<a/>", "text/xml")), hasher)
    assert other.payload is None


def test_parse_refuses_broken_json() -> None:
    with pytest.raises(InvalidBody, match="not valid JSON"):
        steps.parse(start(exchange(b'{"a":')), hasher)


def test_parse_hands_a_non_json_body_to_the_entry_points_decoder() -> None:
    from gateway.context import Decoded

    seen: list[tuple[str, str]] = []

    def decode(service: Any, operation: str) -> Decoded:
        seen.append((service.id, operation))
        return Decoded(payload={"x": 1}, body=b"<x>1</x>", content_type="text/xml")

    ctx = steps.resolve(start(exchange(b"<soap/>", "text/xml", decode=decode)), config())
    parsed = steps.parse(ctx, hasher)
    assert seen == [(SERVICE, "echo")]
    assert parsed.payload == {"x": 1} and parsed.decoded is not None


def test_validate_runs_the_services_schema_check() -> None:
    ctx = authenticated_and_resolved()
    checked: list[Any] = []

    def check(payload: Any) -> None:
        checked.append(payload)
        if payload is None:
            raise InvalidBody("payload required")

    assert steps.validate(replace(ctx, payload={"a": 1}), {SERVICE: check}).payload == {"a": 1}
    with pytest.raises(InvalidBody):
        steps.validate(ctx, {SERVICE: check})
    assert steps.validate(ctx, {}) is ctx
    assert checked == [{"a": 1}, None]


def test_send_stores_an_async_services_request_and_never_calls_the_connector() -> None:
    queued = steps.resolve(steps.authenticate(
        start(exchange(service_id=f"{MEMBER}/DANHMUC/queue")), tokens(), config()), config())

    async def intake(ctx: Result) -> Result:
        return replace(ctx, reply=Reply({"accepted": True}, status=202))

    upstream = echo()
    done = run(steps.send(queued, {SERVICE: upstream}, intake))
    assert done.reply is not None and done.reply.status == 202 and upstream.calls == []

    async def full(ctx: Result) -> Result:
        raise ServerError("the queue is full")

    assert isinstance(run(steps.send(queued, {}, full)).error, ServerError)
    without = run(steps.send(queued, {}, None))
    assert isinstance(without.error, ServerError) and "no delivery queue" in without.error.detail


def sendable(rule_: Rule | None = None) -> Result:
    return steps.authorise(authenticated_and_resolved(), Policy([rule_ or rule()]), config())


def test_invoke_minimises_the_reply_to_the_rules_fields() -> None:
    upstream = echo({"keep": 1, "drop": 2})
    done = run(steps.invoke(sendable(rule(response_fields=["keep"])), {SERVICE: upstream}))
    assert done.reply is not None and done.reply.payload == {"keep": 1}
    assert done.upstream_us is not None and done.upstream_us >= 0


@dataclass
class Streaming(Upstream):
    """A connector that sends a spooled body from its file (as the rest connector does)."""

    streams: bool = True


def test_invoke_hands_a_spooled_body_to_a_connector_that_streams_and_reads_it_for_one_that_does_not(
        tmp_path: Path) -> None:
    body = b"<edXMLEnvelope/>" * 100_000
    ctx = sendable()
    for connector, streams, whole in ((Streaming(echo().answer), True, b""), (echo(), False, body)):
        spooled = spool_pieces([body], tmp_path)
        try:
            with_file = replace(ctx, exchange=replace(ctx.exchange, body=b"", spooled=spooled))
            done = run(steps.invoke(with_file, {SERVICE: connector}))
            assert done.error is None
            (call,) = connector.calls
            assert call.body == whole
            assert (call.spooled is spooled) if streams else call.spooled is None
        finally:
            spooled.close()


def test_invoke_minimises_a_json_reply_given_as_bytes_and_withholds_one_that_is_not() -> None:
    raw = echo(b'{"keep": 1, "drop": 2}')
    done = run(steps.invoke(sendable(rule(response_fields=["keep"])), {SERVICE: raw}))
    assert done.reply is not None and done.reply.payload == {"keep": 1}
    garbled = run(steps.invoke(sendable(rule(response_fields=["keep"])),
                               {SERVICE: echo(b"<not-json/>")}))
    assert isinstance(garbled.error, UpstreamError) and "withheld" in garbled.error.detail


def test_invoke_withholds_what_an_upstream_error_said_under_a_minimising_rule() -> None:
    async def fails(call: Call) -> Reply:
        raise UpstreamError("citizen 001099012345 not found", extra={"status": 404, "body": "x"})

    minimised = run(steps.invoke(sendable(rule(response_fields=["a"])), {SERVICE: Upstream(fails)}))
    assert isinstance(minimised.error, UpstreamError)
    assert "001099012345" not in minimised.error.detail
    assert minimised.error.extra == {"status": 404, "withheld": True}
    whole = run(steps.invoke(sendable(), {SERVICE: Upstream(fails)}))
    assert whole.error is not None and "001099012345" in whole.error.detail


def test_invoke_turns_a_crashed_connector_into_a_500_naming_nothing() -> None:
    async def crashes(call: Call) -> Reply:
        raise KeyError("internal detail")

    done = run(steps.invoke(sendable(), {SERVICE: Upstream(crashes)}))
    assert isinstance(done.error, ServerError) and "internal detail" not in done.error.detail


def test_invoke_bounds_a_connector_that_hangs() -> None:
    catalog = config(services=[{"id": SERVICE, "connector": "rest", "upstream": "http://127.0.0.1:9/",
                                "timeout": 0.01}])
    ctx = steps.resolve(steps.authenticate(start(), tokens(), catalog), catalog)

    async def hangs(call: Call) -> Reply:
        raise TimeoutError  # what asyncio.timeout raises when the guard's time is up

    done = run(steps.invoke(ctx, {SERVICE: Upstream(hangs)}))
    assert isinstance(done.error, UpstreamTimeout)


def test_named_subjects_reads_the_body_of_a_refused_call() -> None:
    refused = start(exchange(b'{"SoDinhDanh": "001099000009"}'), error=Forbidden("no"))
    assert steps.named_subjects(refused, config(), hasher) == ("h:001099000009",)
    unknown = start(exchange(b'{"SoDinhDanh": "1"}', service_id=f"{MEMBER}/DANHMUC/nope"))
    assert steps.named_subjects(unknown, config(), hasher) == ()
    no_paths = start(exchange(b'{"SoDinhDanh": "1"}', service_id=f"{MEMBER}/DANHMUC/queue"))
    assert steps.named_subjects(no_paths, config(), hasher) == ()


@given(st.text(min_size=1, max_size=40))
def test_any_bearer_but_the_good_one_is_refused_and_audited(token: str) -> None:
    sink = Sink()
    rendered = run(Pipeline(ports(sink=sink)).run(exchange(b"{}", authorization=f"Bearer {token}x"),
                                                  render))
    assert rendered.status == 401 or rendered.status == 403
    assert len(sink.records) == 1 and sink.records[0].client is None


def test_total_time_is_measured_from_arrival() -> None:
    sink = Sink()
    ex = exchange(b"{}", started=time.perf_counter() - 0.5)
    run(Pipeline(ports(sink=sink)).run(ex, render))
    assert sink.records[0].total_us >= 500_000
