"""Local console accounts: argon2id password hashes, a role each, and the session epoch.

Roles, from least to most: ``auditor`` (reads the exchange log, proofs, checkpoints, data-subject
reports), ``operator`` (watches traffic, retries and replays deliveries), ``admin`` (both). What
each role may open is ``permissions.PAGES``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from gateway.console.sessionstore import end_all
from gateway.console.tables import console_users
from gateway.oauth.secrets import DUMMY_HASH

__all__ = ["ROLES", "User", "UserError", "UserStore"]

ROLES = ("auditor", "operator", "admin")
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
MIN_PASSWORD = 10

_hasher = PasswordHasher()


class UserError(ValueError):
    """An account that cannot be created or changed; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    name: str
    role: str
    enabled: bool
    epoch: int
    has_password: bool
    last_login_us: int | None = None


def _now_us() -> int:
    return time.time_ns() // 1000


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise UserError(f"{username!r} is not a username: 1-64 of a-z 0-9 . _ @ -, starting with a "
                        "letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


class UserStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, username: str, role: str, password: str | None, name: str = "") -> User:
        username, role = check_username(username), check_role(role)
        hashed = _hasher.hash(check_password(password)) if password is not None else None
        now = _now_us()
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(console_users).values(
                    username=username, name=name or username, role=role, password_hash=hashed,
                    enabled=True, epoch=1, created_us=now, updated_us=now))
        except sa.exc.IntegrityError:
            raise UserError(f"user {username} exists") from None
        found = self.get(username)
        assert found is not None
        return found

    def get(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(console_users)
                               .where(console_users.c.username == username.strip().lower())).first()
        return _user(row) if row is not None else None

    def all(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(console_users).order_by(console_users.c.username)).all()
        return [_user(r) for r in rows]

    def authenticate(self, username: str, password: str) -> User | None:
        """The account if the password is its own and it is enabled; None otherwise (the same for
        an unknown name, a wrong password or a disabled account)."""
        try:
            username = check_username(username)
        except UserError:
            username = ""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(console_users)
                               .where(console_users.c.username == username)).first() if username else None
        # an unknown name is checked against a dummy hash: the refusal takes as long either way
        stored = row.password_hash if row is not None and row.password_hash else DUMMY_HASH
        try:
            _hasher.verify(stored, password)
            ok = row is not None and bool(row.password_hash)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or not row.enabled:
            return None
        values: dict[str, object] = {"last_login_us": _now_us()}
        if _hasher.check_needs_rehash(stored):
            values["password_hash"] = _hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(sa.update(console_users).where(console_users.c.username == username)
                         .values(**values))
        return _user(row)

    def set_password(self, username: str, password: str) -> None:
        self._change(username, password_hash=_hasher.hash(check_password(password)),
                     epoch=console_users.c.epoch + 1)

    def set_role(self, username: str, role: str) -> None:
        self._change(username, role=check_role(role), epoch=console_users.c.epoch + 1)

    def set_enabled(self, username: str, enabled: bool) -> None:
        self._change(username, enabled=enabled, epoch=console_users.c.epoch + 1)

    def end_sessions(self, username: str) -> None:
        """Every session of this account ends."""
        self._change(username, epoch=console_users.c.epoch + 1)

    def _change(self, username: str, **values: object) -> None:
        """Every change (password, role, enabled) ends the account's open sessions with it."""
        username = username.strip().lower()
        with self.engine.begin() as conn:
            result = conn.execute(sa.update(console_users)
                                  .where(console_users.c.username == username)
                                  .values(updated_us=_now_us(), **values))
            end_all(conn, username)
        if result.rowcount == 0:
            raise UserError(f"no user {username}")


def _user(row: sa.Row) -> User:
    return User(username=row.username, name=row.name, role=row.role, enabled=bool(row.enabled),
                epoch=int(row.epoch), has_password=bool(row.password_hash),
                last_login_us=row.last_login_us)
