"""``lienthong stats flows`` and ``lienthong flows list|show``: the joint procedures' KPIs and flows,
read from the database the configuration names (no gateway needs to be running; nothing changes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from gateway.cliopts import CONFIG, load
from gateway.delivery.cli import JSON, _print
from gateway.delivery.model import now_us
from gateway.delivery.routes import moment
from gateway.errors import InvalidRequest
from gateway.flows import stats as kpis
from gateway.flows.routes import STATES
from gateway.flows.store import FlowStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from gateway.config import Config

__all__ = ["flow_stats", "flows_group"]

FLOW_COLUMNS = ["flow", "period", "step", "agency", "started", "running", "waiting", "overdue", "completed",
                "rejected", "failed", "medianSeconds", "p90Seconds", "withinDeadlineShare",
                "withinLegalLimitShare"]


def _open(config_path: Path) -> tuple[Config, Engine]:
    from gateway.storage.db import create_engine, upgrade

    config = load(config_path)
    upgrade(config.database_url)
    return config, create_engine(config.database_url)


def _limits(config: Config) -> dict[str, float]:
    """Each flow's legal limit, from the definitions the configuration's flows folder holds."""
    from gateway.flows import load_flows

    found = load_flows(config.path(config.flows_dir), config)
    return {name: flow.legal_limit for name, flow in found.flows.items()}


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


@click.command("flows")
@CONFIG
@click.option("--period", type=click.Choice(kpis.PERIODS), default="month", show_default=True)
@click.option("--from", "--start", "start", help="from this date (2026-06, 2026-06-01), inclusive")
@click.option("--to", "--end", "end", help="to this date, exclusive")
@click.option("--flow", help="a flow kind, e.g. khai-sinh-3-trong-1")
@click.option("--agency", help="an agency (member id, e.g. VN/GOV/000.00.00.G15): its steps, and the "
              "flows that sent it one")
@JSON
def flow_stats(config_path: Path, period: str, start: str | None, end: str | None, flow: str | None,
               agency: str | None, as_json: bool) -> None:
    """Joint procedures' KPIs per flow kind, step and agency: started, completed, rejected, failed,
    running, overdue; median and p90 times; shares within the deadline and the legal limit."""
    config, engine = _open(config_path)
    try:
        found = kpis.report(engine, period=period, start=moment(start, "--from"), end=moment(end, "--to"),
                            flow=flow, agency=agency, limits=_limits(config), now_us=now_us())
    except InvalidRequest as exc:
        raise click.UsageError(exc.detail) from None
    finally:
        engine.dispose()
    if as_json:
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    rows = kpis.flatten(found["flows"])
    for row in [*rows, *found["agencies"]]:
        for share in ("withinDeadlineShare", "withinLegalLimitShare"):
            row[share] = _pct(row.get(share))
    _print(rows, FLOW_COLUMNS, False, "Joint procedures' KPIs (a row with a step: that step)")
    _print(found["agencies"], [c for c in FLOW_COLUMNS if c not in ("flow", "step", "waiting",
                                                                      "withinLegalLimitShare")],
           False, "Per agency (its steps)")


@click.group("flows")
def flows_group() -> None:
    """Joint procedures (read-only): list flows, show one with its steps."""


@flows_group.command("list")
@CONFIG
@click.option("--dossier", help="a dossier code (MaHoSo)")
@click.option("--state", type=click.Choice(STATES))
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@JSON
def list_flows(config_path: Path, dossier: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """Flows, oldest first."""
    engine = _open(config_path)[1]
    try:
        items: list[dict[str, Any]] = [f.view() for f in FlowStore(engine).find(dossier=dossier, state=state,
                                                                                 limit=limit)]
    finally:
        engine.dispose()
    if not as_json:
        for item in items:
            item["steps"] = " ".join(f"{s['step']}:{s['state']}" for s in item["steps"])
    _print(items, ["id", "flow", "dossier", "state", "started", "finished", "overdue", "steps"], as_json,
           f"{len(items)} flows")


@flows_group.command("show")
@CONFIG
@click.argument("flow_id")
def show_flow(config_path: Path, flow_id: str) -> None:
    """One flow: its state and every step's, with the agencies' answers (as GET /flows/{id})."""
    engine = _open(config_path)[1]
    try:
        found = FlowStore(engine).get(flow_id)
    finally:
        engine.dispose()
    if found is None:
        raise click.ClickException(f"no flow {flow_id}")
    click.echo(orjson.dumps(found.view(), option=orjson.OPT_INDENT_2).decode())
