"""Console sessions in signed cookies, and the CSRF token each session carries.

A cookie is ``base64url(JSON) "." base64url(HMAC-SHA-256(key, JSON))``: the browser can read it but
not change it. It holds the username, the role, the account's session epoch (see ``tables.py``), the
time it expires, how the person signed in (``local`` or ``oidc``), the session's CSRF token and,
once signed in, the session's id: the session lasts only while ``sessionstore.py`` holds it open, so
signing out ends it even for a copy of the cookie. A
visitor who has not signed in gets a session too, holding only a CSRF token, so that the sign-in
form is protected like every other; signing in issues a new session with a new token.

The key is ``console-session.key`` in the keys folder: 32 random bytes, made on first use (mode
0600). Every gateway process reads the same file, so any worker accepts any worker's cookies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SESSION_KEY", "Session", "SessionCodec", "load_or_create_key"]

SESSION_KEY = "console-session.key"


def load_or_create_key(keys_dir: Path) -> bytes:
    path = keys_dir / SESSION_KEY
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    for _ in range(50):  # another process may be writing it this very moment
        key = path.read_bytes()
        if len(key) >= 32:
            return key
        time.sleep(0.01)
    raise ValueError(f"{path} must hold at least 32 bytes")


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    username: str | None = None
    name: str | None = None
    role: str | None = None
    epoch: int = 0
    source: str = "local"  # or "oidc"
    expires: int = 0  # seconds since the epoch; 0 for a visitor's session
    oidc: dict[str, Any] | None = None  # authlib's state while a sign-in is under way
    sid: str | None = None  # the server-side session's id (sessionstore.py), once signed in

    @property
    def signed_in(self) -> bool:
        return self.username is not None and self.role is not None and self.sid is not None

    def bind(self, **changes: Any) -> Session:
        return replace(self, **changes)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the session key must be at least 32 bytes")
        self._key = hashlib.sha256(b"lienthong console session\x00" + key).digest()

    def dumps(self, session: Session) -> str:
        payload = orjson.dumps({k: v for k, v in asdict(session).items() if v is not None})
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def loads(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, altered, malformed or expired."""
        if not cookie or len(cookie) > 8192 or "." not in cookie:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            data = orjson.loads(payload)
            session = Session(**data)
        except (orjson.JSONDecodeError, TypeError):
            return None
        if session.expires and session.expires < (time.time() if now is None else now):
            return None
        return session

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()
