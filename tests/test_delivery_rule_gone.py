"""A stored request keeps the decision it was accepted under (issue 18, item 3): the answer is cut to
the response fields its rule allowed then, whatever the rule says when it is sent; and a request
whose allowing rule is gone after a policy reload is never sent: the operator withdrew what allowed
it, so the gateway fails closed and the delivery dies as forbidden, audited."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.connector import Call, Reply
from gateway.exchange import Exchange, Rendered, Result
from gateway.policy import Kept
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector, InProcess, rest_only_config

ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"


async def _echo(call: Call) -> Reply:
    return Reply({"echo": call.payload}, wire_request=call.body, wire_response=b"{}")


def _render(result: Result) -> Rendered:
    return Rendered(result.status, [], orjson.dumps({"error": result.error.code if result.error else None}))


def _stored(rule: str) -> Result:
    body = b'{"SoDinhDanh": "001099000001"}'
    exchange = Exchange(id=f"d-{rule}.1", protocol="delivery", received_us=1, method="POST",
                        service_id=ECHO, body=body, content_type="application/json")
    return Result(exchange=exchange, request_sha256="0" * 64, client=CLIENT, rule=rule, operation="echo",
                  payload=orjson.loads(body))


def test_a_delivery_whose_rule_is_gone_is_not_sent(tmp_path: Path) -> None:
    config, secrets = rest_only_config(tmp_path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        gateway = InProcess(client, secrets)
        pipeline = gateway.runtime.pipeline
        upstream = FunctionConnector(_echo)
        gateway.runtime.connectors[ECHO] = upstream
        service = config.service(ECHO)
        assert service is not None
        allowing = next(r.name for r in pipeline.policy.rules if any("DANHMUC" in s for s in r.services))

        sent, _ = asyncio.run(pipeline.deliver(replace(_stored(allowing), service=service), _render))
        assert sent.error is None and upstream.calls == 1  # the rule still there: delivered

        gone, rendered = asyncio.run(pipeline.deliver(replace(_stored("renamed-away"), service=service),
                                                      _render))
    assert upstream.calls == 1, "a request whose rule is gone must never reach the upstream"
    assert gone.error is not None and gone.error.status == 403 and not gone.error.retryable
    assert orjson.loads(rendered.body)["error"] == gone.error.code



def test_a_delivery_is_answered_by_the_decision_it_was_accepted_under(tmp_path: Path) -> None:
    """The rule lets the whole answer leave now; the message was accepted when it let only
    ``echo.SoDinhDanh`` leave: that is what leaves. Stored before decisions were kept (None):
    the rule's own fields apply."""
    config, secrets = rest_only_config(tmp_path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        gateway = InProcess(client, secrets)
        pipeline = gateway.runtime.pipeline
        gateway.runtime.connectors[ECHO] = FunctionConnector(_echo)
        service = config.service(ECHO)
        assert service is not None
        allowing = next(r for r in pipeline.policy.rules if any("DANHMUC" in s for s in r.services))
        assert allowing.response_fields is None
        person = {"SoDinhDanh": "001099000001", "HoVaTen": "Nguyễn Văn An"}
        stored = replace(_stored(allowing.name), service=service, payload=person)
        narrow, _ = asyncio.run(pipeline.deliver(stored, _render, Kept(("echo.SoDinhDanh", ))))
        whole, _ = asyncio.run(pipeline.deliver(stored, _render, Kept(None)))
        old, _ = asyncio.run(pipeline.deliver(stored, _render, None))
    assert narrow.reply is not None and narrow.reply.payload == {"echo": {"SoDinhDanh": "001099000001"}}
    assert whole.reply is not None and old.reply is not None
    assert whole.reply.payload == old.reply.payload == {"echo": person}


def test_kept_fields_round_trip() -> None:
    for kept in (Kept(None), Kept(()), Kept(("a", "b.c"))):
        assert Kept.loads(kept.dumps()) == kept
    assert Kept.loads(None) is None
