"""``lienthong audit …``: verify the log, print checkpoints and proofs, purge expired bodies.

They read the database the configuration names, directly; no gateway needs to be running. Only
``checkpoint --new``, ``rotate-key`` and ``purge`` write (a checkpoint row and the witness file; the
checkpoint key; expired bodies): they run on the command line's spine (gateway/cli_spine.py),
checked and audited.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson
import sqlalchemy.exc

from gateway.audit.checkpoint import KeyFormatError, Verifier
from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.service import AuditKeysMissing, AuditService, notes_of
from gateway.audit.verify import Report
from gateway.cli_spine import operator_action
from gateway.cliopts import CONFIG, load
from gateway.witness.cosignature import CosignatureVerifier
from gateway.witness.cosigned import Cosignatures

__all__ = ["audit"]

JSON = click.option("--json", "as_json", is_flag=True, help="print JSON")
_PROGRESS_FROM = 100_000  # leaves: smaller logs verify too fast for a progress bar to help


def _service(config_path: Path) -> AuditService:

    try:
        return AuditService.open(load(config_path))
    except AuditKeysMissing as exc:
        raise click.ClickException(str(exc)) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _echo_json(doc: Any) -> None:
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


class _DatabaseErrors(click.Group):
    """Turns a database without the audit tables into a message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise click.ClickException(
                f"cannot read the audit log: {type(exc).__name__}: {str(exc).splitlines()[0]} "
                "(has the gateway been started on this database, so that it is migrated?)") from None


@click.group("audit", cls=_DatabaseErrors)
def audit() -> None:
    """The tamper-evident audit log: verify it, print checkpoints and inclusion proofs."""


@audit.command()
@CONFIG
@click.option("--checkpoint", "checkpoint_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a file of signed checkpoints (one or more notes, e.g. a witness file or one an "
                   "auditor saved) to hold the log against; repeatable")
@click.option("--vkey", "vkeys", multiple=True, help="trust this verifier key "
              "(<name>+<key id>+<key>) instead of the one in the keys folder; repeatable")
@click.option("--no-witness", is_flag=True, help="do not read the configured witness file")
@click.option("--quick", is_flag=True, help="skip the index columns, data-subject index and kept "
              "bodies; still check every leaf, the tree, the head and every checkpoint")
@click.option("--require-cosignatures", "required", type=click.IntRange(min=0), metavar="N",
              help="fail unless the latest checkpoint holds N valid cosignatures from the witnesses' "
                   "keys (audit.require_cosignatures by default)")
@click.option("--witness-vkey", "witness_vkeys", multiple=True, help="trust this witness key "
              "(<name>+<key id>+<key>) instead of audit.witnesses' keys; repeatable")
@JSON
def verify(config_path: Path, checkpoint_files: tuple[Path, ...], vkeys: tuple[str, ...],
           no_witness: bool, quick: bool, required: int | None, witness_vkeys: tuple[str, ...],
           as_json: bool) -> None:
    """Recompute every leaf hash and the whole tree from storage and check every stored and given
    checkpoint: signature, root, and consistency between them; and the witnesses' cosignatures.

    Exits 0 only when everything holds; otherwise names the first bad leaf index and what is wrong.
    """
    service = _service(config_path)
    try:
        verifiers = [Verifier.from_vkey(v) for v in vkeys] or None
    except KeyFormatError as exc:
        raise click.ClickException(f"--vkey: {exc}") from None
    try:
        witnesses = [CosignatureVerifier.from_vkey(v) for v in witness_vkeys] or None
    except KeyFormatError as exc:
        raise click.ClickException(f"--witness-vkey: {exc}") from None
    required = service.config.audit.require_cosignatures if required is None else required
    known = len(witnesses) if witnesses is not None else len(service.config.audit.witnesses)
    if required > known:
        raise click.ClickException(f"{required} cosignature(s) required, but only {known} witness key(s) "
                                   "are known (audit.witnesses, --witness-vkey)")
    notes = [] if no_witness else service.witness_notes()
    for path in checkpoint_files:
        notes.extend(notes_of(path))
    started = time.perf_counter()
    size = service.log.size()
    if size >= _PROGRESS_FROM and not as_json:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress("verifying", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=True) as bar:
            task = bar.add_task("leaves", total=size)
            report = service.verify(notes, verifiers=verifiers, indexes=not quick,
                                    progress=lambda done, total: bar.update(task, completed=done,
                                                                            total=total))
    else:
        report = service.verify(notes, verifiers=verifiers, indexes=not quick)
    cosigned = service.cosignatures(required, witnesses) if known else None
    for problem in cosigned.problems if cosigned is not None else []:
        report.add(problem)
    elapsed = time.perf_counter() - started
    if as_json:
        _echo_json({**_report_json(report, elapsed), **_cosigned_json(cosigned, required),
                    "keys": _keys_json(service, verifiers, report),
                    "checkpointKeys": [s.as_json() for s in report.signed_by]})
    else:
        _print_report(report, elapsed, quick)
        if report.ok and service.retired and verifiers is None:
            click.echo(_keys_text(service, report))
        if cosigned is not None and report.ok:
            click.echo(_cosigned_text(cosigned, required))
    sys.exit(0 if report.ok else 1)


def _report_json(report: Report, elapsed: float) -> dict[str, Any]:
    return {"ok": report.ok, "leaves": report.leaves, "root": _b64(report.root),
            "head": {"size": report.head.size, "root": _b64(report.head.root)},
            "checkpoints": report.checkpoints, "bodies": report.bodies,
            "firstBadIndex": report.first_bad_index,
            "problems": [p.as_json() for p in report.problems],  # kind, index, what, evidence
            "moreProblems": report.more_problems, "seconds": round(elapsed, 3)}


def _keys_json(service: AuditService, given: list[Verifier] | None,
               report: Report) -> list[dict[str, Any]]:
    """The trusted checkpoint keys: each one's status and how many opened checkpoints it signed."""
    def signed(vkey: str) -> int:
        return sum(vkey in s.keys for s in report.signed_by)

    if given is not None:
        return [{"vkey": v.vkey(), "status": "given", "checkpoints": signed(v.vkey())} for v in given]
    current = service.verifier.vkey()
    return [{"vkey": current, "status": "current", "checkpoints": signed(current)},
            *({**r.as_json(), "status": "retired", "checkpoints": signed(r.vkey)}
              for r in service.retired if r.vkey != current)]


def _keys_text(service: AuditService, report: Report) -> str:
    parts = [f"{k['vkey'].rsplit('+', 1)[0]} {k['status']}"
             + (f" since {k['retired']}" if "retired" in k else "") + f" ({k['checkpoints']} signed)"
             for k in _keys_json(service, None, report)]
    return "checkpoint keys: " + "; ".join(parts)


def _cosigned_json(cosigned: Cosignatures | None, required: int) -> dict[str, Any]:
    if cosigned is None:
        return {}
    latest = cosigned.latest
    return {"cosignatures": {"required": required, "witnessed": cosigned.witnessed(required),
                             "latest": latest, "latestWitnesses": list(cosigned.by_size.get(latest, ()))
                             if latest is not None else []}}


def _cosigned_text(cosigned: Cosignatures, required: int) -> str:
    latest = cosigned.by_size.get(cosigned.latest, ()) if cosigned.latest is not None else ()
    witnessed = cosigned.witnessed(required)
    upto = f"witnessed up to size {witnessed}" if witnessed is not None else "no checkpoint witnessed yet"
    return (f"witnesses: the latest checkpoint holds {len(latest)} valid cosignature(s)"
            f"{' (' + ', '.join(latest) + ')' if latest else ''}, {required} required; {upto}")


def _print_report(report: Report, elapsed: float, quick: bool) -> None:
    if report.ok:
        what = "leaves and tree" if quick else "leaves, indexes and tree"
        click.echo(f"OK: {report.leaves:,} leaves ({what}), root {_b64(report.root)}; "
                   f"{report.checkpoints} checkpoint(s) hold; {report.bodies} kept bodies match "
                   f"({elapsed:.1f} s)")
        return
    click.echo(f"FAILED: the audit log does not verify ({len(report.problems) + report.more_problems} "
               "problem(s))", err=True)
    if report.first_bad_index is not None:
        click.echo(f"first bad index: {report.first_bad_index}", err=True)
    for problem in report.problems:
        click.echo(f"  - {problem}", err=True)
    if report.more_problems:
        click.echo(f"  … and {report.more_problems} more", err=True)


@audit.command()
@CONFIG
@click.option("--new", is_flag=True, help="sign a checkpoint of the log as it is now first (if it grew)")
@JSON
def checkpoint(config_path: Path, new: bool, as_json: bool) -> None:
    """Print the latest signed checkpoint (a C2SP signed note) and the key that checks it."""
    service = _service(config_path)
    cp: StoredCheckpoint | None
    if new:  # signs and stores a checkpoint (and appends it to the witness file): an audited action
        with operator_action(service.config, "audit.checkpoint") as a:
            cp = service.checkpointer.make()
            a.purpose = f"checkpoint of size {cp.size}" + ("" if cp.new else ", the latest already")
        service.cosign_now()  # to the configured witnesses, if any lack it (bounded by their timeout)
    else:
        cp = service.checkpointer.latest()
    if cp is None:
        raise click.ClickException("no checkpoint yet: pass --new to make one")
    if as_json:
        _echo_json({"origin": service.origin, "size": cp.size, "root": _b64(cp.root),
                    "note": cp.note.decode(), "verifierKey": service.checkpointer.vkey,
                    "retiredVerifierKeys": [r.as_json() for r in service.retired]})
        return
    click.echo(cp.note.decode(), nl=False)
    click.echo(f"\nverifier key: {service.checkpointer.vkey}", err=True)
    for r in service.retired:
        click.echo(f"retired verifier key: {r.vkey} (retired {r.retired})", err=True)


@audit.command("rotate-key")
@CONFIG
@JSON
def rotate_key(config_path: Path, as_json: bool) -> None:
    """Replace the key that signs the log's checkpoints with a new Ed25519 key.

    Keeps the old key's verifier key in keys/audit-checkpoint.retired, so that its checkpoints keep
    verifying; then, once this action is recorded in the log, signs the tree head with the old key
    and the new one in one note (the key transition, kept with the checkpoints and in the witness
    file); and prints the new verifier key: give it to every witness ('lienthong witness add-log').
    A running gateway signs with the new key from its next start: restart it.
    """
    from gateway.audit.checkpointer import HandOverError
    from gateway.audit.log import TreeCorruptedError
    from gateway.audit.rotation import load_retired, replace_checkpoint_key

    service = _service(config_path)
    keys_dir = service.config.path(service.config.keys_dir)
    old = service.checkpointer.vkey
    with operator_action(service.config, "audit.rotate-key") as a:
        new_signer, retired = replace_checkpoint_key(keys_dir, service.checkpointer.signer)
        # Key ids are public (the verifier keys are published): they say which keys it was about.
        a.purpose = (f"checkpoint key {retired.verifier.key_id.hex()} retired, "
                     f"{new_signer.key_id.hex()} signs from the key transition")
    service.retired = load_retired(keys_dir)
    new = new_signer.vkey()
    try:  # the head now holds the record above: signed by the old key, then the new one
        transition = service.checkpointer.hand_over(new_signer)
    except (HandOverError, TreeCorruptedError) as exc:
        raise click.ClickException(f"the new key {new} is in place and the old one retired, but the "
                                   f"key transition was not signed: {exc}") from None
    service.cosign_now()  # the transition, checked by the old key the witnesses know
    if as_json:
        _echo_json({"origin": service.origin, "verifierKey": new, "retired": retired.as_json(),
                    "transition": {"size": transition.size, "root": _b64(transition.root),
                                   "note": transition.note.decode()}})
        return
    click.echo(f"retired checkpoint key: {old} (its checkpoints keep verifying)")
    click.echo(f"key transition: checkpoint of size {transition.size} signed by both keys")
    click.echo(f"new verifier key: {new}")
    click.echo("next: on each witness run\n  lienthong witness add-log --state <its state folder> "
               f"--origin {service.origin} --vkey {new}\n"
               "and restart the gateway: it signs with the new key from its next start.")


@audit.command()
@CONFIG
@click.argument("index", type=click.IntRange(min=0))
@click.option("--size", type=click.IntRange(min=1), help="the tree size to prove against (a stored "
              "checkpoint's); the latest checkpoint by default")
@JSON
def prove(config_path: Path, index: int, size: int | None, as_json: bool) -> None:
    """Print the inclusion proof of leaf INDEX to a signed checkpoint, with the leaf itself."""
    from gateway.audit import query

    service = _service(config_path)
    found = query.entry(service.log.engine, index)
    if found is None:
        raise click.ClickException(f"the log has no leaf {index}")
    cp = service.checkpointer.latest() if size is None else service.checkpointer.at(size)
    if cp is None:
        raise click.ClickException("no such checkpoint: make one with 'lienthong audit checkpoint "
                                   "--new'" if size is None else f"no checkpoint of size {size} is stored")
    if index >= cp.size:
        raise click.ClickException(f"leaf {index} is not in the checkpoint of size {cp.size}; make a "
                                   "newer one with 'lienthong audit checkpoint --new'")
    proof = service.log.inclusion_proof(index, cp.size)
    doc = {**found.as_json(), "inclusionProof": {"leafIndex": index, "treeSize": cp.size,
                                                 "hashes": [_b64(h) for h in proof]},
           "checkpoint": cp.note.decode()}
    if as_json:
        _echo_json(doc)
        return
    click.echo(f"leaf {index}: {found.leaf.decode()}")
    click.echo(f"leaf hash: {_b64(found.leaf_hash)}")
    click.echo(f"inclusion proof to tree size {cp.size} ({len(proof)} hashes):")
    for h in proof:
        click.echo(f"  {_b64(h)}")
    click.echo("checkpoint:")
    click.echo(cp.note.decode(), nl=False)


@audit.command()
@CONFIG
def purge(config_path: Path) -> None:
    """Remove kept bodies whose retention period ended (the running gateway also does this hourly)."""
    from gateway.audit.bodies import purge_bodies

    service = _service(config_path)
    with operator_action(service.config, "audit.purge") as a:
        removed = purge_bodies(service.log.engine, time.time_ns() // 1000)
        a.purpose = f"kept bodies of {removed} exchange(s) removed"
    click.echo(f"removed the kept bodies of {removed} exchange(s)")
