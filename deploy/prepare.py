#!/usr/bin/env python3
"""Turn a folder written by ``lienthong init`` into a deployment's configuration folder.

``lienthong init`` writes a configuration for one machine: listening on loopback, migrating at start,
the database URL and the client secrets' hashes written in, the upstreams on loopback. A deployment
behind a TLS proxy with several replicas needs other settings, and this script sets them in place
(docs/operations.md): ``state_dir`` on a writable volume, ``migrations.at_start: wait`` (a Job or a
one-shot service migrates), the public URL, the proxies trusted, Redis, the witnesses, and the secrets
by reference (``clients[].secret_hash`` and ``services[].options.password`` moved to files under
``secrets/``, so that ``config.yaml`` can go into a ConfigMap). Run it with the Python that has the
gateway installed (the image's, or .venv/bin/python):

    python deploy/prepare.py config gw --public-url https://lgsp.example.gov.vn --redis '${REDIS}' ...
    python deploy/prepare.py log-origin gw     # the audit log's origin, for `lienthong witness add-log`
    python deploy/prepare.py log-vkey gw       # the key that checks its checkpoints
    python deploy/prepare.py log gw            # both, one a line

Running ``config`` again is harmless: it sets the same values and moves nothing already moved.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

SECRETS = "secrets"  # folder, beside config.yaml, of the values moved out of it
DEFAULT_STATE_DIR = "/var/lib/lienthong"


def _reference(value: object) -> bool:
    """Whether a value already names where it is kept (gateway/secretref.py)."""
    return isinstance(value, str) and (value.startswith("file:") or
                                       (value.startswith("${") and value.endswith("}")))


def _file_name(identifier: str) -> str:
    """A file name for a client or service id: the slashes and colons become underscores."""
    return identifier.replace("/", "_").replace(":", "_")


def externalise(config: dict[str, Any]) -> dict[str, str]:
    """Move client secret hashes and service passwords out of ``config`` (changed in place) into
    ``file:`` references; returns the files to write, path relative to the folder -> contents."""
    files: dict[str, str] = {}
    for client in config.get("clients") or []:
        value = client.get("secret_hash")
        if value and not _reference(value):
            path = f"{SECRETS}/clients/{_file_name(client['id'])}.hash"
            files[path] = value
            client["secret_hash"] = f"file:{path}"
    for service in config.get("services") or []:
        options = service.get("options") or {}
        value = options.get("password")
        if value and not _reference(value):
            path = f"{SECRETS}/services/{_file_name(service['id'])}.password"
            files[path] = value
            options["password"] = f"file:{path}"
    return files


def _upstream_on(url: str, host: str) -> str:
    for loopback in ("//127.0.0.1:", "//localhost:"):
        url = url.replace(loopback, f"//{host}:", 1)
    return url


def deploy_settings(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``config`` (a loaded config.yaml) with the deployment's settings: a new dict, except for the
    catalog's lists, which are changed in place."""
    out = dict(config)
    out["listen"] = {**(config.get("listen") or {}), "host": args.listen_host}
    out["state_dir"] = args.state_dir
    out["migrations"] = {**(config.get("migrations") or {}), "at_start": "wait"}
    if args.database:
        out["database"] = args.database
    if args.redis:
        out["redis"] = args.redis
    public = dict(config.get("public") or {})
    public["url"] = args.public_url
    if args.trusted_proxy:
        public["trusted_proxies"] = list(args.trusted_proxy)
    out["public"] = public
    out["token"] = {**(config.get("token") or {}), "issuer": args.public_url}
    if args.public_url.lower().startswith("https://"):
        out["console"] = {**(config.get("console") or {}), "secure_cookies": True}
    if args.operator:
        out["cli"] = {**(config.get("cli") or {}), "operators": list(args.operator)}
    if args.witness:
        audit = dict(config.get("audit") or {})
        audit["witnesses"] = [{"name": name, "url": url, "vkey": vkey} for name, url, vkey in args.witness]
        out["audit"] = audit
    if args.upstream_host:
        for service in out.get("services") or []:
            if service.get("upstream"):
                service["upstream"] = _upstream_on(service["upstream"], args.upstream_host)
        out["simulators"] = {name: {**sim, "host": "0.0.0.0"}  # noqa: S104 - a demo container
                             for name, sim in (out.get("simulators") or {}).items()}
    # The order of a file written by init, with the new top-level keys after the storage settings.
    order = ["instance", "listen", "public", "database", "state_dir", "migrations", "redis"]
    return {**{k: out[k] for k in order if k in out}, **{k: v for k, v in out.items() if k not in order}}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (the folder made 0700 if missing)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def configure(folder: Path, args: argparse.Namespace) -> Path:
    """Rewrite ``folder/config.yaml`` for the deployment; returns its path."""
    path = folder / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: not a configuration written by `lienthong init`")
    files = externalise(config) if args.externalise else {}
    for name, text in files.items():
        write_private(folder / name, text)
    config = deploy_settings(config, args)
    header = ("# Liên Thông gateway configuration, written by `lienthong init` and set for a deployment\n"
              "# by deploy/prepare.py. Relative paths are relative to this file's folder.\n")
    path.write_text(header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _instance_and_origin(folder: Path) -> tuple[dict[str, Any], str]:
    from gateway.audit.service import origin_of
    from gateway.config import AuditSettings, Config

    data = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    audit = data.get("audit") or {}
    config = Config(instance=data.get("instance", "VN"), audit=AuditSettings(origin=audit.get("origin")))
    return data, origin_of(config)


def log_origin(folder: Path) -> str:
    """The audit log's origin line, as the gateway signs it (gateway/audit/service.py)."""
    return _instance_and_origin(folder)[1]


def log_vkey(folder: Path) -> str:
    """The verifier key of the audit log's checkpoints, from keys_dir's checkpoint key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway import keys
    from gateway.audit.checkpoint import Signer

    data, origin = _instance_and_origin(folder)
    keys_dir = folder / data.get("keys_dir", "keys")
    seed = keys.load_audit_key(keys_dir, keys.CHECKPOINT_KEY)
    return Signer(origin, Ed25519PrivateKey.from_private_bytes(seed)).vkey()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="prepare.py", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    cfg = sub.add_parser("config", help="set a folder written by `lienthong init` for a deployment")
    cfg.add_argument("folder", type=Path)
    cfg.add_argument("--public-url", required=True,
                     help="the gateway's public HTTPS URL (public.url and token.issuer)")
    cfg.add_argument("--listen-host", default="0.0.0.0",  # noqa: S104 - a container's default
                     help="listen.host: every address (a container), 127.0.0.1 behind a local proxy")
    cfg.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the writable state folder")
    cfg.add_argument("--database", help="database URL, or its reference: '${LIENTHONG_DATABASE_URL}', "
                     "file:/run/secrets/database-url")
    cfg.add_argument("--redis", help="Redis URL (or its reference) for the shared rate limits")
    cfg.add_argument("--trusted-proxy", action="append", metavar="CIDR",
                     help="address or network of the TLS proxy in front (repeatable)")
    cfg.add_argument("--operator", action="append", metavar="ACCOUNT",
                     help="account allowed to run the state-changing commands (cli.operators; repeatable)")
    cfg.add_argument("--witness", action="append", nargs=3, metavar=("NAME", "URL", "VKEY"),
                     help="an outside witness of the audit log (audit.witnesses; repeatable)")
    cfg.add_argument("--upstream-host", help="the demo's upstreams on this host instead of loopback "
                     "(the simulators' container); the simulators listen on every address")
    cfg.add_argument("--keep-secrets-inline", dest="externalise", action="store_false",
                     help="leave client secret hashes and passwords in config.yaml")
    for name, text in (("log-origin", "print the audit log's origin"),
                       ("log-vkey", "print the verifier key of the audit log's checkpoints"),
                       ("log", "print both, one a line")):
        sub.add_parser(name, help=text).add_argument("folder", type=Path)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "config":
        print(f"configured {configure(args.folder, args)}")
    elif args.command == "log-origin":
        print(log_origin(args.folder))
    elif args.command == "log-vkey":
        print(log_vkey(args.folder))
    else:
        print(f"{log_origin(args.folder)}\n{log_vkey(args.folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
