"""`lienthong clients`, `lienthong token` and `lienthong keys` against a running gateway: the
database holds the clients, so a change reaches every worker without a restart."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from joserfc import jws

from gateway.cli import main
from gateway.init import initialise
from tests.conftest import Stack
from tests.oauth_helpers import ECHO, PORTAL

NEW_CLIENT = "VN/GOV/000.00.00.H41/DANHMUC"  # a declared subsystem that is not a client at first


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def wait_until(check: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def echo(stack: Stack, token: str) -> int:
    return httpx.post(f"{stack.base}{ECHO}", json={}, headers={"Authorization": f"Bearer {token}"},
                      timeout=30).status_code


def test_token_command_by_secret_and_by_key(stack: Stack) -> None:
    """`lienthong token` gets a token by client_secret_basic and by private_key_jwt."""
    cfg = str(stack.config_path)
    by_secret = run("token", "--config", cfg, "--client", "VN:GOV:000.00.00.G22:DVCQG", "--secret",
                    stack.secrets[PORTAL], "--url", stack.base)
    assert by_secret.exit_code == 0, by_secret.output
    key = stack.config_path.parent / "client-keys" / (PORTAL.replace("/", "_") + ".jwk")
    by_key = run("token", "--config", cfg, "--client", PORTAL, "--key", str(key), "--url", stack.base,
                 "--claims")
    assert by_key.exit_code == 0, by_key.output
    for result in (by_secret, by_key):
        token = result.stdout.strip().splitlines()[0]
        assert json.loads(jws.extract_compact(token.encode()).payload)["client_id"] == PORTAL
        assert echo(stack, token) == 200
    refused = run("token", "--config", cfg, "--client", PORTAL, "--secret", "wrong", "--url", stack.base)
    assert refused.exit_code == 1 and "invalid_client" in refused.output


def test_client_lifecycle_on_a_running_gateway(stack: Stack) -> None:
    """add -> token works; rotate-secret -> the old secret fails, the new works; disable -> no token,
    and live tokens refused within token.refresh; enable -> back."""
    cfg = str(stack.config_path)
    client = NEW_CLIENT
    listed = run("clients", "list", "--config", cfg, "--json")
    if any(c["id"] == client for c in json.loads(listed.output)):
        pytest.skip("client already added by an earlier run on this stack")
    added = run("clients", "add", client, "--config", cfg, "--name", "Danh mục", "--scope", "exchange")
    assert added.exit_code == 0, added.output
    secret = added.stderr.rsplit(": ", 1)[-1].strip()
    assert "secret_hash" not in added.stdout and json.loads(added.stdout)["auth_methods"] == [
        "client_secret_basic"]
    assert run("clients", "add", client, "--config", cfg).exit_code == 1  # already registered

    def token(with_secret: str) -> httpx.Response:
        return httpx.post(f"{stack.base}/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(client, with_secret), timeout=30)

    first = token(secret)
    assert first.status_code == 200, first.text
    live = first.json()["access_token"]
    assert echo(stack, live) == 200

    rotated = run("clients", "rotate-secret", client, "--config", cfg)
    new_secret = rotated.stdout.strip()
    assert token(secret).status_code == 401 and token(new_secret).status_code == 200

    shown = json.loads(run("clients", "show", client, "--config", cfg).stdout)
    assert shown["enabled"] is True and shown["source"] == "cli"

    assert run("clients", "disable", client, "--config", cfg).exit_code == 0
    assert token(new_secret).status_code == 401
    assert wait_until(lambda: echo(stack, live) == 401), "a disabled client's token still works"
    assert "DISABLED" in run("clients", "list", "--config", cfg).stdout

    assert run("clients", "enable", client, "--config", cfg).exit_code == 0
    assert token(new_secret).status_code == 200
    assert wait_until(lambda: echo(stack, live) == 200)


def test_set_keys_enables_private_key_jwt(stack: Stack, tmp_path: Path) -> None:
    """`clients set-keys` registers public keys; the client then authenticates with an assertion."""
    from gateway import keys
    from gateway.oauth.assertion import client_assertion

    cfg = str(stack.config_path)
    client = "VN/GOV/000.00.00.H60/MOTCUA"
    private = keys.new_client_key(tmp_path, client, "ES256")
    result = run("clients", "set-keys", client, "--config", cfg, "--jwks", str(private))  # public part only
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["auth_methods"] == ["client_secret_basic", "private_key_jwt"]
    form = {"grant_type": "client_credentials",
            **client_assertion(json.loads(private.read_text()), client, f"{stack.base}/oauth/token")}
    r = httpx.post(f"{stack.base}/oauth/token", data=form, timeout=30)
    assert r.status_code == 200, r.text


def test_keys_rotate_reaches_the_running_gateway(stack: Stack) -> None:
    """`lienthong keys rotate` makes a new kid; the gateway signs with it soon and old tokens stay valid."""
    cfg = str(stack.config_path)
    old = stack.token(PORTAL)
    result = run("keys", "rotate", "--config", cfg)
    assert result.exit_code == 0, result.output
    kid = result.stdout.split()[3]
    listed = run("keys", "list", "--config", cfg).stdout
    assert kid in listed and listed.strip().splitlines()[-1].split()[2] == "signs"

    def signs_with_new_kid() -> bool:
        header = jws.extract_compact(stack.token(PORTAL).encode()).protected
        return bool(header["kid"] == kid)

    assert wait_until(signs_with_new_kid)
    assert echo(stack, old) == 200 and echo(stack, stack.token(PORTAL)) == 200
    jwks = httpx.get(f"{stack.base}/.well-known/jwks.json").json()["keys"]
    assert kid in [k["kid"] for k in jwks]


def test_clients_commands_on_a_fresh_folder(tmp_path: Path) -> None:
    """The commands migrate and seed an unused database: the configuration's clients are listed."""
    init = initialise(tmp_path / "gw")
    out = run("clients", "list", "--config", str(init.config_path), "--json")
    ids = [c["id"] for c in json.loads(out.stdout)]
    assert set(ids) == set(init.secrets) and all(c["source"] == "config" for c in json.loads(out.stdout))
    missing = run("clients", "show", f"VN/GOV/000.00.00.H99/{uuid.uuid4().hex[:6].upper()}",
                  "--config", str(init.config_path))
    assert missing.exit_code == 1 and "no client" in missing.output
