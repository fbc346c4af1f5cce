"""``lienthong clients …``, ``lienthong token`` and ``lienthong keys …``.

Clients live in the gateway's database (seeded from the configuration's ``clients:``), so these
commands change what a running gateway accepts: every worker reads clients from the database at
each token request, and refuses a disabled client's tokens within ``token.refresh`` seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from gateway.cli_spine import operator_action
from gateway.cliopts import CONFIG, load
from gateway.config import Config
from gateway.identifiers import IdentifierError, normalise_client

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _store(config: Config, engine: Engine | None = None) -> Any:
    """The client store of the configured database (``engine``: an action's, already migrated),
    seeded from the configuration."""
    from gateway.oauth.clients import ClientStore
    from gateway.storage.db import create_engine, upgrade

    if engine is None:
        upgrade(config.database_url)
        engine = create_engine(config.database_url)
    store = ClientStore(engine)
    store.seed(config.clients)
    return store


def _client_id(value: str) -> str:
    try:
        return normalise_client(value)
    except IdentifierError as exc:
        raise click.BadParameter(str(exc)) from None


def _read_jwks(path: Path) -> dict[str, Any]:
    from gateway.oauth.jwks import public_jwks

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}") from None
    if isinstance(data, dict) and "kty" in data:  # a single JWK: take its public part
        data = {"keys": [data]}
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        private = ("d", "p", "q", "dp", "dq", "qi")
        data = {"keys": [{k: v for k, v in key.items() if k not in private} for key in data["keys"]
                         if isinstance(key, dict)]}
    try:
        public_jwks(data)
    except ValueError as exc:
        raise click.BadParameter(f"{path}: {exc}") from None
    return dict(data)


def _show(record: Any) -> None:
    click.echo(json.dumps(record.describe(), ensure_ascii=False, indent=2))


@click.group("clients")
def clients_group() -> None:
    """Register and administer the clients that may ask for tokens (in the gateway's database)."""


@clients_group.command("list")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_clients(config_path: Path, as_json: bool) -> None:
    """List registered clients."""
    records = _store(load(config_path)).all()
    if as_json:
        click.echo(json.dumps([r.describe() for r in records], ensure_ascii=False, indent=2))
        return
    for r in records:
        state = "enabled " if r.enabled else "DISABLED"
        click.echo(f"{state}  {r.id:<40} {','.join(r.auth_methods):<40} {' '.join(r.scopes):<20} {r.name}")


@clients_group.command("show")
@CONFIG
@click.argument("client_id")
def show(config_path: Path, client_id: str) -> None:
    """Show one client (never its secret)."""
    record = _store(load(config_path)).get(_client_id(client_id))
    if record is None:
        raise click.ClickException(f"no client {client_id} is registered")
    _show(record)


@clients_group.command("add")
@CONFIG
@click.argument("client_id")
@click.option("--name", default="", help="a human name for the system")
@click.option("--scope", "scopes", multiple=True, default=["exchange"], show_default=True,
              help="a scope the client may ask for (repeatable)")
@click.option("--jwks", "jwks_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the client's public keys (JWKS or one JWK) for private_key_jwt")
@click.option("--no-secret", is_flag=True, help="no client secret: the client authenticates with its "
              "keys only (needs --jwks)")
def add(config_path: Path, client_id: str, name: str, scopes: tuple[str, ...], jwks_path: Path | None,
        no_secret: bool) -> None:
    """Register a client; print its secret (shown once)."""
    from gateway.oauth.clients import ClientExists
    from gateway.oauth.secrets import hash_secret, new_secret

    config = load(config_path)
    cid = _client_id(client_id)
    if no_secret and jwks_path is None:
        raise click.UsageError("--no-secret needs --jwks: the client must have some credential")
    jwks = _read_jwks(jwks_path) if jwks_path else None
    secret = None if no_secret else new_secret()
    if not config.declares(cid):
        click.echo(f"warning: {cid} is not a member or subsystem declared in the configuration's "
                   "members", err=True)
    with operator_action(config, "clients.add", purpose=cid) as a:
        try:
            record = _store(config, a.engine).add(
                cid, name=name, scopes=scopes, secret_hash=hash_secret(secret) if secret else None,
                jwks=jwks)
        except ClientExists as exc:
            raise click.ClickException(str(exc)) from None
    _show(record)
    if secret:
        click.echo(f"client secret (shown once, store it now): {secret}", err=True)


@clients_group.command("rotate-secret")
@CONFIG
@click.argument("client_id")
def rotate_secret(config_path: Path, client_id: str) -> None:
    """Give a client a new secret (the old one stops working at once); print it once."""
    from gateway.oauth.clients import UnknownClient
    from gateway.oauth.secrets import hash_secret, new_secret

    config, cid = load(config_path), _client_id(client_id)
    secret = new_secret()
    with operator_action(config, "clients.rotate-secret", purpose=cid) as a:
        try:
            _store(config, a.engine).update(cid, secret_hash=hash_secret(secret))
        except UnknownClient as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(secret)  # only once the change is audited: an unaudited secret is never handed out
    click.echo("new client secret above (shown once); tokens issued before stay valid until they "
               "expire: disable the client to stop them", err=True)


@clients_group.command("set-keys")
@CONFIG
@click.argument("client_id")
@click.option("--jwks", "jwks_path", required=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="the client's public keys (JWKS or one JWK)")
def set_keys(config_path: Path, client_id: str, jwks_path: Path) -> None:
    """Replace a client's public keys (private_key_jwt)."""
    from gateway.oauth.clients import UnknownClient

    config, cid, jwks = load(config_path), _client_id(client_id), _read_jwks(jwks_path)
    with operator_action(config, "clients.set-keys", purpose=cid) as a:
        try:
            record = _store(config, a.engine).update(cid, jwks=jwks)
        except UnknownClient as exc:
            raise click.ClickException(str(exc)) from None
    _show(record)


def _set_enabled(config_path: Path, client_id: str, enabled: bool) -> None:
    from gateway.oauth.clients import UnknownClient

    config, cid = load(config_path), _client_id(client_id)
    with operator_action(config, "clients.enable" if enabled else "clients.disable", purpose=cid) as a:
        try:
            _store(config, a.engine).update(cid, enabled=enabled)
        except UnknownClient as exc:
            raise click.ClickException(str(exc)) from None
    if enabled:
        click.echo(f"{client_id} enabled")
    else:
        click.echo(f"{client_id} disabled: no new tokens, and its tokens are refused by every worker "
                   f"within {config.token.refresh:g} s")


@clients_group.command("disable")
@CONFIG
@click.argument("client_id")
def disable(config_path: Path, client_id: str) -> None:
    """Disable a client: no new tokens, and its current tokens refused."""
    _set_enabled(config_path, client_id, False)


@clients_group.command("enable")
@CONFIG
@click.argument("client_id")
def enable(config_path: Path, client_id: str) -> None:
    """Enable a disabled client again."""
    _set_enabled(config_path, client_id, True)


@click.command("token")
@CONFIG
@click.option("--client", "client_id", required=True, help="the client (subsystem id)")
@click.option("--secret", envvar="LIENTHONG_CLIENT_SECRET", help="its secret (client_secret_basic); "
              "also read from LIENTHONG_CLIENT_SECRET")
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="its private JWK (private_key_jwt)")
@click.option("--scope", help="scopes to ask for (space-separated)")
@click.option("--url", help="the gateway (default: the configured issuer)")
@click.option("--claims", "show_claims", is_flag=True, help="also print the token's claims (stderr)")
def token(config_path: Path, client_id: str, secret: str | None, key_path: Path | None,
          scope: str | None, url: str | None, show_claims: bool) -> None:
    """Get an access token from a running gateway, for testing; print it."""
    config = load(config_path)
    base = (url or config.token.issuer).rstrip("/")
    cid = _client_id(client_id)
    if (secret is None) == (key_path is None):
        raise click.UsageError("give either --secret or --key")
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    auth: tuple[str, str] | None = None
    if key_path is not None:
        form.update(client_assertion_for(key_path, cid, f"{base}/oauth/token"))
    else:
        assert secret is not None
        auth = (cid, secret)
    try:
        r = httpx.post(f"{base}/oauth/token", data=form, auth=auth, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {base}: {exc}") from None
    if r.status_code != 200:
        raise click.ClickException(f"token refused ({r.status_code}): {r.text}")
    access = r.json()["access_token"]
    click.echo(access)
    if show_claims:
        from joserfc import jws

        claims = json.loads(jws.extract_compact(access.encode()).payload)
        click.echo(json.dumps(claims, ensure_ascii=False, indent=2), err=True)


def client_assertion_for(key_path: Path, client_id: str, audience: str) -> dict[str, str]:
    """The form fields of a private_key_jwt client authentication (RFC 7523 2.2)."""
    from gateway.oauth.assertion import client_assertion

    return client_assertion(json.loads(key_path.read_text(encoding="utf-8")), client_id, audience)


@click.group("keys")
def keys_group() -> None:
    """The gateway's token signing keys."""


@keys_group.command("list")
@CONFIG
def list_keys(config_path: Path) -> None:
    """List signing keys, oldest first (the last one signs)."""
    from gateway import keys
    from gateway.oauth.keyring import key_created

    config = load(config_path)
    try:
        key_set = keys.load_signing_keys(config.path(config.keys_dir))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    for i, key in enumerate(key_set.keys):
        role = "signs" if i == len(key_set.keys) - 1 else "verifies"
        made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key_created(str(key.kid))))
        click.echo(f"{key.kid}  {key.alg:<6} {role:<8} made {made}")


@keys_group.command("rotate")
@CONFIG
@click.option("--algorithm", type=click.Choice(["ES256", "EdDSA"]), help="of the new key (default: "
              "token.algorithm, or the current key's)")
def rotate(config_path: Path, algorithm: str | None) -> None:
    """Make a new signing key; drop keys no unexpired token can need."""
    from gateway import keys
    from gateway.oauth.keyring import rotate as do_rotate

    config = load(config_path)
    keys_dir = config.path(config.keys_dir)
    if algorithm is None:
        try:
            algorithm = str(keys.load_signing_keys(keys_dir).keys[-1].alg)
        except FileNotFoundError:
            algorithm = config.token.algorithm
    with operator_action(config, "keys.rotate", purpose=f"new {algorithm} signing key") as a:
        done = do_rotate(keys_dir, algorithm, keep_for=config.token.lifetime + config.token.leeway)
        # Key ids are public (the JWKS lists them): they say which key the record is about.
        a.purpose = f"new {algorithm} signing key {done.new_kid}; removed {len(done.removed)}"
    click.echo(f"new signing key {done.new_kid} ({algorithm}); running workers use it within "
               f"{config.token.refresh:g} s")
    for kid in done.removed:
        click.echo(f"removed {kid} (its tokens have all expired)")
    click.echo(f"keys now: {', '.join(done.kept)}", err=True)
