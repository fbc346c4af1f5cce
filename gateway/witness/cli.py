"""``lienthong witness …``: make a witness's key, tell it which logs to accept, serve it.

The witness is its own process with its own folder (``--state``); it reads no gateway
configuration and no gateway database. Run it where the gateway's operators cannot reach.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from gateway.audit.checkpoint import KeyFormatError, Verifier
from gateway.witness.cosignature import WitnessKey
from gateway.witness.state import StateError, WitnessStore, create_key, load_key

__all__ = ["witness_group"]

STATE = click.option("--state", "state", required=True,
                     type=click.Path(file_okay=False, path_type=Path),
                     help="the witness's folder: its key (witness.key) and state (witness.db)")


def load_key_or_fail(state: Path) -> WitnessKey:
    try:
        return load_key(state)
    except StateError as exc:
        raise click.ClickException(str(exc)) from None


def _store(state: Path) -> WitnessStore:
    try:
        return WitnessStore(state)
    except StateError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("witness")
def witness_group() -> None:
    """A witness of audit logs: a separate process with its own key that cosigns a log's checkpoint
    only once it is consistent with the last one it cosigned (C2SP tlog-witness; docs/audit.md#witnesses).
    """


@witness_group.command("init")
@STATE
@click.option("--name", required=True, help="the witness's name, e.g. witness.example.gov.vn/w1 "
              "(a schema-less URL; it goes into every cosignature)")
def init(state: Path, name: str) -> None:
    """Make the witness's key (mode 0600) in a new state folder and print its verifier key.

    Run again on a folder that has a key of the same name, it only prints that key's verifier key.
    """
    try:
        key, made = create_key(state, name)
        WitnessStore(state)
    except StateError as exc:
        raise click.ClickException(str(exc)) from None
    if not made:
        click.echo(f"{state} already holds witness {name}'s key; its verifier key:", err=True)
    click.echo(key.vkey())


@witness_group.command("add-log")
@STATE
@click.option("--origin", required=True, help="the log's origin line, e.g. lienthong.gov.vn/VN/audit")
@click.option("--vkey", required=True, help="the log's verifier key (<name>+<key id>+<key>), as "
              "'lienthong audit checkpoint' prints it")
def add_log(state: Path, origin: str, vkey: str) -> None:
    """Accept checkpoints of the log ORIGIN signed by VKEY (repeat for a second key of one log).

    Adding a log that is accepted already changes nothing.
    """
    load_key_or_fail(state)
    try:
        Verifier.from_vkey(vkey)
    except KeyFormatError as exc:
        raise click.ClickException(f"--vkey: {exc}") from None
    if not origin or any(ch < " " for ch in origin):
        raise click.ClickException("--origin must be one line of text")
    added = _store(state).add_log(origin, vkey, int(time.time()))
    click.echo(f"{'accepting' if added else 'already accepting'} checkpoints of {origin} signed by {vkey}")


@witness_group.command("vkey")
@STATE
def vkey(state: Path) -> None:
    """Print the witness's verifier key (for the gateway's audit.witnesses)."""
    click.echo(load_key_or_fail(state).vkey())


@witness_group.command("serve")
@STATE
@click.option("--host", default="127.0.0.1", show_default=True, help="listen address")
@click.option("--port", type=click.IntRange(1, 65535), default=9120, show_default=True, help="listen port")
def serve(state: Path, host: str, port: int) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) and GET /healthz with uvicorn.

    One process: submissions are decided one at a time, each durably stored before the answer.
    """
    import uvicorn

    from gateway.logs import configure_logging
    from gateway.witness.server import Witness, build_app

    configure_logging()  # JSON lines, as the gateway's

    key = load_key_or_fail(state)
    store = _store(state)
    logs = store.logs()
    click.echo(f"witness {key.name} ({key.vkey()}) on http://{host}:{port}, accepting "
               f"{len(logs)} log(s): {', '.join(logs) or 'none yet (lienthong witness add-log)'}", err=True)
    uvicorn.run(build_app(Witness(key, store)), host=host, port=port, log_level="warning",
                lifespan="off", workers=1)
