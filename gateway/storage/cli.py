"""``lienthong migrate``: bring the database schema to head and exit (a Kubernetes Job's command)."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cliopts import CONFIG, load

__all__ = ["migrate"]


@click.command()
@CONFIG
def migrate(config_path: Path) -> None:
    """Migrate the configured database to the newest schema, then exit.

    Runs under the migration lock (a PostgreSQL advisory lock; a file lock beside a SQLite
    database), so it is safe beside gateways that are starting. Run it as a Kubernetes Job (or a
    compose service) before the gateways, and give the gateways 'migrations: {at_start: wait}' so
    that they never migrate themselves. Exit status 0 when the schema is at head.
    """
    from gateway.state import StateDirError, ensure_state_folder
    from gateway.storage.migrate_lock import migrate as run

    config = load(config_path)
    try:
        if config.database_url.startswith("sqlite"):
            ensure_state_folder(config)  # where a relative SQLite database lives
        done = run(config.database_url)
    except StateDirError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the database unreachable, a migration failing: say which, exit 1
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise click.ClickException(f"migration failed: {type(exc).__name__}: {first}; the schema "
                                   "was left at its last complete migration") from None
    if done.changed:
        click.echo(f"migrated the database from {done.before or 'empty'} to {done.after}")
    else:
        click.echo(f"the database is already at the newest schema ({done.after})")
