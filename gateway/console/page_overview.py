"""The overview: traffic by service and outcome, refusals, latency, upstream health and the dossier
KPIs (per recorded agency, or rolled up into today's agencies). The figures come from
``overview.py``; this page chooses the window, draws the charts and names the agencies.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.responses import Response

from gateway.agencies import today
from gateway.console import charts, logquery, overview
from gateway.console.i18n import Translate, translator
from gateway.console.labels import agency_names, percent, short_service
from gateway.console.web import Ctx, PageRoute

__all__ = ["PERIODS", "ROUTES"]

PERIODS = ("month", "quarter", "year")
# chart name -> the KPI field it draws, its title, whether the field is a share (0..1)
KPI_CHARTS = (("received", "received", "kpi.received", False),
              ("online", "onlineShare", "kpi.online_share", True),
              ("resolved", "resolved", "kpi.resolved", False),
              ("ontime", "onTimeShare", "kpi.on_time_share", True))


def overview_page(ctx: Ctx) -> Response:
    window = ctx.query.get("window", "24h")
    window = window if window in overview.WINDOWS else "24h"
    period = ctx.query.get("period", "month")
    period = period if period in PERIODS else "month"
    data = ctx.data
    _ = translator(ctx.request.scope.get("console.lang", "vi"))
    traffic = overview.traffic(data.engine, window)
    chosen = ctx.query.get("service", "")
    chosen = chosen if chosen in traffic.series else ""
    outcomes = traffic.series[chosen] if chosen else traffic.per_outcome()
    series = [(_(f"outcome.{o}"), charts.COLOURS[o], outcomes.get(o, [0] * len(traffic.buckets)))
              for o in logquery.OUTCOMES]
    traffic_chart = charts.stacked_columns(traffic.bucket_labels(), series,
                                           f"{_('overview.traffic')} {chosen}".strip())
    services = traffic.per_service()
    service_chart = charts.stacked_hbars(
        [(short_service(s), [(_(f"outcome.{o}"), charts.COLOURS[o], c[o]) for o in logquery.OUTCOMES])
         for s, c in services], _("overview.by_service"), label_w=280)
    refused, refused_by_status = overview.refusals(data.engine, traffic.start_us)
    health = overview.health(data.engine, [s.id for s in data.config.services], data.queue_counts())
    agencies = data.config.agencies
    rollup = ctx.query.get("rollup", "") in ("1", "true")
    day = today()
    kpis = overview.kpis(data.engine, agencies, period, rollup=rollup, day=day)
    names = agency_names(data.config, _, rollup=rollup, day=day)
    short_names = agency_names(data.config, _, rollup=rollup, day=day, short=True)
    latest_period = sorted({k["period"] for k in kpis})[-3:]
    shown = [k for k in kpis if k["period"] in latest_period]
    ctx.note.purpose = (f"window={window} period={period}" + (f" service={chosen}" if chosen else "")
                        + (" rollup" if rollup else ""))
    params = {"window": window, "period": period, **({"service": chosen} if chosen else {})}
    rollup_url = f"{ctx.base}/overview?{urlencode({**params, **({} if rollup else {'rollup': '1'})})}#kpi"
    return ctx.render("overview.html", window=window, windows=list(overview.WINDOWS), period=period,
                      periods=PERIODS, chosen=chosen, traffic=traffic, traffic_chart=traffic_chart,
                      service_chart=service_chart, services=services, refused=refused,
                      refused_by_status=refused_by_status, health=health, kpis=shown,
                      kpi_charts=kpi_charts(_, shown, short_names), agency_names=names,
                      plain_names=agency_names(data.config), rollup=rollup,
                      rollup_offered=rollup or agencies.changes, rollup_url=rollup_url)


def kpi_charts(_: Translate, kpis: list[dict[str, Any]], short_names: dict[str, str]) -> dict[str, Markup]:
    """One bar chart per KPI, a bar per agency and period; shares drawn against 1 and labelled as
    percentages."""
    rows = [(f"{short_names.get(k['agency'], k['agency'])} · {k['period']}", k) for k in kpis]
    return {name: charts.hbars([(label, k[field], percent(k[field]) if share else str(k[field]))
                                for label, k in rows],
                               _(title), charts.COLOURS[name], peak=1 if share else None, label_w=260)
            for name, field, title, share in KPI_CHARTS}


ROUTES = (PageRoute("/overview", overview_page, "overview", "overview"),)
