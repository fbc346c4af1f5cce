"""The command line's spine (gateway/cli_spine.py): every command that changes state is checked
against ``cli.operators`` and leaves one audit record (protocol ``cli``, the operating-system account
as the acting official, no secret), refusals and failures included; an unaudited command fails."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result

from gateway import keys
from gateway.audit.log import AuditLog
from gateway.cli import main
from gateway.cli_spine import CLI_CLIENT, Operator, local_operator, refusal
from gateway.config import load_config
from gateway.console.users import UserStore
from gateway.delivery.tables import deliveries
from gateway.init import initialise
from gateway.oauth.clients import ClientStore
from gateway.storage.db import create_engine

CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"
NEW_CLIENT = "VN/GOV/000.00.00.H41/DANHMUC"  # declared in the catalog, not a client at first
PASSWORD = "mot-mat-khau-rat-dai"
NEW_PASSWORD = "mat-khau-moi-con-dai-hon"
ME = local_operator()


@dataclass
class Gw:
    """A configuration written by `lienthong init`, and its database."""

    config_path: Path
    url: str
    secrets: dict[str, str]

    def run(self, *args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(main, [*args, "--config", str(self.config_path)],
                                    catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    @property
    def folder(self) -> Path:
        return self.config_path.parent

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        change(data)
        self.config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    def operators(self, accounts: list[str] | None) -> None:
        def change(data: dict[str, Any]) -> None:
            if accounts is None:
                data.pop("cli", None)
            else:
                data["cli"] = {"operators": accounts}

        self.edit(change)

    def engine(self) -> sa.Engine:
        return create_engine(self.url)

    def cli_leaves(self) -> list[dict[str, Any]]:
        """The audit log's command-line records, in order, as their leaves say."""
        engine = self.engine()
        try:
            leaves = [orjson.loads(leaf.leaf) for leaf in AuditLog(engine).read(0, 100_000)]
        finally:
            engine.dispose()
        return [leaf for leaf in leaves if leaf["protocol"] == "cli"]

    def leaves_bytes(self) -> bytes:
        engine = self.engine()
        try:
            return b"\n".join(leaf.leaf for leaf in AuditLog(engine).read(0, 100_000))
        finally:
            engine.dispose()

    def clients(self) -> ClientStore:
        store = ClientStore(self.engine())
        store.seed(load_config(self.config_path).clients)
        return store

    def users(self) -> UserStore:
        return UserStore(self.engine())


@pytest.fixture
def gw(tmp_path: Path, database_url: str) -> Iterator[Gw]:
    init = initialise(tmp_path / "gw", database=database_url)
    yield Gw(init.config_path, database_url, init.secrets)


def snapshot(gw: Gw) -> dict[str, Any]:
    """Everything a state-changing command could change, but the audit log's leaves."""
    engine = gw.engine()
    try:
        with engine.connect() as conn:
            tables = {name: sorted(map(repr, conn.execute(sa.text(f"SELECT * FROM {name}"))))  # noqa: S608
                      for name in ("oauth_clients", "console_users", "deliveries", "audit_checkpoints",
                                   "audit_bodies")}
    finally:
        engine.dispose()
    witness = gw.folder / "audit-witness.txt"
    return {**tables, "keys": sorted(p.name for p in (gw.folder / "keys").rglob("*")),
            "witness": witness.read_text() if witness.exists() else None}


def add_delivery(gw: Gw, state: str, dossier: str = "H60.23-20261121-0000001") -> str:
    """A delivery row in ``state``, as the queue would have left it."""
    engine = gw.engine()
    now = time.time_ns() // 1000
    delivery_id = f"d{now}{state}"[:32]
    body = b'{"MaHoSo": "' + dossier.encode() + b'"}'
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(deliveries).values(
                id=delivery_id, idem_key=f"k-{delivery_id}", order_key=f"o-{delivery_id}", dossier=dossier,
                service="VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC", operation="DongBoHoSoMC",
                client=CLIENT, exchange_id=f"x-{delivery_id}", method="POST", path="", query="",
                content_type="application/json", body=body, body_sha256="0" * 64, subjects="[]",
                state=state, attempts=3, attempt_base=0, next_us=now, created_us=now, updated_us=now))
    finally:
        engine.dispose()
    return delivery_id


def delivery_state(gw: Gw, delivery_id: str) -> str:
    engine = gw.engine()
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.select(deliveries.c.state).where(
                deliveries.c.id == delivery_id)).scalar_one())
    finally:
        engine.dispose()


def count_deliveries(gw: Gw) -> int:
    engine = gw.engine()
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one())
    finally:
        engine.dispose()


# -- each state-changing command: what it is called, what it needs first, how to see it was done ----

@dataclass(frozen=True)
class Case:
    operation: str
    args: Callable[[Gw, Any], list[str]]
    purpose: str  # a part of the record's purpose
    prepare: Callable[[Gw], Any] = lambda gw: None
    done: Callable[[Gw, Any], bool] = lambda gw, prepared: True


def _jwks_file(gw: Gw) -> Path:
    return keys.new_client_key(gw.folder / "elsewhere", CLIENT, "ES256")


def _secret_hash(gw: Gw) -> str | None:
    record = gw.clients().get(CLIENT)
    assert record is not None
    return record.secret_hash


def _disabled(gw: Gw) -> None:
    gw.clients().update(CLIENT, enabled=False)


def _with_user(gw: Gw, enabled: bool = True) -> None:
    gw.users().add("can.bo", "auditor", PASSWORD, "Cán Bộ")
    if not enabled:
        gw.users().set_enabled("can.bo", False)


def _signing_keys(gw: Gw) -> list[str]:
    return [str(k.kid) for k in keys.load_signing_keys(gw.folder / "keys").keys]


CASES = [
    Case("clients.add", lambda gw, _: ["clients", "add", NEW_CLIENT, "--name", "Danh mục"], NEW_CLIENT,
         done=lambda gw, _: gw.clients().get(NEW_CLIENT) is not None),
    Case("clients.rotate-secret", lambda gw, _: ["clients", "rotate-secret", CLIENT], CLIENT,
         prepare=_secret_hash, done=lambda gw, before: _secret_hash(gw) != before),
    Case("clients.set-keys", lambda gw, path: ["clients", "set-keys", CLIENT, "--jwks", str(path)], CLIENT,
         prepare=_jwks_file,
         done=lambda gw, _: "private_key_jwt" in gw.clients().get(CLIENT).auth_methods),  # type: ignore[union-attr]
    Case("clients.disable", lambda gw, _: ["clients", "disable", CLIENT], CLIENT,
         done=lambda gw, _: not gw.clients().get(CLIENT).enabled),  # type: ignore[union-attr]
    Case("clients.enable", lambda gw, _: ["clients", "enable", CLIENT], CLIENT, prepare=_disabled,
         done=lambda gw, _: gw.clients().get(CLIENT).enabled),  # type: ignore[union-attr]
    Case("keys.rotate", lambda gw, _: ["keys", "rotate"], "signing key", prepare=_signing_keys,
         done=lambda gw, before: len(_signing_keys(gw)) == len(before) + 1),
    Case("deliveries.retry", lambda gw, d: ["deliveries", "retry", d], "1 deliveries: ids ",
         prepare=lambda gw: add_delivery(gw, "dead"),
         done=lambda gw, d: delivery_state(gw, d) == "pending"),
    Case("deliveries.cancel", lambda gw, d: ["deliveries", "cancel", d], "1 deliveries: ids ",
         prepare=lambda gw: add_delivery(gw, "pending"),
         done=lambda gw, d: delivery_state(gw, d) == "cancelled"),
    Case("deliveries.replay", lambda gw, d: ["deliveries", "replay", d], "1 deliveries: ids ",
         prepare=lambda gw: add_delivery(gw, "delivered"), done=lambda gw, d: count_deliveries(gw) == 2),
    Case("users.add", lambda gw, _: ["users", "add", "can.bo", "--role", "operator", "--password", PASSWORD],
         "can.bo as operator", done=lambda gw, _: gw.users().get("can.bo") is not None),
    Case("users.passwd", lambda gw, _: ["users", "passwd", "can.bo", "--password", NEW_PASSWORD], "can.bo",
         prepare=_with_user,
         done=lambda gw, _: gw.users().authenticate("can.bo", NEW_PASSWORD) is not None),
    Case("users.role", lambda gw, _: ["users", "role", "can.bo", "admin"], "can.bo to admin",
         prepare=_with_user, done=lambda gw, _: gw.users().get("can.bo").role == "admin"),  # type: ignore[union-attr]
    Case("users.disable", lambda gw, _: ["users", "disable", "can.bo"], "can.bo", prepare=_with_user,
         done=lambda gw, _: not gw.users().get("can.bo").enabled),  # type: ignore[union-attr]
    Case("users.enable", lambda gw, _: ["users", "enable", "can.bo"], "can.bo",
         prepare=lambda gw: _with_user(gw, enabled=False),
         done=lambda gw, _: gw.users().get("can.bo").enabled),  # type: ignore[union-attr]
    Case("audit.checkpoint", lambda gw, _: ["audit", "checkpoint", "--new"], "checkpoint of size",
         prepare=lambda gw: gw.run("clients", "disable", NEW_CLIENT, ok=False),  # a leaf to sign
         done=lambda gw, _: snapshot(gw)["audit_checkpoints"] != []),
    Case("audit.purge", lambda gw, _: ["audit", "purge"], "kept bodies of 0 exchange(s) removed"),
    Case("audit.rotate-key", lambda gw, _: ["audit", "rotate-key"], "checkpoint key",
         done=lambda gw, _: (gw.folder / "keys" / keys.CHECKPOINT_RETIRED).is_file()),
]


@pytest.mark.parametrize("case", CASES, ids=[c.operation for c in CASES])
def test_each_action_leaves_its_record(gw: Gw, case: Case) -> None:
    """The command does what it says and leaves one record: protocol and client cli, the action as
    operation, the operator as acting official, what it was about as purpose, status 200."""
    prepared = case.prepare(gw)
    before = len(gw.cli_leaves())
    result = gw.run(*case.args(gw, prepared))
    assert case.done(gw, prepared), result.output
    new = gw.cli_leaves()[before:]
    assert len(new) == 1, new
    (leaf,) = new
    assert (leaf["protocol"], leaf["client"], leaf["operation"]) == ("cli", CLI_CLIENT, case.operation)
    assert leaf["userId"] == ME.official and "@" in leaf["userId"]
    assert case.purpose in leaf["purpose"]
    assert (leaf["outcome"], leaf["status"], leaf["error"]) == ("ok", 200, None)
    if isinstance(prepared, str) and case.operation.startswith("deliveries."):
        assert prepared in leaf["purpose"]


@pytest.mark.parametrize("case", CASES, ids=[c.operation for c in CASES])
def test_a_refused_operator_changes_nothing(gw: Gw, case: Case) -> None:
    """An account not in cli.operators is refused before the action: exit 1 saying what to do,
    nothing changed, and the refusal recorded (403, Client.AccessDenied) with who tried."""
    prepared = case.prepare(gw)
    gw.operators(["someone-else"])
    before, leaves = snapshot(gw), len(gw.cli_leaves())
    result = gw.run(*case.args(gw, prepared), ok=False)
    assert result.exit_code == 1
    assert f"{ME.official} may not run {case.operation}" in result.output
    assert "cli.operators" in result.output and "Traceback" not in result.output
    assert snapshot(gw) == before
    (leaf,) = gw.cli_leaves()[leaves:]
    assert (leaf["operation"], leaf["outcome"], leaf["status"], leaf["error"], leaf["userId"]) == (
        case.operation, "refused", 403, "Client.AccessDenied", ME.official)


def test_no_secret_or_password_reaches_the_log(gw: Gw) -> None:
    """The secrets the commands print and the passwords they are given are in no leaf."""
    added = gw.run("clients", "add", NEW_CLIENT)
    secret = added.stderr.rsplit(": ", 1)[-1].strip()
    rotated = gw.run("clients", "rotate-secret", CLIENT).stdout.strip()
    gw.run("users", "add", "can.bo", "--role", "auditor", "--password", PASSWORD)
    gw.run("users", "passwd", "can.bo", "--password", NEW_PASSWORD)
    leaves = gw.leaves_bytes()
    assert len(secret) >= 20 and len(rotated) >= 20
    for value in (secret, rotated, PASSWORD, NEW_PASSWORD):
        assert value.encode() not in leaves
    assert [leaf["operation"] for leaf in gw.cli_leaves()] == [
        "clients.add", "clients.rotate-secret", "users.add", "users.passwd"]


def test_a_password_asked_for_is_not_recorded_either(gw: Gw) -> None:
    """`users add` without --password prompts (hidden, twice); the record holds the name only."""
    result = CliRunner().invoke(main, ["users", "add", "can.bo", "--role", "auditor", "--config",
                                       str(gw.config_path)], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert gw.users().authenticate("can.bo", PASSWORD) is not None
    assert PASSWORD.encode() not in gw.leaves_bytes()
    assert gw.cli_leaves()[-1]["purpose"] == "can.bo as auditor"


def test_the_operators_mistake_is_recorded_as_refused(gw: Gw) -> None:
    """An action the database refuses (an unknown client, a short password) exits 1 with the message
    and leaves a 400 record naming what it was about."""
    unknown = "VN/GOV/000.00.00.H41/KHONGCO"
    result = gw.run("clients", "disable", unknown, ok=False)
    assert result.exit_code == 1 and unknown in result.output and "Traceback" not in result.output
    short = gw.run("users", "add", "can.bo", "--role", "auditor", "--password", "ngan", ok=False)
    assert short.exit_code == 1 and "at least" in short.output
    assert gw.users().get("can.bo") is None
    assert [(leaf["operation"], leaf["outcome"], leaf["status"], leaf["error"], leaf["purpose"])
            for leaf in gw.cli_leaves()] == [
        ("clients.disable", "refused", 400, "Client.InvalidRequest", unknown),
        ("users.add", "refused", 400, "Client.InvalidRequest", "can.bo as auditor")]


def test_a_crash_inside_the_action_is_recorded_as_failed(tmp_path: Path) -> None:
    """An unexpected error in the action (a keys folder that is a file) is recorded as failed (500)
    before it propagates."""
    init = initialise(tmp_path / "gw")
    gw = Gw(init.config_path, f"sqlite:///{init.config_path.parent / 'lienthong.db'}", init.secrets)
    (gw.folder / "not-a-folder").write_text("x")
    gw.edit(lambda data: data.update(keys_dir="not-a-folder"))
    result = CliRunner().invoke(main, ["keys", "rotate", "--algorithm", "ES256", "--config",
                                       str(gw.config_path)])
    assert result.exit_code != 0 and result.exception is not None
    (leaf,) = gw.cli_leaves()
    assert (leaf["operation"], leaf["outcome"], leaf["status"], leaf["error"]) == (
        "keys.rotate", "failed", 500, "Server.InternalError")


def test_the_operator_may_be_named_with_the_host(gw: Gw) -> None:
    """`name@host` allows that account on that host only; a plain name allows it anywhere."""
    gw.operators([f"{ME.account}@another-host"])
    assert gw.run("clients", "disable", CLIENT, ok=False).exit_code == 1
    gw.operators([ME.official])
    gw.run("clients", "disable", CLIENT)
    gw.operators(["someone-else", ME.account])
    gw.run("clients", "enable", CLIENT)
    assert [(leaf["operation"], leaf["status"]) for leaf in gw.cli_leaves()] == [
        ("clients.disable", 403), ("clients.disable", 200), ("clients.enable", 200)]


def test_an_empty_list_refuses_everyone(gw: Gw) -> None:
    """`cli.operators: []` turns every state-changing command off, and says nobody may."""
    gw.operators([])
    result = gw.run("users", "add", "can.bo", "--role", "auditor", "--password", PASSWORD, ok=False)
    assert result.exit_code == 1 and "(nobody)" in result.output
    assert gw.users().get("can.bo") is None


def test_without_the_list_the_database_credentials_decide(gw: Gw) -> None:
    """No cli.operators (a configuration older than it): whoever can read the file may act, with a
    note that says so; the record names them all the same."""
    gw.operators(None)
    result = gw.run("clients", "disable", CLIENT)
    assert "cli.operators is not set" in result.stderr
    assert gw.cli_leaves()[-1]["userId"] == ME.official


def test_init_lists_the_account_that_ran_it(gw: Gw) -> None:
    """`lienthong init` writes cli.operators with its own account, so a fresh gateway denies others."""
    config = load_config(gw.config_path)
    assert config.cli.operators == [ME.account]
    assert refusal(config, ME, "clients.add") is None
    stranger = Operator("mallory", ME.host)
    why = refusal(config, stranger, "clients.add")
    assert why is not None and "add 'mallory' there" in why


def test_read_only_commands_leave_no_record(gw: Gw) -> None:
    """list, show, stats, keys list and audit checkpoint (without --new) change nothing and are not
    recorded."""
    gw.run("clients", "disable", CLIENT)  # one leaf, so that the audit log has something to sign
    gw.run("audit", "checkpoint", "--new")
    leaves = len(gw.cli_leaves())
    for args in (["clients", "list"], ["clients", "show", CLIENT], ["users", "list"],
                 ["deliveries", "list"], ["stats"], ["keys", "list"], ["audit", "checkpoint"],
                 ["audit", "verify"]):
        gw.run(*args)
    assert len(gw.cli_leaves()) == leaves


def test_the_records_are_leaves_of_a_log_that_verifies(gw: Gw) -> None:
    """The command line's records go through the tree like any other: a checkpoint covers them and
    `audit verify` passes."""
    gw.run("clients", "disable", CLIENT)
    gw.run("users", "add", "can.bo", "--role", "auditor", "--password", PASSWORD)
    doc = json.loads(gw.run("audit", "checkpoint", "--new", "--json").stdout)
    assert doc["size"] == 2
    assert gw.run("audit", "verify").stdout.startswith("OK: 3 leaves")  # the checkpoint's own record


# -- the audit log cannot take the record --------------------------------------------------------

def _refuse_audit_inserts(gw: Gw) -> None:
    """The audit table refuses new leaves, as a full disk or a revoked grant would."""
    engine = gw.engine()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TRIGGER no_more_leaves BEFORE INSERT ON audit_leaves "
                                 "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_gw(tmp_path: Path) -> Gw:
    init = initialise(tmp_path / "gw")
    return Gw(init.config_path, f"sqlite:///{init.config_path.parent / 'lienthong.db'}", init.secrets)


def test_an_unaudited_action_fails_the_command(sqlite_gw: Gw) -> None:
    """When the record cannot be stored the command exits 1 and says the action was done but not
    recorded; a secret it made is not handed out."""
    gw = sqlite_gw
    gw.run("users", "list")  # migrated
    _refuse_audit_inserts(gw)
    result = gw.run("clients", "disable", CLIENT, ok=False)
    assert result.exit_code == 1
    assert "clients.disable was done, but the audit log could not record it" in result.output
    assert "disk full" in result.output and "Traceback" not in result.output
    added = gw.run("clients", "add", NEW_CLIENT, ok=False)
    assert added.exit_code == 1 and "client secret" not in added.output
    assert gw.cli_leaves() == []


def test_an_unaudited_refusal_says_so(sqlite_gw: Gw) -> None:
    """A refusal whose record cannot be stored is still a refusal, and says the log missed it."""
    gw = sqlite_gw
    gw.run("users", "list")
    _refuse_audit_inserts(gw)
    gw.operators(["someone-else"])
    result = gw.run("clients", "disable", CLIENT, ok=False)
    assert result.exit_code == 1
    assert "may not run clients.disable" in result.output
    assert "the audit log could not record this attempt" in result.output
    assert gw.clients().get(CLIENT).enabled  # type: ignore[union-attr]


def test_an_unreachable_database_stops_the_command_before_it_acts(sqlite_gw: Gw) -> None:
    """No database to record in: nothing is done (no new signing key), and the command says so."""
    gw = sqlite_gw
    before = _signing_keys(gw)
    # A port nothing listens on: the connection is refused at once.
    gw.edit(lambda data: data.update(database="postgresql+psycopg://nobody@127.0.0.1:9/lienthong"))
    result = gw.run("keys", "rotate", ok=False)
    assert result.exit_code == 1
    assert "cannot open the database to record this action" in result.output
    assert "nothing was done" in result.output and "Traceback" not in result.output
    assert _signing_keys(gw) == before
