"""The `lienthong` commands outside the spine's tests: `init`, `check`, `serve` and `simulators` up
to where they would start serving, `policy check|explain`, `users`; every command's --help; and the
error paths (no configuration, a broken one, bad arguments): a clear message, a non-zero exit and no
traceback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from gateway import __version__
from gateway.cli import main
from gateway.config import load_config
from gateway.console.users import UserStore
from gateway.init import initialise
from gateway.storage.db import create_engine

PASSWORD = "mot-mat-khau-rat-dai"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
ONESTOP = "VN/GOV/000.00.00.H60/MOTCUA"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def failed(result: Result, code: int = 1) -> str:
    """The output of a command that failed cleanly: the exit code, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configuration `lienthong init` wrote, for the commands that only read it."""
    return initialise(tmp_path_factory.mktemp("cli") / "gw").config_path


@pytest.fixture
def own_config(tmp_path: Path) -> Iterator[Path]:
    """A configuration of this test's own, to change or break."""
    yield initialise(tmp_path / "gw").config_path


def _edit(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


ALL_COMMANDS = list(_commands(main))


# -- help, version --------------------------------------------------------------------------------

def test_the_command_lists_its_commands_and_version() -> None:
    """`lienthong --help` names every group; `--version` prints the package's version; -h works."""
    helped = run("--help")
    assert helped.exit_code == 0
    for name in ("init", "serve", "check", "demo", "simulators", "clients", "keys", "token", "policy",
                 "deliveries", "stats", "audit", "users"):
        assert re.search(rf"^\s+{name}\b", helped.output, re.M), name
    assert run("-h").output == helped.output
    version = run("--version")
    assert version.exit_code == 0 and version.output.strip() == f"lienthong, version {__version__}"


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[" ".join(c) for c in ALL_COMMANDS])
def test_every_command_explains_itself(command: tuple[str, ...]) -> None:
    """Every command and group answers --help with its usage and a description, exit 0."""
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {' '.join(command)}")
    assert len(result.output.splitlines()) >= 4


def test_commands_that_need_a_configuration_say_so() -> None:
    """Leaving out --config is a usage error naming the option, for every command that reads one."""
    needing = [c for c in ALL_COMMANDS if not isinstance(_command(c), click.Group)
               and any(p.name == "config_path" and p.required for p in _command(c).params)]
    assert ("clients", "disable") in needing and ("serve",) in needing and ("users", "add") in needing
    for command in needing:
        result = run(*command, *_required_arguments(command))
        assert "Missing option '--config'" in failed(result, 2), command


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _required_arguments(path: tuple[str, ...]) -> list[str]:
    """Placeholder values for a command's required arguments, so that only --config is missing."""
    values = {"role": "auditor", "index": "0"}
    return [values.get(p.name or "", "x") for p in _command(path).params
            if isinstance(p, click.Argument) and p.required]


@pytest.mark.parametrize("command", [("check",), ("serve",), ("clients", "list"), ("users", "list"),
                                     ("deliveries", "list"), ("audit", "verify"), ("keys", "rotate")])
def test_a_configuration_that_does_not_exist_is_named(command: tuple[str, ...], tmp_path: Path) -> None:
    """A --config path that is not there: exit 2, the path named."""
    missing = tmp_path / "nowhere.yaml"
    output = failed(run(*command, "--config", str(missing)), 2)
    assert "does not exist" in output and "nowhere.yaml" in output


@pytest.mark.parametrize("command", [("check",), ("serve",), ("simulators",), ("clients", "list"),
                                     ("users", "add", "can.bo", "--role", "auditor"),
                                     ("deliveries", "retry", "--dead"), ("keys", "rotate")])
def test_a_broken_configuration_is_reported_with_its_line(command: tuple[str, ...],
                                                          tmp_path: Path) -> None:
    """A configuration with an unknown key or a bad value: exit 1 naming the file, the line and what
    is wrong, before anything is done."""
    bad = tmp_path / "config.yaml"
    bad.write_text("instance: VN\nlisten:\n  port: not-a-number\n", encoding="utf-8")
    output = failed(run(*command, "--config", str(bad), "--password", PASSWORD)
                    if "add" in command else run(*command, "--config", str(bad)))
    assert "invalid configuration" in output and "config.yaml" in output and ":3" in output


# -- init -----------------------------------------------------------------------------------------

def test_init_writes_a_configuration_that_checks(tmp_path: Path) -> None:
    """`lienthong init DIR` writes the configuration and prints each client's secret once; `check`
    then passes; a second init refuses to overwrite unless --force."""
    target = tmp_path / "gw"
    done = run("init", str(target), "--port", "8181")
    assert done.exit_code == 0, done.output
    config = target / "config.yaml"
    assert f"Wrote {config}" in done.output and "lienthong serve --config" in done.output
    secrets = yaml.safe_load((target / "client-secrets.yaml").read_text())
    for client, secret in secrets.items():
        assert f"  {client}: {secret}" in done.output
    assert yaml.safe_load(config.read_text())["listen"]["port"] == 8181
    checked = run("check", "--config", str(config))
    assert checked.exit_code == 0 and checked.output.strip().endswith(": OK")
    assert re.search(r"\d+ services, 9 clients, \d+ policy rules", checked.output)

    again = run("init", str(target))
    assert "exists" in failed(again) and "--force" in again.output
    forced = run("init", str(target), "--force")
    assert forced.exit_code == 0
    assert yaml.safe_load((target / "client-secrets.yaml").read_text()) != secrets


def test_init_takes_a_database_url(tmp_path: Path) -> None:
    """--database goes into the configuration as given."""
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert run("init", str(tmp_path / "gw"), "--database", url).exit_code == 0
    assert yaml.safe_load((tmp_path / "gw" / "config.yaml").read_text())["database"] == url


def test_init_refuses_a_file_as_its_folder(tmp_path: Path) -> None:
    """A DIRECTORY that is a file is a usage error."""
    (tmp_path / "file").write_text("x")
    assert "is a file" in failed(run("init", str(tmp_path / "file")), 2)


# -- check, serve, simulators, demo ---------------------------------------------------------------

def _break_policies(config: Path) -> Path:
    policy = config.parent / "policies" / "broken.yaml"
    policy.write_text("rules:\n  - name: no-services\n    clients: ['*']\n", encoding="utf-8")
    return policy


def test_check_names_a_broken_policy(own_config: Path) -> None:
    """A policy file that does not parse fails `check` with the file."""
    _break_policies(own_config)
    output = failed(run("check", "--config", str(own_config)))
    assert "invalid policy" in output and "broken.yaml" in output


def test_check_names_a_catalog_problem(own_config: Path) -> None:
    """A service of a subsystem nobody declares is named with what is wrong."""
    data = yaml.safe_load(own_config.read_text())
    data["services"].append({"id": "VN/GOV/000.00.00.X99/NOBODY/echo", "connector": "rest",
                             "upstream": "http://127.0.0.1:1"})
    own_config.write_text(yaml.safe_dump(data, allow_unicode=True))
    output = failed(run("check", "--config", str(own_config)))
    assert "which no member in 'members' declares" in output


def test_serve_fails_before_serving_when_the_gateway_cannot_start(own_config: Path) -> None:
    """`serve` builds the runtime first: a broken policy is a message and exit 1, no server."""
    _break_policies(own_config)
    output = failed(run("serve", "--config", str(own_config)))
    assert "broken.yaml" in output


def test_serve_refuses_a_bad_worker_count(config: Path) -> None:
    """--workers is 1 to 64."""
    assert "--workers" in failed(run("serve", "--config", str(config), "--workers", "0"), 2)


def test_simulators_need_simulators(own_config: Path) -> None:
    """Without a 'simulators' section, or with --only naming none of them, there is nothing to run."""
    assert "names no simulators" in failed(run("simulators", "--config", str(own_config), "--only",
                                               "nothing-like-it"))
    _edit(own_config, simulators={})
    assert "names no simulators" in failed(run("simulators", "--config", str(own_config)))


def test_demo_refuses_a_port_that_is_not_a_number() -> None:
    """demo's --port is an integer."""
    assert "--port" in failed(run("demo", "--port", "eighty"), 2)


def test_an_unknown_command_is_named() -> None:
    """A mistyped command: exit 2 and its name."""
    assert "No such command 'serv'" in failed(run("serv"), 2)


# -- policy ----------------------------------------------------------------------------------------

def test_policy_check_by_configuration_and_by_folder(config: Path) -> None:
    """The configuration's policies folder, or any folder: its rules and groups counted, OK."""
    by_config = run("policy", "check", "--config", str(config))
    assert by_config.exit_code == 0 and re.search(r"\d+ rules, \d+ groups: OK", by_config.stdout)
    by_dir = run("policy", "check", "--dir", str(config.parent / "policies"))
    assert by_dir.exit_code == 0 and by_dir.stdout.split(": ", 1)[1] == by_config.stdout.split(": ", 1)[1]


def test_policy_check_needs_a_folder() -> None:
    """Neither --config nor --dir: a usage error saying to give one."""
    assert "give --config or --dir" in failed(run("policy", "check"), 2)


def test_policy_check_lists_each_problem(tmp_path: Path) -> None:
    """A folder with a broken file: each problem on stderr with the file, and exit 1 with the count."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "a.yaml").write_text("rules:\n  - name: x\n    services: [1, 2]\n    bogus: true\n")
    result = run("policy", "check", "--dir", str(folder))
    output = failed(result)
    assert "error:" in result.stderr and "a.yaml" in result.stderr
    assert re.search(r"\d+ problem\(s\) in .*policies", output)


def test_policy_check_warns_of_rules_that_name_nothing(own_config: Path) -> None:
    """A rule for a service or client the catalog does not have passes, with a warning for each."""
    (own_config.parent / "policies" / "typo.yaml").write_text(
        "rules:\n  - name: typo\n    services: [VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMc]\n"
        "    clients: [VN/GOV/000.00.00.H60/MOTCUAA]\n", encoding="utf-8")
    result = run("policy", "check", "--config", str(own_config))
    assert result.exit_code == 0, result.output
    assert "(2 warning(s))" in result.stdout
    assert "rule 'typo' names no service of the catalog" in result.stderr
    assert "rule 'typo' names no client registered in the configuration" in result.stderr


def test_policy_explain_names_the_deciding_rule(config: Path) -> None:
    """An allowed call names its rule and ALLOWED; without --scope it notes the assumed scopes."""
    result = run("policy", "explain", "--config", str(config), "--client", ONESTOP, "--service", PUSH)
    assert result.exit_code == 0, result.output
    assert "decided by motcua-day-ho-so-len-cong" in result.stdout and "ALLOWED" in result.stdout
    assert "assumed the token carries exchange" in result.stderr


def test_policy_explain_says_what_a_rule_needs(config: Path) -> None:
    """The verification rule needs the acting official and the purpose: REFUSED until both are given."""
    base = ["policy", "explain", "--config", str(config), "--client", ONESTOP, "--service", VERIFY,
            "--scope", "exchange"]
    refused = run(*base)
    assert "REFUSED" in refused.stdout and "X-Road-UserId" in refused.stdout
    allowed = run(*base, "--user-id", "canbo.mai", "--issue", "H60.23-20261121-0000001")
    assert "ALLOWED" in allowed.stdout and "response fields that may leave: TonTai" in allowed.stdout
    wrong_scope = run("policy", "explain", "--config", str(config), "--client", ONESTOP, "--service",
                      PUSH, "--scope", "metrics")
    assert "ALLOWED" not in wrong_scope.stdout


def test_policy_explain_with_no_rule_is_default_deny(config: Path) -> None:
    """A call no rule matches is refused by default, and an unregistered service is noted."""
    result = run("policy", "explain", "--config", str(config), "--client", ONESTOP, "--service",
                 "VN/GOV/000.00.00.G01/CSDLDC/XoaCongDan", "--scope", "exchange")
    assert result.exit_code == 0
    assert "default" in result.stdout.lower() and "ALLOWED" not in result.stdout
    assert "no service VN/GOV/000.00.00.G01/CSDLDC/XoaCongDan is registered" in result.stderr


@pytest.mark.parametrize(("client", "service", "says"), [
    ("bad", PUSH, "'bad' is not a client id"),
    (ONESTOP, "not/a/service", "not/a/service"),
])
def test_policy_explain_refuses_bad_identifiers(config: Path, client: str, service: str, says: str) -> None:
    """A client or service that is not an identifier: exit 1 naming it."""
    assert says in failed(run("policy", "explain", "--config", str(config), "--client", client,
                              "--service", service))


def test_policy_explain_needs_client_and_service(config: Path) -> None:
    """--client and --service are required."""
    assert "Missing option '--client'" in failed(run("policy", "explain", "--config", str(config),
                                                     "--service", PUSH), 2)
    assert "Missing option '--service'" in failed(run("policy", "explain", "--config", str(config),
                                                      "--client", ONESTOP), 2)


def test_policy_explain_reports_a_broken_folder(tmp_path: Path) -> None:
    """--dir with a broken policy: 'invalid policy' and the file."""
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "x.yaml").write_text("rules: [1\n")
    output = failed(run("policy", "explain", "--dir", str(folder), "--client", ONESTOP, "--service", PUSH))
    assert "invalid policy" in output and "x.yaml" in output


def test_policy_with_a_broken_configuration(tmp_path: Path) -> None:
    """policy commands given a broken configuration say so rather than fail later."""
    bad = tmp_path / "config.yaml"
    bad.write_text("nonsense_key: 1\n")
    assert "invalid configuration" in failed(run("policy", "check", "--config", str(bad)))


# -- users -----------------------------------------------------------------------------------------

def test_users_add_list_and_change(own_config: Path) -> None:
    """add (with a name; without a password for OpenID Connect), list shows role and state, role and
    disable show there too."""
    cfg = ["--config", str(own_config)]
    added = run("users", "add", "Can.Bo", "--role", "auditor", "--name", "Cán Bộ", "--password",
                PASSWORD, *cfg)
    assert added.exit_code == 0 and added.output.strip() == "user can.bo (auditor) created"
    oidc = run("users", "add", "sso.user", "--role", "operator", "--no-password", *cfg)
    assert oidc.exit_code == 0, oidc.output
    assert run("users", "role", "can.bo", "admin", *cfg).output.strip() == "can.bo is now admin"
    assert run("users", "disable", "sso.user", *cfg).output.strip() == "sso.user disabled"
    listed = run("users", "list", *cfg)
    assert listed.exit_code == 0
    assert listed.output.splitlines() == ["can.bo\tadmin\tenabled\tCán Bộ",
                                          "sso.user\toperator\tdisabled\tsso.user"]
    engine = create_engine(load_config(own_config).database_url)
    try:
        store = UserStore(engine)
        assert store.authenticate("can.bo", PASSWORD) is not None
        assert store.authenticate("sso.user", "") is None
    finally:
        engine.dispose()


def test_users_add_prompts_until_the_passwords_match(own_config: Path) -> None:
    """Without --password the password is asked for twice, hidden; a mismatch asks again."""
    result = run("users", "add", "can.bo", "--role", "auditor", "--config", str(own_config),
                 input=f"{PASSWORD}\nkhac-hoan-toan-nhe\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output and PASSWORD not in result.output


@pytest.mark.parametrize(("args", "code", "says"), [
    (["users", "add", "can.bo", "--role", "superuser", "--password", PASSWORD], 2,
     "'superuser' is not one of"),
    (["users", "add", "can.bo", "--password", PASSWORD], 2, "Missing option '--role'"),
    (["users", "add", "Không hợp lệ", "--role", "auditor", "--password", PASSWORD], 1, "is not a username"),
    (["users", "add", "can.bo", "--role", "auditor", "--password", "short"], 1, "at least 10 characters"),
    (["users", "passwd", "nobody", "--password", PASSWORD], 1, "no user nobody"),
    (["users", "role", "nobody", "auditor"], 1, "no user nobody"),
    (["users", "role", "nobody", "king"], 2, "'king' is not one of"),
    (["users", "disable", "nobody"], 1, "no user nobody"),
    (["users", "enable", "nobody"], 1, "no user nobody"),
    (["users", "disable"], 2, "Missing argument 'USERNAME'"),
])
def test_users_bad_arguments(own_config: Path, args: list[str], code: int, says: str) -> None:
    """Each mistake: its own message, exit 1 (refused by the store) or 2 (bad usage), no traceback."""
    assert says in failed(run(*args, "--config", str(own_config)), code)


def test_users_add_twice_is_refused(own_config: Path) -> None:
    """The same account twice (whatever its case): exit 1, 'exists'."""
    cfg = ["--config", str(own_config)]
    assert run("users", "add", "can.bo", "--role", "auditor", "--password", PASSWORD, *cfg).exit_code == 0
    assert "exists" in failed(run("users", "add", "CAN.BO", "--role", "operator", "--password",
                                  PASSWORD, *cfg))


def test_users_list_of_a_new_gateway_is_empty(own_config: Path) -> None:
    """No accounts yet: nothing listed, exit 0 (the database is migrated on the way)."""
    result = run("users", "list", "--config", str(own_config))
    assert result.exit_code == 0 and result.output == ""
