"""What every ``lienthong`` subcommand shares: the ``--config`` option and loading the file it names.

Kept apart from gateway/cli.py, which imports the subcommand groups: they import this, not it.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.config import Config, load_config
from gateway.yamlfile import FileError

__all__ = ["CONFIG", "CONFIG_HELP", "load"]

CONFIG_HELP = "the gateway's configuration file (written by 'lienthong init')"

CONFIG = click.option("--config", "config_path", required=True,
                      type=click.Path(exists=True, dir_okay=False, path_type=Path), help=CONFIG_HELP)


def load(config_path: Path) -> Config:
    """The configuration, or a click error naming the file, the line and what is wrong."""
    try:
        return load_config(config_path)
    except FileError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None
