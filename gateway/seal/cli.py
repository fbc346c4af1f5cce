"""``lienthong seal …``: check a seal as a receiver does; rotate and list the gateway's seal keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from gateway.cliopts import CONFIG, CONFIG_HELP, load

if TYPE_CHECKING:
    from gateway.seal import Sealer
    from gateway.seal.verify import TrustedKey

__all__ = ["seal_group"]


class _Unusable(click.ClickException):
    """The check could not be made (a file or the JWKS unreadable): exit 2, so that 1 means invalid."""

    exit_code = 2


@click.group("seal")
def seal_group() -> None:
    """The gateway seal: the gateway's own signature on what it answers and forwards
    (docs/signatures.md#gateway-seal)."""


@seal_group.command("verify")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--seal", "seal_value", metavar="VALUE",
              help="the X-Gateway-Seal header's value; MESSAGE is then the body, byte for byte")
@click.option("--jwks", "jwks_source", metavar="FILE|URL",
              help="the gateway's seal JWKS: a file, or its URL (…/.well-known/seal-jwks.json)")
@click.option("--certificate", "certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the seal certificate (PEM, several allowed in the file) instead of a JWKS")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"{CONFIG_HELP}: its published keys, instead of a JWKS")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
def verify(message: Path, seal_value: str | None, jwks_source: str | None, certificate: Path | None,
           config_path: Path | None, as_json: bool) -> None:
    """Check the gateway seal on MESSAGE: exit 0 when valid, 1 when not (2: could not check).

    MESSAGE is a body with --seal, or a saved HTTP response (curl -i: its X-Gateway-Seal header
    and body), or an XML document with an enveloped signature.
    """
    from gateway.seal.verify import verify_message

    keys = _trusted_keys(jwks_source, certificate, config_path)
    try:
        data = message.read_bytes()
    except OSError as exc:
        raise _Unusable(f"{message}: {exc.strerror or exc}") from None
    outcome = verify_message(data, keys, seal=seal_value)
    if as_json:
        click.echo(json.dumps({"valid": outcome.valid, "reason": outcome.reason, "message": outcome.message,
                               "kid": outcome.kid, "algorithm": outcome.algorithm,
                               "signer": outcome.signer, "sha256": outcome.digest}, ensure_ascii=False))
    else:
        click.echo(outcome.describe())
    raise SystemExit(0 if outcome.valid else 1)


def _trusted_keys(jwks_source: str | None, certificate: Path | None,
                  config_path: Path | None) -> list[TrustedKey]:
    from gateway.seal.verify import keys_from_certificates, read_jwks

    given = [x for x in (jwks_source, certificate, config_path) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give the keys to check against: one of --jwks, --certificate or --config")
    try:
        if certificate is not None:
            from gateway.seal.keys import SealKeyError, load_certificates

            try:
                return keys_from_certificates(load_certificates(certificate))
            except SealKeyError as exc:
                raise ValueError(str(exc)) from None
        if config_path is not None:
            return read_jwks(json.dumps(_sealer(config_path).jwks))
        assert jwks_source is not None
        if jwks_source.startswith(("http://", "https://")):
            return read_jwks(_fetch(jwks_source))
        return read_jwks(Path(jwks_source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _Unusable(f"the keys cannot be read: {exc}") from None


def _fetch(url: str) -> str:
    import httpx

    try:
        response = httpx.get(url, timeout=10.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ValueError(f"{url}: {exc}") from None
    if response.status_code != 200:
        raise ValueError(f"{url} answered HTTP {response.status_code}")
    return response.text


def _sealer(config_path: Path) -> Sealer:
    from gateway.seal import SealKeyError, load_sealer

    config = load(config_path)
    try:
        sealer = load_sealer(config)
    except SealKeyError as exc:
        raise _Unusable(f"seal: {exc}") from None
    if sealer is None:
        raise _Unusable(f"{config_path}: seal.enabled is false: this gateway does not seal")
    return sealer


@seal_group.command("list")
@CONFIG
def list_keys(config_path: Path) -> None:
    """The seal keys the gateway publishes; the one marked 'seals' signs."""
    sealer = _sealer(config_path)
    for entry in sealer.jwks["keys"]:
        from base64 import b64decode

        from cryptography import x509

        cert = x509.load_der_x509_certificate(b64decode(entry["x5c"][0]))
        role = "seals" if entry["kid"] == sealer.key.kid else "published"
        click.echo(f"{entry['kid']}  {entry.get('alg', entry['kty']):<6} {role:<9} until "
                   f"{cert.not_valid_after_utc:%Y-%m-%d}  {cert.subject.rfc4514_string()}")


@seal_group.command("jwks")
@CONFIG
def print_jwks(config_path: Path) -> None:
    """Print the seal JWKS (what GET /.well-known/seal-jwks.json answers), to hand to receivers."""
    click.echo(json.dumps(_sealer(config_path).jwks, indent=2))


@seal_group.command("rotate")
@CONFIG
@click.option("--algorithm", type=click.Choice(["ES256", "RS256", "PS256"]),
              help="of the new key (default: seal.algorithm); RS256 and PS256 make RSA 3072 keys")
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="take this key (PEM) instead of making one, e.g. one a CA certified; with --certificate")
@click.option("--certificate", "cert_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the certificate chain (PEM, leaf first) of --key")
def rotate(config_path: Path, algorithm: str | None, key_path: Path | None, cert_path: Path | None) -> None:
    """Add a new seal key to the keys folder: it seals from the gateway's next start, and the
    earlier keys stay published so that what they sealed keeps verifying."""
    from gateway.cli_spine import operator_action
    from gateway.seal.keys import Algorithm, SealKeyError, generate, load_pair, new_kid, write_pair

    config = load(config_path)
    settings = config.seal
    if settings.key is not None:
        raise click.ClickException("seal.key names the sealing key in the configuration: rotate it "
                                   "there (the new key and certificate in seal.key and "
                                   "seal.certificate, the old certificate and kid under seal.previous)")
    if (key_path is None) != (cert_path is None):
        raise click.UsageError("--key and --certificate go together")
    chosen = cast("Algorithm", algorithm or settings.algorithm)
    folder = config.path(config.keys_dir) / settings.folder
    kid = new_kid()
    with operator_action(config, "seal.rotate", purpose=f"new {chosen} seal key {kid}"):
        try:
            if key_path is not None and cert_path is not None:
                pair = load_pair(key_path, cert_path, kid, chosen, infer=algorithm is None)
                assert pair.private is not None
                write_pair(folder, kid, pair.private, list(pair.chain))
            else:
                private, cert = generate(chosen, f"Liên Thông gateway seal ({config.instance})")
                write_pair(folder, kid, private, [cert])
        except SealKeyError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"new seal key {kid} ({chosen}) in {folder}")
    click.echo("it seals once the gateway's processes restart; the earlier keys stay in the JWKS "
               "until their .pem files are removed", err=True)
