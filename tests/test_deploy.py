"""deploy/: what an operator runs would start. The Kubernetes manifests validate against the API's
schemas (kubernetes-validate) and mount the whole configuration, read-only, with a writable state
folder; the compose file validates against the compose specification's schema; every command in
them and in the systemd units is a real ``lienthong`` command line; the image builds where a
container engine runs."""

from __future__ import annotations

import base64
import configparser
import importlib.util
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
SYSTEMD = DEPLOY / "systemd"
CONFIG_MOUNT = "/srv/lienthong/config"
CONFIG_FILE = f"{CONFIG_MOUNT}/config.yaml"
STATE_DIR = "/var/lib/lienthong"
K8S_VERSION = "1.33"
PUBLIC_URL = "https://lgsp.example.gov.vn"
DB_URL = "postgresql+psycopg://gw:secret@db.example/lienthong"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


prepare = _module(DEPLOY / "prepare.py")
build_site = _module(KUBE / "build_site.py")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _witness_group() -> click.Group:
    """``lienthong witness``."""
    from gateway.cli import main

    group = main.commands["witness"]
    assert isinstance(group, click.Group)
    return group


# ------------------------------------------------------------------------ lienthong command lines

def check_command_line(argv: list[str]) -> None:
    """Fail unless ``argv`` (after ``lienthong``) names a real subcommand with real options, every
    required option given and each value of the type its option takes (files not looked for)."""
    from gateway.cli import main

    command: click.Command = main
    words = list(argv)
    path = ["lienthong"]
    while isinstance(command, click.Group):
        assert words, f"{' '.join(path)} needs a subcommand"
        name = words.pop(0)
        sub = command.commands.get(name)
        if sub is None and command is main and name == "witness":
            sub = _witness_group()
        assert sub is not None, f"{' '.join(path)} has no subcommand {name!r}"
        command, path = sub, [*path, name]
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    given: set[str | None] = set()
    positional: list[str] = []
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            positional.append(word)
            continue
        param = options.get(word)
        assert param is not None, f"{' '.join(path)} has no option {word} (see {' '.join(path)} --help)"
        given.add(param.name)
        if param.is_flag:
            continue
        assert words, f"{' '.join(path)} {word} needs a value"
        value = words.pop(0)
        if not isinstance(param.type, click.Path):
            param.type.convert(value, param, None)
    assert len(positional) == len(arguments), f"{' '.join(path)}: arguments {positional}"
    missing = [p.name for p in command.params if isinstance(p, click.Option) and p.required
               and p.name not in given]
    assert not missing, f"{' '.join(path)} misses the required {missing}"


def test_the_command_line_checker_refuses_what_lienthong_refuses() -> None:
    """An unknown subcommand, an unknown option, a missing --config or a bad number is refused."""
    check_command_line(["serve", "--config", CONFIG_FILE, "--workers", "2", "--port", "8080"])
    for bad in (["server", "--config", "x"], ["serve", "--config", "x", "--threads", "2"],
                ["migrate"], ["serve", "--config", "x", "--workers", "many"]):
        with pytest.raises((AssertionError, click.BadParameter)):
            check_command_line(bad)


# ------------------------------------------------------------------------------ Kubernetes, base

def _validate(doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install -e '.[test]')")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


BASE_MANIFESTS = sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", BASE_MANIFESTS, ids=lambda p: p.name)
def test_every_base_manifest_validates(path: Path) -> None:
    """Each document of deploy/kubernetes/ is valid for the Kubernetes API, unknown fields refused."""
    docs = _docs(path)
    assert docs
    for doc in docs:
        _validate(doc)


def test_the_base_lists_every_manifest_and_has_every_kind_asked_for() -> None:
    """kustomization.yaml names every manifest; together they hold the kinds a deployment needs."""
    listed = set(yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in BASE_MANIFESTS}
    kinds = {d["kind"] for p in BASE_MANIFESTS for d in _docs(p)}
    assert {"Deployment", "Service", "Ingress", "Job", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "NetworkPolicy", "PersistentVolumeClaim"} <= kinds


# ------------------------------------------------------------------------------ Kubernetes, site

@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A configuration made as deploy/README.md says (init, witness, prepare.py) and its site overlay."""
    from gateway.init import initialise

    root = tmp_path_factory.mktemp("site")
    folder = root / "gw"
    initialise(folder, database="${LIENTHONG_DATABASE_URL}")
    witness_state = root / "witness-state"
    runner = CliRunner()
    made = runner.invoke(_witness_group(), ["init", "--state", str(witness_state),
                                            "--name", "witness.example.gov.vn/w1"])
    assert made.exit_code == 0, made.output
    witness_vkey = made.stdout.strip().splitlines()[-1]
    added = runner.invoke(_witness_group(), ["add-log", "--state", str(witness_state),
                                             "--origin", prepare.log_origin(folder),
                                             "--vkey", prepare.log_vkey(folder)])
    assert added.exit_code == 0, added.output
    witness = ["--witness", "witness.example.gov.vn/w1", "http://lienthong-witness:9120", witness_vkey]
    assert prepare.main(["config", str(folder), "--public-url", PUBLIC_URL,
                         "--database", "${LIENTHONG_DATABASE_URL}", "--redis", "${LIENTHONG_REDIS_URL}",
                         "--trusted-proxy", "10.0.0.0/8", "--operator", "lienthong", *witness]) == 0
    output = root / "site"
    assert build_site.main([str(folder), "-o", str(output), "--witness-state", str(witness_state),
                            "--env", f"LIENTHONG_DATABASE_URL={DB_URL}"]) == 0
    docs = {p.name: _docs(p) for p in output.glob("*.yaml")}
    rendered: list[dict[str, Any]] | None = None
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(output)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    yield {"folder": folder, "output": output, "docs": docs, "rendered": rendered,
           "witness_state": witness_state}


def _rendered(site: dict[str, Any]) -> list[dict[str, Any]]:
    if site["rendered"] is None:
        pytest.skip("kubectl is not installed: the overlay is not rendered (kubectl kustomize)")
    return list(site["rendered"])


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_site_objects_validate(site: dict[str, Any]) -> None:
    """build_site.py's ConfigMap and Secrets validate; so does every object of the rendered overlay."""
    for name, docs in site["docs"].items():
        if name.startswith(("configmap", "secret")):
            for doc in docs:
                _validate(doc)
    rendered = _rendered(site)
    for doc in rendered:
        _validate(doc)
    assert all(d["metadata"].get("namespace") == "lienthong" for d in rendered if d["kind"] != "Namespace")


def _materialise(rendered: list[dict[str, Any]], volume: dict[str, Any], target: Path) -> None:
    """Write the files the projected volume would show, as the kubelet does."""
    for source in volume["projected"]["sources"]:
        ((kind, ref),) = source.items()
        obj = _find(rendered, "ConfigMap" if kind == "configMap" else "Secret", ref["name"])
        for item in ref["items"]:
            key, path = item["key"], target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "configMap" and key in obj.get("data", {}):
                path.write_text(obj["data"][key], encoding="utf-8")
            else:
                data = obj.get("binaryData", {}) if kind == "configMap" else obj["data"]
                path.write_bytes(base64.b64decode(data[key]))


def _config_volume(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in pod_spec["volumes"] if v["name"] == "config")


def test_the_config_volume_holds_every_file_of_the_folder_at_its_path(
        site: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the gateway reads (keys/, policies/, flows/, pki/, secrets/) is mounted at its path,
    the clients' secrets are not, and the mounted folder passes `lienthong check`."""
    from gateway.cli import main

    rendered = _rendered(site)
    pod = _find(rendered, "Deployment", "lienthong")["spec"]["template"]["spec"]
    mounted = tmp_path / "config"
    _materialise(rendered, _config_volume(pod), mounted)
    folder: Path = site["folder"]

    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    left_out = {f for f in files(folder) if build_site._under(PurePosixPath(f), build_site.LEFT_OUT)}
    assert {"client-secrets.yaml", "pki/signers/citizen.key"} <= left_out
    assert files(mounted) == files(folder) - left_out
    assert {"keys/audit-checkpoint.key", "keys/console-session.key", "policies/demo.yaml"} <= files(mounted)
    assert any(f.startswith("keys/oauth/") for f in files(mounted))
    assert any(f.startswith("secrets/clients/") for f in files(mounted))
    env = _find(rendered, "Secret", "lienthong-env")["data"]
    for name, value in env.items():
        monkeypatch.setenv(name, base64.b64decode(value).decode())
    result = CliRunner().invoke(main, ["check", "--config", str(mounted / "config.yaml")])
    assert result.exit_code == 0, result.output


def test_keys_and_client_secret_hashes_are_in_the_secret_not_the_configmap(site: dict[str, Any]) -> None:
    """The ConfigMap holds no key and no secret hash: config.yaml references them as files."""
    (configmap,) = site["docs"]["configmap.yaml"]
    (keys,) = site["docs"]["secret-keys.yaml"]
    text = "\n".join(configmap["data"].values())
    assert "$argon2" not in text and "demo-portal" not in text
    assert all(not k.startswith(("keys__", "secrets__")) for k in configmap["data"])
    assert "keys__audit-checkpoint.key" in keys["data"]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert all(c["secret_hash"].startswith("file:secrets/") for c in config["clients"])


def test_every_secret_and_configmap_referenced_exists(site: dict[str, Any]) -> None:
    """Each Secret or ConfigMap a pod or the Ingress names is in the overlay, with every key named."""
    rendered = _rendered(site)
    defined = {(d["kind"], d["metadata"]["name"]): d for d in rendered}
    wanted: list[tuple[str, str, list[str]]] = []
    for doc in rendered:
        if doc["kind"] == "Ingress":
            wanted += [("Secret", t["secretName"], []) for t in doc["spec"].get("tls", [])]
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    wanted.append(("Secret", source["secretRef"]["name"], []))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"]["secretName"], []))
            for source in volume.get("projected", {}).get("sources", []):
                for kind, ref in source.items():
                    wanted.append(("ConfigMap" if kind == "configMap" else "Secret", ref["name"],
                                   [i["key"] for i in ref.get("items", [])]))
    external = {("Secret", "lienthong-tls")}  # cert-manager's, or build_site.py --tls-cert/--tls-key
    for kind, name, keys in wanted:
        if (kind, name) in external:
            continue
        assert (kind, name) in defined, f"{kind} {name} is referenced but not in the overlay"
        obj = defined[(kind, name)]
        held = set(obj.get("data", {})) | set(obj.get("binaryData", {}))
        assert set(keys) <= held, f"{kind} {name} lacks {set(keys) - held}"
    assert ("Secret", "lienthong-witness-seed") in defined


def test_the_tls_secret_is_made_when_given(site: dict[str, Any], tmp_path: Path) -> None:
    """--tls-cert/--tls-key add the Ingress's kubernetes.io/tls Secret lienthong-tls."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    env = ["--env", f"LIENTHONG_DATABASE_URL={DB_URL}"]
    assert build_site.main([str(site["folder"]), "-o", str(tmp_path / "out"), "--witness-state",
                            str(site["witness_state"]), "--tls-cert", str(cert), "--tls-key", str(key),
                            *env]) == 0
    (tls,) = _docs(tmp_path / "out" / "secret-tls.yaml")
    _validate(tls)
    assert tls["type"] == "kubernetes.io/tls" and tls["metadata"]["name"] == "lienthong-tls"


def test_build_site_refuses_a_configuration_not_prepared(tmp_path: Path, site: dict[str, Any]) -> None:
    """A configuration that migrates at start, lacks a variable's value, or is as `lienthong init`
    wrote it (SQLite, no state_dir) is refused, saying why."""
    folder = tmp_path / "gw"
    shutil.copytree(site["folder"], folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["migrations"] = {"at_start": "auto"}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(build_site.SiteError, match="at_start"):
        build_site.build(folder, tmp_path / "out", witness_state=site["witness_state"],
                         env={"LIENTHONG_DATABASE_URL": DB_URL})
    config = yaml.safe_load((site["folder"] / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(build_site.SiteError, match="LIENTHONG_DATABASE_URL"):
        build_site.build(folder, tmp_path / "out", witness_state=site["witness_state"], env={})
    for key in ("state_dir", "migrations", "public"):
        config.pop(key)
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "database": "sqlite:///lienthong.db"}))
    with pytest.raises(build_site.SiteError, match="state_dir") as refused:
        build_site.build(folder, tmp_path / "out", witness_state=site["witness_state"], env={})
    assert "SQLite" in str(refused.value) and "public.url" in str(refused.value)


def test_gateways_mount_the_config_read_only_and_write_only_their_state(site: dict[str, Any]) -> None:
    """The gateway and the Job mount the configuration read-only; the gateway's state_dir is a
    writable volume of its own; the root filesystem is read-only, /tmp a volume; uid 10001."""
    rendered = _rendered(site)
    config = yaml.safe_load(_find(rendered, "ConfigMap", "lienthong-config")["data"]["config.yaml"])
    assert config["state_dir"] == STATE_DIR and config["migrations"]["at_start"] == "wait"
    for kind, name in (("Deployment", "lienthong"), ("Job", "lienthong-migrate")):
        pod = _find(rendered, kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[CONFIG_MOUNT].get("readOnly") is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in mounts
        assert container["args"][container["args"].index("--config") + 1] == CONFIG_FILE
        if kind == "Deployment":
            state = mounts[STATE_DIR]
            assert not state.get("readOnly")
            volume = next(v for v in pod["volumes"] if v["name"] == state["name"])
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume


def test_the_migration_job_runs_lienthong_migrate_with_the_gateways_config(site: dict[str, Any]) -> None:
    """The Job runs `lienthong migrate` on the same configuration volume as the gateway."""
    rendered = _rendered(site)
    job = _find(rendered, "Job", "lienthong-migrate")["spec"]["template"]["spec"]
    deployment = _find(rendered, "Deployment", "lienthong")["spec"]["template"]["spec"]
    assert job["containers"][0]["args"][:1] == ["migrate"]
    assert _config_volume(job) == _config_volume(deployment)
    assert job["containers"][0]["envFrom"] == deployment["containers"][0]["envFrom"]


def test_probes_ask_healthz_and_readyz() -> None:
    """Liveness and startup ask /healthz, readiness /readyz, on the port the gateway listens on."""
    (deployment, *_) = _docs(KUBE / "gateway.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == 8080 and "--workers" in container["args"]
    startup = container["startupProbe"]
    wait_timeout = 300  # migrations.wait_timeout's default: a replica may wait that long for the Job
    assert startup["periodSeconds"] * startup["failureThreshold"] > wait_timeout
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_every_command_in_the_manifests_is_a_real_lienthong_command() -> None:
    """Each container of the lienthong image runs a real subcommand with real options."""
    seen = set()
    for path in BASE_MANIFESTS:
        for doc in _docs(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                if container["image"].startswith("lienthong:") and "command" not in container:
                    check_command_line(container["args"])
                    seen.add(container["args"][0])
    assert {"serve", "migrate", "witness"} <= seen


def test_the_witness_seed_unpacks_into_a_witness_state(site: dict[str, Any], tmp_path: Path) -> None:
    """The seed Secret's tar gives back the witness's key (mode 0600) and state, as the init
    container unpacks it."""
    import tarfile

    (seed,) = site["docs"]["secret-witness-seed.yaml"]
    archive = tmp_path / "seed.tar"
    archive.write_bytes(base64.b64decode(seed["data"]["witness-state.tar"]))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "state", filter="data")
    key = tmp_path / "state" / "witness.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    result = CliRunner().invoke(_witness_group(), ["vkey", "--state", str(tmp_path / "state")])
    assert result.exit_code == 0 and result.stdout.startswith("witness.example.gov.vn/w1+")
    (witness, *_) = _docs(KUBE / "witness.yaml")
    (init,) = witness["spec"]["template"]["spec"]["initContainers"]
    assert "/seed/witness-state.tar" in init["command"][-1]


# -------------------------------------------------------------------------------------- compose

def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _lienthong_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items()
            if str(s.get("image", "")).endswith("lienthong:0.1.0}")}


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    """compose.yaml is valid for the compose specification's JSON schema (the copy check-jsonschema
    ships, vendored from compose-spec/compose-spec)."""
    try:
        import check_jsonschema
    except ImportError:
        pytest.skip("check-jsonschema (which ships the compose specification's schema) is not "
                    "installed: pip install -e '.[test]'")
    import json

    from jsonschema.validators import validator_for

    schema_file = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, errors


def _compose_cli() -> list[str] | None:
    for engine in ("docker", "podman"):
        if shutil.which(engine) and subprocess.run([engine, "compose", "version"], capture_output=True,
                                                   timeout=30).returncode == 0:
            return [engine, "compose"]
    return None


def test_docker_compose_reads_the_file() -> None:
    """`docker compose config` (or podman's) accepts the file, where a compose plugin is installed."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` or `podman compose` on this machine: the file is checked "
                    "against the compose specification's schema only")
    out = subprocess.run([*cli, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "LIENTHONG_IMAGE": "lienthong:test"})
    assert out.returncode == 0, out.stderr


def test_compose_runs_two_gateways_after_the_migration_with_the_config_read_only() -> None:
    """Two gateway nodes (distinct hostnames and state volumes) mount the config volume read-only,
    wait for the one-shot migrate service, and run as uid 10001 like the init that wrote the keys."""
    compose = _compose()
    services = compose["services"]
    gateways = {n: s for n, s in services.items() if s.get("command", [None])[0] == "serve"}
    assert set(gateways) == {"gateway-1", "gateway-2"}
    assert len({s["hostname"] for s in gateways.values()}) == 2
    states = set()
    for service in gateways.values():
        mounts = dict(m.split(":", 1) for m in service["volumes"])
        assert mounts["config"] == f"{CONFIG_MOUNT}:ro"
        states.add(next(v for v, target in mounts.items() if target == STATE_DIR))
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        check_command_line(service["command"])
    assert len(states) == 2
    migrate = services["migrate"]
    assert migrate["command"][0] == "migrate"
    assert f"config:{CONFIG_MOUNT}:ro" in migrate["volumes"]
    assert migrate["depends_on"]["init"]["condition"] == "service_completed_successfully"
    init = services["init"]
    assert f"config:{CONFIG_MOUNT}" in init["volumes"] and init["entrypoint"] == ["lienthong-compose-init"]
    for name, service in _lienthong_services(compose).items():
        assert service["user"] == "10001:10001", name
        if "command" in service:
            check_command_line(service["command"])
    assert {"db", "redis", "witness", "nginx", "init", "migrate"} <= set(services)


def test_compose_secrets_volumes_and_nginx_fit_together() -> None:
    """Every secret and volume a service names is declared, and make-local-secrets.sh makes each
    secret's file; nginx proxies to the gateways' names with the certificate the script makes."""
    compose = _compose()
    script = (DEPLOY / "make-local-secrets.sh").read_text(encoding="utf-8")
    for name, service in compose["services"].items():
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: secret {secret} is not declared"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"
            else:
                assert (DEPLOY / source).resolve().is_relative_to(DEPLOY)
    for secret in compose["secrets"].values():
        assert secret["file"].removeprefix("./") in script
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    upstreams = set(re.findall(r"server (gateway-\d):8080", nginx))
    assert upstreams == {"gateway-1", "gateway-2"}
    assert "tls/server.crt" in script and "/etc/nginx/tls/server.crt" in nginx
    assert "X-Forwarded-Proto" in nginx
    subnet = compose["networks"]["lienthong"]["ipam"]["config"][0]["subnet"]
    assert subnet == compose["services"]["init"]["environment"]["TRUSTED_PROXIES"]


def test_make_local_secrets_makes_what_compose_mounts(tmp_path: Path) -> None:
    """make-local-secrets.sh makes the certificate, the password and the URL holding it, in folders
    closed to other users, and keeps them when run again."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: make-local-secrets.sh is not run")
    script = tmp_path / "make-local-secrets.sh"
    shutil.copyfile(DEPLOY / "make-local-secrets.sh", script)
    out = subprocess.run(["sh", str(script), "lgsp.example.test"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for secret in _compose()["secrets"].values():
        assert (tmp_path / secret["file"]).is_file()
    password = (tmp_path / "secrets" / "db-password").read_text().strip()
    assert f":{password}@db:5432/" in (tmp_path / "secrets" / "database-url").read_text()
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert "lgsp.example.test" in subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls" / "server.crt")],
        capture_output=True, text=True).stdout
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and (tmp_path / "secrets" / "db-password").read_text().strip() == password


def test_the_shell_scripts_pass_shellcheck() -> None:
    """compose-init.sh and make-local-secrets.sh are POSIX sh without shellcheck's warnings."""
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck): the scripts are not linted")
    out = subprocess.run(["shellcheck", "-s", "sh", str(DEPLOY / "compose-init.sh"),
                          str(DEPLOY / "make-local-secrets.sh")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


def test_the_nginx_configuration_is_accepted_by_nginx(tmp_path: Path) -> None:
    """`nginx -t` accepts the proxy's configuration (hosts and paths pointed at this machine)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed: its configuration is not checked")
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr
    from cryptography import x509  # a throwaway certificate for the test
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    text = (DEPLOY / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    text = (text.replace("/etc/nginx/tls", str(tmp_path)).replace("/tmp/nginx.pid", str(tmp_path / "pid"))
            .replace("gateway-1:8080", "127.0.0.1:8080").replace("gateway-2:8080", "127.0.0.2:8080"))
    match = re.search(r"nginx/(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < (1, 25):
        text = text.replace("http2 on;", "")  # the directive is newer than this nginx (1.25.1)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    out = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-e", str(tmp_path / "error.log")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_the_compose_init_script_writes_keys_the_gateway_account_owns(tmp_path: Path) -> None:
    """deploy/compose-init.sh, run as in the init container (here as this user, with this checkout's
    lienthong): the config with keys 0600, the clients' secrets moved to the handover folder, the
    witness's key and the log it accepts, and a configuration that `lienthong check` passes."""
    database_url = tmp_path / "database-url"
    database_url.write_text("postgresql+psycopg://gw:secret@db/lienthong\n")
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "CONFIG_DIR": str(tmp_path / "config"), "HANDOVER_DIR": str(tmp_path / "handover"),
           "WITNESS_STATE": str(tmp_path / "witness"), "DATABASE_REF": f"file:{database_url}",
           "PREPARE": f"{shlex.quote(sys.executable)} {shlex.quote(str(DEPLOY / 'prepare.py'))}"}
    out = subprocess.run(["sh", str(DEPLOY / "compose-init.sh")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    config_dir = tmp_path / "config"
    assert stat.S_IMODE((config_dir / "keys" / "audit-checkpoint.key").stat().st_mode) == 0o600
    assert (tmp_path / "handover" / "client-secrets.yaml").is_file()
    assert not (config_dir / "client-secrets.yaml").exists() and not (config_dir / "pki" / "signers").exists()
    assert (tmp_path / "witness" / "witness.key").is_file()
    config = yaml.safe_load((config_dir / "config.yaml").read_text())
    assert config["migrations"]["at_start"] == "wait" and config["state_dir"] == STATE_DIR
    assert config["audit"]["witnesses"][0]["url"] == "http://witness:9120"
    upstreams = [s["upstream"] for s in config["services"] if s.get("upstream")]
    assert upstreams and all(u.startswith("http://simulators:") for u in upstreams)
    again = subprocess.run(["sh", str(DEPLOY / "compose-init.sh")], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert yaml.safe_load((config_dir / "config.yaml").read_text()) == config


# ---------------------------------------------------------------------------------------- systemd

def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"), source=name)
    return parser


UNITS = ("lienthong.service", "lienthong-migrate.service", "lienthong-witness.service")


def test_systemd_units_parse_and_run_real_lienthong_commands() -> None:
    """Each unit parses; its ExecStart is the installed lienthong with a real command line."""
    assert {p.name for p in SYSTEMD.glob("*.service")} == set(UNITS)
    for name in UNITS:
        unit = _unit(name)
        argv = shlex.split(unit["Service"]["ExecStart"])
        assert argv[0] == "/opt/lienthong/venv/bin/lienthong", name
        check_command_line(argv[1:])


def test_the_gateway_unit_needs_the_migration_and_writes_only_its_state() -> None:
    """lienthong.service requires and follows the migrate oneshot, on the same configuration; it
    writes only StateDirectory=lienthong, which is the configured state_dir."""
    gateway, migrate = _unit("lienthong.service"), _unit("lienthong-migrate.service")
    assert "lienthong-migrate.service" in gateway["Unit"]["Requires"].split()
    assert "lienthong-migrate.service" in gateway["Unit"]["After"].split()
    assert migrate["Service"]["Type"] == "oneshot"
    assert shlex.split(migrate["Service"]["ExecStart"])[1] == "migrate"
    configs = [(argv := shlex.split(u["Service"]["ExecStart"]))[argv.index("--config") + 1]
               for u in (gateway, migrate)]
    assert configs[0] == configs[1] == "/etc/lienthong/config.yaml"
    assert gateway["Service"]["ProtectSystem"] == "strict"
    assert f"/var/lib/{gateway['Service']['StateDirectory']}" == STATE_DIR
    witness = _unit("lienthong-witness.service")
    assert witness["Service"]["User"] != gateway["Service"]["User"]


def test_systemd_analyze_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` knows every key (with the venv's lienthong and root in place of the
    installed paths and accounts, which this machine lacks)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units are checked by parsing only")
    lienthong = Path(sys.executable).parent / "lienthong"
    for name in UNITS:
        text = (SYSTEMD / name).read_text(encoding="utf-8").replace("/opt/lienthong/venv/bin/lienthong",
                                                                    str(lienthong))
        text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / n) for n in UNITS)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Unknown" not in out.stderr, out.stderr


# ------------------------------------------------------------------------------------------ image

def test_the_dockerfile_copies_what_the_wheel_needs_and_runs_as_10001() -> None:
    """Every folder the wheel bundles is copied into the build stage and not ignored; the image runs
    as 10001 and makes the mount points (config, state, witness) that account's."""
    import tomllib

    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for folder in [*wheel["packages"], *wheel["force-include"]]:
        assert re.search(rf"^COPY {folder} {folder}$", dockerfile, re.M), folder
        assert f"!{folder}" in ignore.split()
    for copied in re.findall(r"^COPY (?:--chmod=\S+ )?(deploy/\S+) ", dockerfile, re.M):
        assert (ROOT / copied).is_file() and f"!{copied}" in ignore.split()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    for mount in (CONFIG_MOUNT, STATE_DIR, "/var/lib/lienthong-witness"):
        assert mount in dockerfile
    assert "install -d -o 10001 -g 10001" in dockerfile


def _engine() -> str | None:
    for engine in ("docker", "podman"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True,
                                                   timeout=30).returncode == 0:
            return engine
    return None


@pytest.mark.slow
def test_the_image_builds_and_runs_lienthong_as_10001() -> None:
    """The image builds with docker or podman, where one runs, and its lienthong runs as uid 10001."""
    engine = _engine()
    if engine is None:
        pytest.skip("no container engine runs here (docker or podman with a reachable daemon): "
                    "the image is not built; the Dockerfile is checked by reading it")
    tag = "lienthong:test-deploy"
    build = subprocess.run([engine, "build", "-q", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([engine, "run", "--rm", "--entrypoint", "sh", tag, "-c",
                          "id -u && lienthong --version && lienthong migrate --help >/dev/null"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "10001"
