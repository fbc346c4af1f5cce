#!/usr/bin/env python3
"""Build a site overlay of deploy/kubernetes/ from a configuration folder and a witness folder.

``kubectl create secret generic --from-file=gw/`` takes the files at the folder's top only: keys/,
policies/ and the rest are skipped, and a Secret's keys cannot hold a slash anyway. This script
takes every file under the folder, gives each a flat key (``keys/oauth/x.jwk`` ->
``keys__oauth__x.jwk``), and writes, into the output folder:

- ``configmap.yaml``: ConfigMap lienthong-config, what is not secret (config.yaml, policies/, flows/,
  the trust store's certificates and CRLs);
- ``secret-keys.yaml``: Secret lienthong-keys, the rest (keys/, secrets/, ...);
- ``secret-env.yaml``: Secret lienthong-env, the environment variables config.yaml references
  (``${NAME}``), from ``--env NAME=VALUE``;
- ``secret-witness-seed.yaml``: Secret lienthong-witness-seed, the witness's folder as a tar file,
  unpacked into its volume on first start;
- ``secret-tls.yaml`` with ``--tls-cert`` and ``--tls-key``: Secret lienthong-tls for the Ingress;
- ``gateway-volume.yaml``, ``migrate-volume.yaml``: patches that mount every file at its path in
  the read-only projected volume of the gateway and of the migration Job;
- ``ingress-host.yaml``: the Ingress's host, from config.yaml's public.url;
- ``kustomization.yaml``: the base, these, and the image.

The client secrets, the clients' private keys and the demo signers' keys (client-secrets.yaml,
client-keys/, pki/signers/) are the clients' and are left out: hand them over, do not deploy them.
The output holds secrets: keep it out of version control (or encrypt it, e.g. with SOPS).

    python deploy/kubernetes/build_site.py gw --witness-state witness-state -o site \\
        --env LIENTHONG_DATABASE_URL=postgresql+psycopg://gw:...@db.example/lienthong
    kubectl apply -k site
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

HERE = Path(__file__).resolve().parent
CONFIGMAP, KEYS_SECRET, ENV_SECRET = "lienthong-config", "lienthong-keys", "lienthong-env"
SEED_SECRET, TLS_SECRET = "lienthong-witness-seed", "lienthong-tls"
SEED_KEY = "witness-state.tar"
NAMESPACE = "lienthong"  # the base's (kustomization.yaml, namespace.yaml)
# Folders (or files) under the configuration folder that are not secret: they go into the ConfigMap.
PUBLIC = ("config.yaml", "policies", "flows", "pki/anchors", "pki/intermediates", "pki/revocation",
          "trust")
# The clients', not the gateway's: never deployed.
LEFT_OUT = ("client-secrets.yaml", "client-keys", "pki/signers")
DEFAULT_ENV = {"LIENTHONG_REDIS_URL": "redis://lienthong-redis:6379/0"}
_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A ConfigMap (and a Secret) is at most 1 MiB; keep a margin for the object's own fields.
MAX_OBJECT_BYTES = 900 * 1024


class SiteError(Exception):
    """The folder cannot be deployed as it is; the message says why and what to do."""


def _under(path: PurePosixPath, prefixes: tuple[str, ...]) -> bool:
    return any(path == PurePosixPath(p) or PurePosixPath(p) in path.parents for p in prefixes)


def flat_key(path: PurePosixPath) -> str:
    """The ConfigMap or Secret key of the file at ``path`` (relative, with slashes)."""
    key = "__".join(path.parts)
    if not _KEY.fullmatch(key) or any("__" in part for part in path.parts):
        raise SiteError(f"{path}: a file name may hold only letters, digits, '-', '_' and '.', and "
                        "no '__', to become a ConfigMap or Secret key; rename it")
    return key


def collect(folder: Path) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, str]]:
    """The configuration folder's files: (ConfigMap's, Secret's) key -> bytes, and key -> path."""
    public: dict[str, bytes] = {}
    private: dict[str, bytes] = {}
    paths: dict[str, str] = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = PurePosixPath(file.relative_to(folder).as_posix())
        if _under(rel, LEFT_OUT) or "__pycache__" in rel.parts:
            continue
        key = flat_key(rel)
        (public if _under(rel, PUBLIC) else private)[key] = file.read_bytes()
        paths[key] = str(rel)
    if "config.yaml" not in public:
        raise SiteError(f"{folder} has no config.yaml: give the folder `lienthong init` wrote")
    return public, private, paths


def check_config(config: dict[str, Any]) -> None:
    """Refuse a configuration that would not run read-only behind several replicas."""
    problems = []
    if not config.get("state_dir"):
        problems.append("state_dir is not set (the configuration is mounted read-only)")
    if (config.get("migrations") or {}).get("at_start") != "wait":
        problems.append("migrations.at_start is not 'wait' (the Job lienthong-migrate migrates)")
    database = str(config.get("database", ""))
    if database.startswith("sqlite"):
        problems.append("database is SQLite: replicas need PostgreSQL")
    elif "@" in database and not database.startswith(("${", "file:")):
        problems.append("database holds its URL in the file: write database: ${LIENTHONG_DATABASE_URL}")
    if not (config.get("public") or {}).get("url"):
        problems.append("public.url is not set (the Ingress's host comes from it)")
    if problems:
        raise SiteError("the configuration is not ready for Kubernetes; run deploy/prepare.py config "
                        "on it first:\n  " + "\n  ".join(problems))


def env_references(config: Any) -> set[str]:
    """The environment variables a loaded configuration references (``${NAME}`` values)."""
    if isinstance(config, dict):
        return set().union(*(env_references(v) for v in config.values())) if config else set()
    if isinstance(config, list):
        return set().union(*(env_references(v) for v in config)) if config else set()
    if isinstance(config, str):
        match = _ENV_REF.fullmatch(config)
        return {match.group(1)} if match else set()
    return set()


def tar_folder(folder: Path) -> bytes:
    """The folder's files as an uncompressed tar (paths relative to it, owner left out)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(file), arcname=file.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with file.open("rb") as fh:
                tar.addfile(info, fh)
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def configmap(files: dict[str, bytes]) -> dict[str, Any]:
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for key, content in files.items():
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = _b64(content)
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": CONFIGMAP, "labels": _labels("config")}, "data": data}
    if binary:
        doc["binaryData"] = binary
    return doc


def secret(name: str, files: dict[str, bytes], component: str, kind: str = "Opaque") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": name, "labels": _labels(component)},
            "data": {key: _b64(content) for key, content in files.items()}}


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "lienthong", "app.kubernetes.io/component": component}


def config_volume(public: dict[str, bytes], private: dict[str, bytes],
                  paths: dict[str, str]) -> dict[str, Any]:
    """The projected volume with every file at its path."""
    def items(files: dict[str, bytes]) -> list[dict[str, str]]:
        return [{"key": key, "path": paths[key]} for key in sorted(files)]

    sources: list[dict[str, Any]] = [{"configMap": {"name": CONFIGMAP, "items": items(public)}}]
    if private:
        sources.append({"secret": {"name": KEYS_SECRET, "items": items(private)}})
    return {"name": "config", "projected": {"defaultMode": 0o440, "sources": sources}}


def _patch(api: str, kind: str, name: str, volume: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name},
            "spec": {"template": {"spec": {"volumes": [volume]}}}}


def ingress_patch(host: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "lienthong"},
            "spec": {"tls": [{"hosts": [host], "secretName": TLS_SECRET}],
                     "rules": [{"host": host, "http": {"paths": [
                         {"path": "/", "pathType": "Prefix",
                          "backend": {"service": {"name": "lienthong", "port": {"name": "http"}}}}]}}]}}


def _image(reference: str) -> dict[str, str]:
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag (a registry port is not one)
        name, tag = reference, "latest"
    return {"name": "lienthong", "newName": name, "newTag": tag}


def build(folder: Path, output: Path, *, witness_state: Path, env: dict[str, str],
          tls: tuple[Path, Path] | None = None, image: str = "lienthong:0.1.0",
          base: Path = HERE) -> list[Path]:
    """Write the site overlay into ``output``; returns the files written."""
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise SiteError(f"{folder / 'config.yaml'} is not a configuration")
    check_config(config)
    wanted = env_references(config)
    values = {**{k: v for k, v in DEFAULT_ENV.items() if k in wanted}, **env}
    missing = sorted(wanted - set(values))
    if missing:
        raise SiteError(f"config.yaml references {', '.join(missing)}: give each with --env NAME=VALUE")
    if not (witness_state / "witness.key").is_file():
        raise SiteError(f"{witness_state} holds no witness.key: run `lienthong witness init --state "
                        f"{witness_state} --name NAME` and `lienthong witness add-log` first")
    public, private, paths = collect(folder)
    for name, files in (("ConfigMap " + CONFIGMAP, public), ("Secret " + KEYS_SECRET, private)):
        size = sum(len(b) for b in files.values())
        if size > MAX_OBJECT_BYTES:
            raise SiteError(f"{name} would hold {size} bytes, more than Kubernetes takes (1 MiB)")
    host = urlsplit(str(config["public"]["url"])).hostname or ""
    volume = config_volume(public, private, paths)
    documents: dict[str, dict[str, Any]] = {
        "configmap.yaml": configmap(public),
        "secret-keys.yaml": secret(KEYS_SECRET, private, "config"),
        "secret-env.yaml": secret(ENV_SECRET, {k: v.encode() for k, v in sorted(values.items())}, "config"),
        "secret-witness-seed.yaml": secret(SEED_SECRET, {SEED_KEY: tar_folder(witness_state)}, "witness"),
        "gateway-volume.yaml": _patch("apps/v1", "Deployment", "lienthong", volume),
        "migrate-volume.yaml": _patch("batch/v1", "Job", "lienthong-migrate", volume),
        "ingress-host.yaml": ingress_patch(host),
    }
    if tls is not None:
        documents["secret-tls.yaml"] = secret(TLS_SECRET, {"tls.crt": tls[0].read_bytes(),
                                                           "tls.key": tls[1].read_bytes()},
                                              "gateway", "kubernetes.io/tls")
    patches = ("gateway-volume.yaml", "migrate-volume.yaml", "ingress-host.yaml")
    documents["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": [os.path.relpath(base, output.resolve()),
                      *(n for n in documents if n.startswith(("configmap", "secret")))],
        "patches": [{"path": name} for name in patches],
        "images": [_image(image)],
    }
    output.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for name, doc in documents.items():
        path = output / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# Written by deploy/kubernetes/build_site.py; holds secrets, keep out of version "
                     "control.\n" if name.startswith("secret") else "# Written by deploy/kubernetes/"
                     "build_site.py.\n")
            yaml.safe_dump(doc, fh, allow_unicode=True, sort_keys=False, width=100)
        written.append(path)
    return written


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="build_site.py", description=__doc__.split("\n\n")[0])
    top.add_argument("folder", type=Path, help="the configuration folder (lienthong init, then prepare.py)")
    top.add_argument("-o", "--output", type=Path, required=True, help="the site overlay's folder")
    top.add_argument("--witness-state", type=Path, required=True,
                     help="the witness's folder (lienthong witness init, witness add-log)")
    top.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
                     help="a variable config.yaml references, e.g. LIENTHONG_DATABASE_URL=... "
                     "(repeatable; LIENTHONG_REDIS_URL defaults to the cluster's Redis)")
    top.add_argument("--tls-cert", type=Path, help="the Ingress's certificate chain (PEM)")
    top.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    top.add_argument("--image", default="lienthong:0.1.0", help="the gateway image to run")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser().error("--tls-cert and --tls-key go together")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    try:
        written = build(args.folder, args.output, witness_state=args.witness_state, env=dict(args.env),
                        tls=tls, image=args.image)
    except SiteError as exc:
        print(f"build_site.py: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} files into {args.output}: kubectl apply -k {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
