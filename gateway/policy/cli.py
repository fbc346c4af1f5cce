"""``lienthong policy check`` and ``lienthong policy explain``."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import click

from gateway.config import Config, load_config
from gateway.identifiers import IdentifierError, ServiceId, normalise_client
from gateway.policy.engine import Policy, Request, check_folder
from gateway.yamlfile import FileError

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False,
                             path_type=Path), help="the gateway's configuration (its policies_dir is "
                             "used, and its catalog to warn about rules that name nothing)")


def _config(path: Path | None) -> Config | None:
    if path is None:
        return None
    try:
        return load_config(path)
    except FileError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


def _folder(config: Config | None, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    if config is None:
        raise click.UsageError("give --config or --dir")
    return config.path(config.policies_dir)


def warnings(policy: Policy, config: Config) -> list[str]:
    """Rules that can never apply to this catalog: likely typos."""
    out = []
    services = [s.id for s in config.services]
    clients = [c.id for c in config.clients]
    for rule in policy.rules:
        if services and not any(fnmatchcase(s, p) for s in services for p in rule.services):
            out.append(f"{rule.source}: rule {rule.name!r} names no service of the catalog "
                       f"({', '.join(rule.services)})")
        patterns = policy.clients_of(rule)
        if clients and not any(fnmatchcase(c, p) for c in clients for p in patterns):
            out.append(f"{rule.source}: rule {rule.name!r} names no client registered in the "
                       f"configuration ({', '.join(patterns)})")
    return out


@click.group("policy")
def policy_group() -> None:
    """Check policy files, and explain which rule decides a call."""


@policy_group.command("check")
@CONFIG_OPTION
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="a policies folder (instead of the configuration's)")
def check(config_path: Path | None, directory: Path | None) -> None:
    """Validate every policy file; name the file, line and problem of each error."""
    config = _config(config_path)
    folder = _folder(config, directory)
    policy, problems = check_folder(folder)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if policy is None:
        raise click.ClickException(f"{len(problems)} problem(s) in {folder}")
    notes = warnings(policy, config) if config is not None else []
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(f"{folder}: {len(policy.rules)} rules, {len(policy.groups)} groups: OK"
               + (f" ({len(notes)} warning(s))" if notes else ""))


@policy_group.command("explain")
@CONFIG_OPTION
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="a policies folder (instead of the configuration's)")
@click.option("--client", required=True, help="the calling subsystem, e.g. VN/GOV/000.00.00.H22/MOTCUA")
@click.option("--service", required=True, help="the service id, e.g. VN/GOV/000.00.00.G22/DVCQG/"
              "DongBoHoSoMC")
@click.option("--operation", help="the operation (default: the service's own, from the configuration)")
@click.option("--scope", "scopes", multiple=True, help="a scope the token carries (repeatable); "
              "without any, the rule's scopes are assumed present")
@click.option("--user-id", help="X-Road-UserId, the acting official")
@click.option("--issue", help="X-Road-Issue, the purpose")
def explain(config_path: Path | None, directory: Path | None, client: str, service: str,
            operation: str | None, scopes: tuple[str, ...], user_id: str | None,
            issue: str | None) -> None:
    """Tell which rule would decide a call, and why."""
    config = _config(config_path)
    try:
        policy = Policy.load(_folder(config, directory))
        client = normalise_client(client)
        service_id = ServiceId.parse(service)
    except FileError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from None
    except IdentifierError as exc:
        raise click.ClickException(str(exc)) from None
    registered = config.service(str(service_id)) if config is not None else None
    if operation is None:
        operation = registered.operation_name if registered else service_id.service_code
    req = Request(client=client, service=str(service_id), operation=operation,
                  scopes=frozenset(scopes), user_id=user_id, issue=issue)
    result = policy.explain(req, check_scopes=bool(scopes))
    for line in result.lines():
        click.echo(line)
    if config is not None and registered is None:
        click.echo(f"note: no service {service_id} is registered in {config_path}", err=True)
    if not scopes and result.deciding is not None and result.deciding.scopes:
        click.echo(f"note: assumed the token carries {' '.join(result.deciding.scopes)}; pass --scope "
                   "to check", err=True)
