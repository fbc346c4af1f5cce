"""``lienthong backup`` and ``lienthong restore`` (gateway/ops/backup.py does the work).

Both are operator actions on the command line's spine (gateway/cli_spine.py): a backup copies
personal data out and a restore replaces the database, so each is recorded in the audit log (a
restore once it has been verified, in the restored log).
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli_spine import local_operator, operator_action, refusal
from gateway.cliopts import CONFIG, load
from gateway.ops.backup import BackupError, backup, restore

__all__ = ["backup_command", "restore_command"]

PG_BIN = click.option("--pg-bin", type=click.Path(exists=True, file_okay=False, path_type=Path),
                      help="the folder of pg_dump and pg_restore (default: PATH, then the newest "
                           "/usr/lib/postgresql/*/bin); PostgreSQL only")


def _say(text: str) -> None:
    click.echo(text, err=True)


def _os_error(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)


@click.command("backup")
@CONFIG
@click.option("--to", "target", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="a new (or empty) folder to write the backup into")
@PG_BIN
def backup_command(config_path: Path, target: Path, pg_bin: Path | None) -> None:
    """Write a consistent backup: the database (SQLite's online backup, or pg_dump), the keys folder,
    the configuration and the witness file, with a manifest of their sha256 digests and the audit
    log's size and root at the snapshot. The gateway may keep running."""
    config = load(config_path)
    with operator_action(config, "ops.backup", purpose=str(target)) as a:
        try:
            done = backup(config, config_path, target, say=_say, pg_bin=pg_bin)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write the backup: {_os_error(exc)}") from None
        a.purpose = f"{target}: audit log of {done.manifest.audit_size} leaves"
    m = done.manifest
    click.echo(f"backup written to {target}: {len(m.files)} files, audit log of {m.audit_size:,} "
               f"leaves, root {m.audit_root or '(empty)'} ({done.seconds:.1f} s)")
    click.echo("keep it where the keys stay secret: it holds the gateway's private keys and personal "
               "data")


@click.command("restore")
@CONFIG
@click.option("--from", "source", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="a folder 'lienthong backup --to' wrote")
@click.option("--force", is_flag=True, help="replace a target database that holds data, and keys "
              "that differ from the backed-up ones")
@PG_BIN
def restore_command(config_path: Path, source: Path, force: bool, pg_bin: Path | None) -> None:
    """Restore a backup into the database and keys folder the configuration names, then verify the
    audit log as 'lienthong audit verify' does. Stop the gateway first. Every file's digest is
    checked before anything is written; a target database holding data is refused without --force.
    Exits 0 only when the restored log verifies and matches the manifest."""
    config = load(config_path)
    why = refusal(config, local_operator(), "ops.restore")
    if why is not None:
        raise click.ClickException(why)
    try:
        result = restore(config, source, force=force, say=_say, pg_bin=pg_bin)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"the restore stopped: {_os_error(exc)}; where keys_dir is "
                                   "read-only (a mounted Secret), restore with a configuration whose "
                                   "keys_dir is writable and provision the Secret from the backup's "
                                   "keys/ folder") from None
    if not result.ok:
        click.echo(f"FAILED: the restored audit log does not verify ({len(result.problems)} "
                   "problem(s)); do not serve it before you know why", err=True)
        for problem in result.problems[:20]:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1)
    with operator_action(config, "ops.restore",
                         purpose=f"{source}: audit log of {result.leaves} leaves") as _:
        pass
    click.echo(f"restored from {source}: audit log OK, {result.leaves:,} leaves, root {result.root}, "
               f"{result.checkpoints} checkpoint(s) hold ({result.seconds:.1f} s)")
