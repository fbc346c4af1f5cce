"""The ``lienthong`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway import __version__
from gateway.cliopts import CONFIG, load
from gateway.yamlfile import FileError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lienthong")
def main() -> None:
    """Liên Thông: interoperability gateway for Vietnamese e-government.

    Start with 'lienthong demo' to see a whole exchange path run on this machine, or
    'lienthong init DIR' to write a configuration you can edit and serve.
    """


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=int, default=8080, show_default=True, help="the gateway's port")
@click.option("--database", help="database URL (default: SQLite file lienthong.db in DIRECTORY), e.g. "
              "postgresql+psycopg://user@host/db")
@click.option("--force", is_flag=True, help="overwrite an existing configuration and keys")
def init(directory: Path, port: int, database: str | None, force: bool) -> None:
    """Write a working configuration, keys, policies and client secrets into DIRECTORY."""
    from gateway.init import Ports, initialise

    try:
        done = initialise(directory, ports=Ports(gateway=port), database=database, force=force)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {done.config_path}")
    click.echo(f"A throwaway demo CA, the trust store of signed dossiers (replace it for real use): "
               f"{done.config_path.parent / 'pki'} (docs/signatures.md#demo-keys)")
    click.echo(f"Client secrets (shown once, also in {done.secrets_path}, mode 0600):")
    for client, secret in done.secrets.items():
        click.echo(f"  {client}: {secret}")
    click.echo(f"Next: lienthong simulators --config {done.config_path}   (in one terminal)\n"
               f"      lienthong serve --config {done.config_path}        (in another)")


@main.command()
@CONFIG
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="worker processes")
@click.option("--host", help="listen address (overrides the configuration)")
@click.option("--port", type=int, help="listen port (overrides the configuration)")
def serve(config_path: Path, workers: int, host: str | None, port: int | None) -> None:
    """Serve the gateway (uvicorn with uvloop and httptools)."""
    from gateway.runtime import Runtime, StartupError
    from gateway.serve import serve as run
    from gateway.state import StateDirError, ensure_state_folder
    from gateway.storage.migrate_lock import SchemaError, prepare_schema

    config = load(config_path)
    try:  # fail here, with a clear message, rather than inside every worker
        ensure_state_folder(config)
        prepare_schema(config)  # migrate, or wait for `lienthong migrate` (migrations.at_start)
        Runtime.build(config).engine.dispose()
    except (StartupError, FileError, StateDirError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from None
    run(config_path, config, workers=workers, host=host, port=port)


@main.command()
@CONFIG
@click.option("--only", multiple=True, help="run only these simulators (repeatable)")
def simulators(config_path: Path, only: tuple[str, ...]) -> None:
    """Run the upstream simulators named in the configuration, on loopback."""
    from gateway.simulators import run_simulators

    config = load(config_path)
    chosen = {k: v for k, v in config.simulators.items() if not only or k in only}
    if not chosen:
        raise click.ClickException("the configuration names no simulators (section 'simulators')")
    for name, sim in chosen.items():
        click.echo(f"simulator {name}: http://{sim.host}:{sim.port}")
    run_simulators(chosen)


@main.command()
@CONFIG
def check(config_path: Path) -> None:
    """Validate a configuration, its policies and its flows without starting anything."""
    from gateway.flows import load_flows
    from gateway.policy import Policy

    config = load(config_path)
    try:
        policy = Policy.load(config.path(config.policies_dir))
    except FileError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from None
    from gateway.signed import trust_problem

    problem = trust_problem(config, policy, config_path)
    if problem is not None:
        raise click.ClickException(f"invalid trust store: {problem}")
    from gateway.seal import SealKeyError, load_sealer

    try:
        load_sealer(config)
    except SealKeyError as exc:
        raise click.ClickException(f"invalid seal key: {exc}") from None
    flows = load_flows(config.path(config.flows_dir), config, config_file=config_path)
    if flows.problems:
        raise click.ClickException("invalid flow definitions:\n" + "\n".join(
            f"  {problem}" for problem in flows.problems))
    click.echo(f"{config_path}: {len(config.services)} services, {len(config.clients)} clients, "
               f"{len(policy.rules)} policy rules, {len(flows.flows)} flows: OK")


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="where to write the demo's configuration and database (default: a new "
                   "temporary folder)")
@click.option("--keep-running", is_flag=True, help="leave the gateway and simulators serving after "
              "the scenario, for a person to try (Ctrl+C stops)")
@click.option("--port", type=int, default=0, help="the gateway's port (default: a free one)")
def demo(directory: Path | None, keep_running: bool, port: int) -> None:
    """Run the gateway and simulators on loopback and play a whole scenario through them."""
    from gateway.demo import run_demo

    sys.exit(run_demo(directory, keep_running=keep_running, port=port))


def _add_security_commands() -> None:
    from gateway.oauth.cli import clients_group, keys_group, token
    from gateway.policy.cli import policy_group

    for command in (policy_group, clients_group, token, keys_group):
        main.add_command(command)


_add_security_commands()


def _add_delivery_commands() -> None:
    from gateway.delivery.cli import deliveries, stats
    from gateway.documents.cli import document_stats
    from gateway.flows.cli import flow_stats, flows_group

    main.add_command(deliveries)
    stats.add_command(flow_stats)  # lienthong stats flows
    stats.add_command(document_stats)  # lienthong stats documents
    main.add_command(stats)
    main.add_command(flows_group)


_add_delivery_commands()


def _add_audit_commands() -> None:
    from gateway.audit.cli import audit

    main.add_command(audit)


_add_audit_commands()


def _add_console_commands() -> None:
    from gateway.console.cli import users

    main.add_command(users)


_add_console_commands()


def _add_migrate_command() -> None:
    from gateway.storage.cli import migrate

    main.add_command(migrate)


_add_migrate_command()


def _add_seal_commands() -> None:
    from gateway.seal.cli import seal_group

    main.add_command(seal_group)


_add_seal_commands()


def _add_ops_commands() -> None:
    from gateway.ops.cli import backup_command, restore_command

    main.add_command(backup_command)
    main.add_command(restore_command)


_add_ops_commands()


def _add_witness_commands() -> None:
    from gateway.witness.cli import witness_group

    main.add_command(witness_group)


_add_witness_commands()
