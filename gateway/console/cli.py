"""``lienthong users``: the console's local accounts.

The commands that change an account run on the command line's spine (gateway/cli_spine.py): the
operator's account is checked against ``cli.operators`` and each change leaves an audit record
naming the account changed, never a password.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from gateway.cli_spine import operator_action
from gateway.cliopts import CONFIG, load
from gateway.console.users import ROLES, UserError, UserStore

T = TypeVar("T")


def _store(config_path: Path) -> UserStore:
    from gateway.storage.db import create_engine, upgrade

    config = load(config_path)
    upgrade(config.database_url)
    return UserStore(create_engine(config.database_url))


def _change(config_path: Path, action: str, purpose: str, change: Callable[[UserStore], T]) -> T:
    """Run ``change`` on the account store as the audited ``action``; a UserError is the operator's
    mistake (an unknown account, a short password), reported and recorded as such."""
    with operator_action(load(config_path), action, purpose=purpose) as a:
        try:
            return change(UserStore(a.engine))
        except UserError as exc:
            raise click.ClickException(str(exc)) from None


@click.group("users")
def users() -> None:
    """Local accounts of the web console (auditors, operators, administrators)."""


@users.command("add")
@CONFIG
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the account may do")
@click.option("--name", default="", help="the person's name as the console shows it")
@click.option("--password", help="the password (asked for when not given; at least 10 characters)")
@click.option("--no-password", is_flag=True, help="no password: the person signs in only through "
              "OpenID Connect")
def add(config_path: Path, username: str, role: str, name: str, password: str | None,
        no_password: bool) -> None:
    """Create an account."""
    if password is None and not no_password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _change(config_path, "users.add", f"{username} as {role}",
                   lambda store: store.add(username, role, None if no_password else password, name))
    click.echo(f"user {user.username} ({user.role}) created")


@users.command("list")
@CONFIG
def list_(config_path: Path) -> None:
    """List the accounts."""
    for user in _store(config_path).all():
        state = "enabled" if user.enabled else "disabled"
        click.echo(f"{user.username}\t{user.role}\t{state}\t{user.name}")


@users.command("passwd")
@CONFIG
@click.argument("username")
@click.option("--password", help="the new password (asked for when not given)")
def passwd(config_path: Path, username: str, password: str | None) -> None:
    """Set an account's password; its sessions end."""
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    new = password
    _change(config_path, "users.passwd", username, lambda store: store.set_password(username, new))
    click.echo(f"password of {username} changed; its sessions have ended")


@users.command("role")
@CONFIG
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def role(config_path: Path, username: str, role: str) -> None:
    """Change an account's role; its sessions end."""
    _change(config_path, "users.role", f"{username} to {role}",
            lambda store: store.set_role(username, role))
    click.echo(f"{username} is now {role}")


@users.command("disable")
@CONFIG
@click.argument("username")
def disable(config_path: Path, username: str) -> None:
    """Disable an account; its sessions end at once."""
    _change(config_path, "users.disable", username,
            lambda store: store.set_enabled(username, False))
    click.echo(f"{username} disabled")


@users.command("enable")
@CONFIG
@click.argument("username")
def enable(config_path: Path, username: str) -> None:
    """Enable a disabled account."""
    _change(config_path, "users.enable", username, lambda store: store.set_enabled(username, True))
    click.echo(f"{username} enabled")
