"""The witness for real: `lienthong witness serve` as its own process on a loopback port, a gateway
configured with it cosigning its checkpoints over the socket, `audit verify --require-cosignatures`
holding, and a forked checkpoint signed with the log's own key refused with 422, never cosigned."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from gateway import keys
from gateway.app import create_app
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.merkle import consistency_proof, leaf_hash, root_from_leaves
from gateway.audit.service import AuditService, origin_of
from gateway.cli import main
from gateway.connector import Call, Reply
from gateway.simulation import free_port
from gateway.storage.db import create_engine, upgrade
from gateway.storage.tables import audit_cosignatures, audit_nodes
from gateway.witness.protocol import build_request
from gateway.witness.state import WitnessStore
from tests.helpers import FunctionConnector, rest_only_config

NAME = "witness.test/e2e"
CLIENT = "VN/GOV/000.00.00.H41/MOTCUA"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"


@dataclass
class Running:
    url: str
    state: Path
    proc: subprocess.Popen[bytes]


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``check`` holds (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the witness exited ({proc.returncode}) before {what}")
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within 60 s: {what}")


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[Running]:
    """A witness process with a fresh key, accepting no log yet."""
    state = tmp_path / "witness-state"
    cli("witness", "init", "--state", str(state), "--name", NAME)
    port = free_port()
    log = (tmp_path / "witness.log").open("wb")
    command = ["witness", "serve", "--state", str(state), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([sys.executable, "-m", "gateway", *command], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url), "the witness serves", proc)
        yield Running(url, state, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def _echo(call: Call) -> Reply:
    return Reply({"echo": call.payload}, wire_request=call.body, wire_response=b'{"up":1}')


def cosigned_sizes(url: str) -> list[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [int(s) for s in conn.execute(sa.select(audit_cosignatures.c.size)
                                                 .where(audit_cosignatures.c.witness == NAME)
                                                 .order_by(audit_cosignatures.c.size)).scalars()]
    finally:
        engine.dispose()


def test_gateway_checkpoints_are_witnessed_and_a_fork_is_refused(tmp_path: Path, witness: Running) -> None:
    """Checkpoints go to the witness process and come back cosigned; verify requires them; a fork
    signed with the log's key gets 422 and no cosignature, and the witness keeps holding the truth."""
    vkey = cli("witness", "vkey", "--state", str(witness.state)).strip()
    config, secrets = rest_only_config(tmp_path / "gw", audit={
        "checkpoint_interval": 0, "witnesses": [{"name": NAME, "url": witness.url, "vkey": vkey}]})
    upgrade(config.database_url)
    origin = origin_of(config)
    seed = keys.load_audit_key(config.path(config.keys_dir), keys.CHECKPOINT_KEY)
    signer = Signer(origin, Ed25519PrivateKey.from_private_bytes(seed))  # the log's own key
    cli("witness", "add-log", "--state", str(witness.state), "--origin", origin, "--vkey", signer.vkey())

    with TestClient(create_app(config)) as http:
        runtime = http.app.api.state.runtime  # type: ignore[attr-defined]
        service: AuditService = http.app.api.state.audit  # type: ignore[attr-defined]
        runtime.connectors[ECHO] = FunctionConnector(_echo)
        r = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                      auth=(CLIENT, secrets[CLIENT]))
        headers = {"Authorization": f"Bearer {r.json()['access_token']}", "Content-Type": "application/json"}

        def exchanges(count: int) -> None:
            for i in range(count):
                r = http.post(f"/r1/{ECHO}", headers=headers,
                              content=orjson.dumps({"SoDinhDanh": "001099000001", "i": i}))
                assert r.status_code == 200, r.text

        sizes = []
        for count in (3, 5):
            exchanges(count)
            made = service.checkpointer.make()  # the witness thread is woken, off this path
            assert made.new
            sizes.append(made.size)
            wait_for(lambda size=made.size: size in cosigned_sizes(config.database_url),
                     f"checkpoint {made.size} cosigned")
    held = WitnessStore(witness.state).latest(origin)
    assert held is not None and held[0] >= sizes[-1]

    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config.base_dir / "config.yaml"),
                                       "--require-cosignatures", "1"])
    assert result.exit_code == 0, result.output
    assert "witnessed up to size" in result.output and NAME in result.output
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config.base_dir / "config.yaml"),
                                       "--require-cosignatures", "2"])
    assert result.exit_code == 1 and "only 1 witness key(s) are known" in result.output

    # A fork: a later checkpoint of a tree whose first leaf was rewritten, signed with the log's key,
    # with a consistency proof that holds inside the forged tree.
    engine = create_engine(config.database_url)
    with engine.connect() as conn:
        leaves = [bytes(h) for h in conn.execute(sa.select(audit_nodes.c.hash).where(audit_nodes.c.level == 0)
                                                 .order_by(audit_nodes.c.idx)).scalars()]
    engine.dispose()
    old = held[0]
    forged = [leaf_hash(b"rewritten"), *leaves[1:old], *(leaf_hash(b"more %d" % i) for i in range(4))]
    note = signer.sign(Checkpoint(origin, len(forged), root_from_leaves(forged)))
    r = httpx.post(f"{witness.url}/add-checkpoint",
                   content=build_request(old, consistency_proof(old, len(forged), forged), note))
    assert r.status_code == 422 and "\u2014" not in r.text
    assert WitnessStore(witness.state).latest(origin) == held
    assert [status for status, _, _ in WitnessStore(witness.state).evidence(origin)] == [422]
