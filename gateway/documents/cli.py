"""``lienthong stats documents``: the document exchange's KPIs per agency and period, read from the
database the configuration names (no gateway needs to be running; nothing changes)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from gateway.cliopts import CONFIG, load
from gateway.delivery.cli import JSON, _print
from gateway.delivery.model import now_us
from gateway.delivery.routes import moment
from gateway.documents import stats as kpis
from gateway.errors import InvalidRequest

__all__ = ["document_stats"]

COLUMNS = ["organ", "member", "period", "sent", "electronic", "refused", "failed", "inTransit",
           "electronicShare", "received", "receivedElectronic", "withDueDate", "answered", "answeredOnTime",
           "answeredLate", "overdue", "onTimeShare"]


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


@click.command("documents")
@CONFIG
@click.option("--period", type=click.Choice(kpis.PERIODS), default="month", show_default=True)
@click.option("--from", "--start", "start", help="from this date (2026-11, 2026-11-01), inclusive")
@click.option("--to", "--end", "end", help="to this date, exclusive")
@click.option("--agency", help="an organ (OrganId, e.g. 000.00.00.H60) or a member (VN/GOV/000.00.00.H60)")
@JSON
def document_stats(config_path: Path, period: str, start: str | None, end: str | None, agency: str | None,
                   as_json: bool) -> None:
    """Official documents' KPIs per organ and period: sent (and how many were exchanged
    electronically, refused, failed, in transit), received, answered on time by their DueDate."""
    from gateway.storage.db import create_engine, upgrade

    config = load(config_path)
    upgrade(config.database_url)
    engine = create_engine(config.database_url)
    try:
        found = kpis.report(engine, period=period, start=moment(start, "--from"), end=moment(end, "--to"),
                            agency=agency, now_us=now_us())
    except InvalidRequest as exc:
        raise click.UsageError(exc.detail) from None
    finally:
        engine.dispose()
    if as_json:
        click.echo(orjson.dumps({"period": period, "from": start, "to": end, **found},
                                option=orjson.OPT_INDENT_2).decode())
        return
    for row in [*found["agencies"], *found["totals"]]:
        for share in ("electronicShare", "onTimeShare"):
            row[share] = _pct(row[share])
    _print(found["agencies"], COLUMNS, False, "Official documents' KPIs per organ")
    _print(found["totals"], [c for c in COLUMNS if c not in ("organ", "member")], False, "All organs")
