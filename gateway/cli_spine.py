"""The spine for the command line: authenticate -> authorise -> act -> audit, for every command that
changes state (``lienthong clients add``, ``keys rotate``, ``deliveries retry``, ``users role``,
``audit checkpoint --new``, …)::

    with operator_action(config, "clients.disable", purpose=client_id) as a:
        ClientStore(a.engine).update(client_id, enabled=False)
    click.echo("disabled")  # only once the record is stored

- **authenticate**: the command line has no token; who runs it is the operating-system account
  (its name in the password database by the process's real uid, ``uid:N`` when it has none, as in a
  container run under an arbitrary uid) on this host. ``$USER`` is not read: anyone can set it.
- **authorise**: ``cli.operators`` in the configuration lists the accounts (``name`` or
  ``name@host``) that may; any other is refused (exit 1, saying what to do). ``lienthong init``
  writes the account that ran it. Without the list, whoever can read the configuration, and so the
  database credentials, may: those credentials are then the authorisation, and a note says so.
- **act**: the body, against ``a.engine`` (the configured database, migrated).
- **audit**: one record, stored synchronously before the command reports anything: protocol
  ``cli``, client ``cli``, the account as the acting official (``userId``: ``name@host``), the
  action as operation, what it was about as purpose (an id, a count; never a secret), the status
  (200 done, 400 the operator's mistake, 403 refused, 500 failed) and the error code. Refusals and
  failures are recorded too. When the record cannot be stored the command fails (exit 1) and says
  whether the action itself was done.
"""

from __future__ import annotations

import os
import pwd
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click
import structlog

from gateway.errors import GatewayError
from gateway.ids import new_id
from gateway.spine import action_record

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from gateway.audit.record import AuditRecord
    from gateway.config import Config

__all__ = ["CLI_CLIENT", "CliAct", "Operator", "local_operator", "operator_action", "refusal"]

log = structlog.get_logger("lienthong.cli")

CLI_CLIENT = "cli"  # the client name of the command line's audit records
REFUSED = (403, "Client.AccessDenied")
MISTAKE = (400, "Client.InvalidRequest")  # a click error inside the action: unknown id, bad value
FAILED = (500, "Server.InternalError")


@dataclass(frozen=True, slots=True)
class Operator:
    """The person at the command line, as the operating system knows them."""

    account: str
    host: str

    @property
    def official(self) -> str:
        """How the audit record names them (its acting official)."""
        return f"{self.account}@{self.host}"


def local_operator() -> Operator:
    """The account of this process's real uid, on this host."""
    uid = os.getuid()
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:  # no entry for the uid (a container's arbitrary uid)
        account = f"uid:{uid}"
    return Operator(account, socket.gethostname())


def refusal(config: Config, operator: Operator, action: str) -> str | None:
    """Why ``operator`` may not run ``action`` under ``cli.operators``, or None when they may."""
    allowed = config.cli.operators
    if allowed is None or operator.account in allowed or operator.official in allowed:
        return None
    listed = ", ".join(allowed) if allowed else "nobody"
    return (f"{operator.official} may not run {action}: only the accounts in cli.operators of the "
            f"configuration may change the gateway ({listed}); run it as one of them, or have an "
            f"administrator add {operator.account!r} there")


@dataclass
class CliAct:
    """A command-line action under way: what its audit record will say about it."""

    name: str
    operator: Operator
    engine: Engine
    id: str
    purpose: str | None = None


class _Audit:
    """Where the records go: the configured database, migrated, opened before anything is done so
    that an unreachable database stops the command before it acts."""

    def __init__(self, config: Config) -> None:
        from gateway.storage.db import create_engine, upgrade

        try:
            upgrade(config.database_url)
            self.engine = create_engine(config.database_url)
        except Exception as exc:
            raise click.ClickException(f"cannot open the database to record this action: "
                                       f"{_first_line(exc)}; nothing was done") from None
        self.started = time.perf_counter()
        self.received_us = time.time_ns() // 1000

    def write(self, record: AuditRecord) -> str | None:
        """Store ``record``; None once it is stored, else why it could not be."""
        from gateway.audit.log import AuditLog

        try:
            AuditLog(self.engine).append_many([record])
        except Exception as exc:  # any storage failure: the command must not pass as audited
            log.error("cli_action_unaudited", action=record.operation, status=record.status,
                      error=type(exc).__name__)
            return _first_line(exc)
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@contextmanager
def operator_action(config: Config, name: str, *, purpose: str | None = None) -> Iterator[CliAct]:
    """Run a state-changing command on the spine (see the module's docstring). A refusal, or an error
    the body raises, is recorded and ends the command with a click error; ``a.purpose`` may be
    refined by the body (a count known only once done)."""
    audit = _Audit(config)
    operator = local_operator()
    current = CliAct(name=name, operator=operator, engine=audit.engine, id=new_id(), purpose=purpose)

    def record(status: int, error: str | None) -> str | None:
        return audit.write(action_record(
            protocol="cli", exchange_id=current.id, received_us=audit.received_us,
            started=audit.started, name=name, client=CLI_CLIENT, user_id=operator.official,
            purpose=current.purpose, status=status, error=error))

    try:
        if config.cli.operators is None:
            click.echo("note: cli.operators is not set in the configuration, so anyone who can read "
                       "it may change the gateway; see docs/security.md", err=True)
        why = refusal(config, operator, name)
        if why is not None:
            failure = record(*REFUSED)
            raise click.ClickException(why + _unaudited(failure))
        try:
            yield current
        except click.ClickException:
            failure = record(*MISTAKE)
            if failure is not None:
                click.echo(f"error: {name} was refused{_unaudited(failure)}", err=True)
            raise
        except GatewayError as err:
            failure = record(err.status, err.code)
            raise click.ClickException(err.detail + _unaudited(failure)) from None
        except BaseException:  # a crash or Ctrl+C mid-action: recorded as failed, then raised
            failure = record(*FAILED)
            if failure is not None:
                click.echo(f"error: {name} failed{_unaudited(failure)}", err=True)
            raise
        failure = record(200, None)
        if failure is not None:
            raise click.ClickException(
                f"{name} was done, but the audit log could not record it ({failure}): check the "
                "database, and tell the auditors what was done")
    finally:
        audit.engine.dispose()


def _unaudited(failure: str | None) -> str:
    """The tail of a refusal's message when its record could not be stored; empty when it was."""
    if failure is None:
        return ""
    return f"; and the audit log could not record this attempt ({failure}): check the database"
