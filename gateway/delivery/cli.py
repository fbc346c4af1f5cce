"""``lienthong deliveries …`` and ``lienthong stats``: the operators' view of the queue and the KPIs.

They read and change the database the configuration names, directly: no gateway needs to be running,
and running gateways pick up retried and replayed deliveries at their next look.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from gateway.cli_spine import operator_action
from gateway.cliopts import CONFIG, CONFIG_HELP, load
from gateway.delivery import stats as kpis
from gateway.delivery.routes import moment
from gateway.delivery.store import STATES, DeliveryStore
from gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["deliveries", "stats"]

JSON = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")


def _open(config_path: Path) -> tuple[Config, DeliveryStore]:
    from gateway.storage.db import create_engine, upgrade

    config = load(config_path)
    upgrade(config.database_url)
    return config, DeliveryStore(create_engine(config.database_url))


def _store(config_path: Path) -> DeliveryStore:
    return _open(config_path)[1]


def _print(items: list[dict[str, Any]], columns: list[str], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for item in items:
        table.add_row(*("" if item.get(c) is None else str(item.get(c)) for c in columns))
    Console().print(table)


@click.group()
def deliveries() -> None:
    """The delivery queue: list, show, retry, cancel, replay and purge deliveries."""


@deliveries.command("list")
@CONFIG
@click.option("--state", type=click.Choice(STATES))
@click.option("--service", help="a service id")
@click.option("--dossier", help="a dossier code (MaHoSo)")
@click.option("--flagged", is_flag=True, help="only deliveries flagged at intake")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@JSON
def list_deliveries(config_path: Path, state: str | None, service: str | None, dossier: str | None,
                    flagged: bool, limit: int, as_json: bool) -> None:
    """Deliveries, oldest first."""
    items = _store(config_path).find(state=state, service=service, dossier=dossier, flagged=flagged,
                                     limit=limit)
    for item in items:
        error = item.get("lastError") or {}
        item["error"] = error.get("error_code") or error.get("code")
    _print(items, ["id", "state", "attempts", "service", "dossier", "created", "error", "flag"], as_json,
           f"{len(items)} deliveries")


@deliveries.command()
@CONFIG
@click.argument("delivery_id")
def show(config_path: Path, delivery_id: str) -> None:
    """One delivery: state, attempts, last error, the upstream's answer."""
    found = _store(config_path).get(delivery_id)
    if found is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())


@deliveries.command()
@CONFIG
@click.argument("ids", nargs=-1)
@click.option("--dead", "all_dead", is_flag=True, help="every dead delivery (with --service/--dossier: "
              "those of it)")
@click.option("--service")
@click.option("--dossier")
def retry(config_path: Path, ids: tuple[str, ...], all_dead: bool, service: str | None,
          dossier: str | None) -> None:
    """Queue dead (or cancelled) deliveries again with fresh attempts, due now."""
    if not ids and not all_dead:
        raise click.UsageError("name deliveries, or pass --dead")
    with operator_action(load(config_path), "deliveries.retry",
                         purpose=_selection(ids, dead=all_dead, service=service, dossier=dossier)) as a:
        count = DeliveryStore(a.engine).retry(ids=ids, state="dead" if all_dead else None,
                                              service=service, dossier=dossier)
        a.purpose = f"{count} deliveries: {a.purpose}"
    click.echo(f"{count} deliveries queued again")


@deliveries.command()
@CONFIG
@click.argument("ids", nargs=-1, required=True)
def cancel(config_path: Path, ids: tuple[str, ...]) -> None:
    """Give up on pending or dead deliveries; the later ones of their dossiers may then go."""
    with operator_action(load(config_path), "deliveries.cancel", purpose=_selection(ids)) as a:
        count = DeliveryStore(a.engine).cancel(ids=ids)
        a.purpose = f"{count} deliveries: {a.purpose}"
    click.echo(f"{count} deliveries cancelled")


@deliveries.command()
@CONFIG
@click.argument("ids", nargs=-1)
@click.option("--dossier", help="every delivered or dead delivery of this dossier, in order")
@click.option("--service")
@click.option("--state", type=click.Choice(["delivered", "dead"]))
def replay(config_path: Path, ids: tuple[str, ...], dossier: str | None, service: str | None,
           state: str | None) -> None:
    """Send delivered (or dead) deliveries again, as new deliveries in their original order."""
    if not ids and not dossier and not service:
        raise click.UsageError("name deliveries, or pass --dossier or --service")
    selection = _selection(ids, state=state, service=service, dossier=dossier)
    with operator_action(load(config_path), "deliveries.replay", purpose=selection) as a:
        created = DeliveryStore(a.engine).replay(ids=ids, dossier=dossier, service=service, state=state)
        a.purpose = f"{len(created)} deliveries: {a.purpose}"
    click.echo(f"{len(created)} deliveries queued: {' '.join(created)}")


def _selection(ids: tuple[str, ...], *, dead: bool = False, state: str | None = None,
               service: str | None = None, dossier: str | None = None) -> str:
    """What an operator's delivery action chose, for its audit record's purpose (cut to the column
    there: a long list of ids keeps its start)."""
    parts = [f"ids {' '.join(ids)}"] if ids else []
    if dead or state:
        parts.append(f"state {state or 'dead'}")
    parts += [f"{label} {value}" for label, value in (("service", service), ("dossier", dossier))
              if value]
    return ", ".join(parts)


# A group, so that ``lienthong stats flows`` (gateway/flows/cli.py) sits beside the dossier KPIs, which
# stay ``lienthong stats [options]`` as before: the group runs them when no subcommand is named.
@click.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=CONFIG_HELP)
@click.option("--agency", help="an agency code, e.g. 000.00.00.H60 (with --rollup: it and every former "
              "agency that rolls up into it)")
@click.option("--period", type=click.Choice(kpis.PERIODS), default="month", show_default=True)
@click.option("--from", "start", help="from this date (2026-06, 2026-06-01), inclusive")
@click.option("--to", "end", help="to this date, exclusive")
@click.option("--rollup", is_flag=True, help="roll former agencies (e.g. Hà Giang, merged into Tuyên "
              "Quang) up into the agency current today that took their work over: a row per "
              "successor and period, naming the agencies it includes")
@JSON
@click.pass_context
def stats(ctx: click.Context, config_path: Path | None, agency: str | None, period: str, start: str | None,
          end: str | None, rollup: bool, as_json: bool) -> None:
    """KPIs per agency and period: dossiers received, share online, resolved, share on time.

    Per recorded agency by default, a former agency's row marked with its successor; --rollup sums
    them into the current successor. 'lienthong stats flows --help': the joint procedures' KPIs;
    'lienthong stats documents --help': the official documents'."""
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("Missing option '--config'.")
    config, store = _open(config_path)
    try:
        items = kpis.report(store.reader, agency=agency, period=period, start=moment(start, "--from"),
                            end=moment(end, "--to"), rollup=rollup, agencies=config.agencies)
    except InvalidRequest as exc:
        raise click.UsageError(exc.detail) from None
    for item in [] if as_json else items:
        for share in ("onlineShare", "onTimeShare"):
            item[share] = None if item[share] is None else f"{item[share]:.1%}"
        if rollup:
            item["includes"] = ", ".join(item.get("includes", []))
        elif item.get("former"):
            item["former"] = "→ " + ", ".join(item.get("successors") or [item.get("successor") or "–"])
    extra = ["includes"] if rollup else (["former"] if any(i.get("former") for i in items) else [])
    _print(items, ["agency", "period", "received", "receivedOnline", "onlineShare", "resolved",
                   "resolvedOnTime", "onTimeShare", *extra], as_json,
           "Dossier KPIs, rolled up into current agencies" if rollup else "Dossier KPIs")


@deliveries.command()
@CONFIG
@click.option("--days", type=click.FloatRange(min=0, min_open=True), help="blank what was settled "
              "more than this many days ago (default: delivery.retention_days of the configuration)")
@click.option("--dry-run", is_flag=True, help="only count the deliveries that would be blanked")
def purge(config_path: Path, days: float | None, dry_run: bool) -> None:
    """Blank the bodies and answers of deliveries delivered, cancelled or dead longer ago than the
    retention period (metadata and body digest stay). Audited; running gateways also do it hourly."""
    from gateway.delivery.retention import purge as blank

    config = load(config_path)
    days = days or config.delivery.retention_days
    if days is None:
        raise click.UsageError("no retention period: set delivery.retention_days in the "
                               "configuration, or pass --days")
    if dry_run:
        found = blank(_open(config_path)[1].engine, days, dry_run=True)
        click.echo(f"{found.count} deliveries settled more than {days:g} days ago would be blanked "
                   "(dry run: nothing changed)")
        return
    with operator_action(config, "deliveries.purge", purpose=f"retention {days:g} days") as a:
        done = blank(a.engine, days)
        a.purpose = done.purpose
    click.echo(f"{done.count} deliveries settled more than {days:g} days ago blanked")
