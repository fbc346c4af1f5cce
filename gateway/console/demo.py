"""The demo's console accounts and the few lines that tell a newcomer how to use the console."""

from __future__ import annotations

import secrets

from gateway.console.users import UserStore
from gateway.storage.db import create_engine

__all__ = ["DEMO_USERS", "console_hint", "demo_accounts"]

DEMO_USERS = {"kiemtoan": ("auditor", "Kiểm toán viên (demo)"),
              "vanhanh": ("operator", "Vận hành viên (demo)")}


def demo_accounts(database_url: str) -> dict[str, str]:
    """An auditor and an operator with fresh passwords (made again when they exist); username ->
    password, to be shown once."""
    engine = create_engine(database_url)
    store = UserStore(engine)
    made = {}
    try:
        for username, (role, name) in DEMO_USERS.items():
            password = secrets.token_urlsafe(12)
            if store.get(username) is None:
                store.add(username, role, password, name)
            else:
                store.set_password(username, password)
            made[username] = password
    finally:
        engine.dispose()
    return made


def console_hint(base: str, database_url: str, citizen: str) -> str:
    accounts = demo_accounts(database_url)
    lines = [f"\nThe console: {base}/console/  (Vietnamese; EN at the top right)"]
    lines += [f"  {DEMO_USERS[u][0]:8}  user {u}  password {p}" for u, p in accounts.items()]
    lines.append(f"  Exchange log → personal id {citizen} → Search, then open an entry: \"Đã xác minh\" "
                 "(verified) is your browser's own check of its Merkle proof.")
    return "\n".join(lines)
