"""The console's pages. Each body runs in a worker thread with a ``Ctx`` (see ``web.Console.page``)
and returns a response; what it asked for goes into ``ctx.note`` for the audit record.

A personal id typed into a form is hashed here, at the form handler, with the gateway's subject key
(the same keyed hash the audit log indexes), and only the hash goes on: into the redirect URL, the
search, the audit record. The clear id is never logged, stored or put in a URL.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.agencies import today
from gateway.bounds import index
from gateway.console import charts, logquery, overview
from gateway.console.i18n import Translate, translator
from gateway.console.logquery import Filters
from gateway.console.sessions import Session
from gateway.console.web import Ctx, Note, csv_stream, json_block, jsonl_stream, streaming
from gateway.public import client_address
from gateway.throttle import Attempt, retry_after

if TYPE_CHECKING:
    from gateway.console.web import Console

__all__ = ["routes"]

PERIODS = ("month", "quarter", "year")
DELIVERY_STATES = ("dead", "pending", "delivered", "cancelled")


def _safe_next(base: str, target: str | None) -> str:
    """Only a path inside the console; anything else (another host, ``//evil``) goes home."""
    if target and target.startswith(f"{base}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{base}/overview"


def routes(console: Console) -> list[Route]:
    page = console.page

    # -- signing in and out, language -----------------------------------------------------------

    async def login_form(request: Request) -> Response:
        session: Session = request.scope["console.session"]
        if await run_in_threadpool(console.current_user, session) is not None:
            return RedirectResponse(_safe_next(console.base(request), request.query_params.get("next")), 303)
        return console.render(request, "login.html", next=request.query_params.get("next", ""),
                              oidc=console.settings.oidc, error=None)

    async def login(request: Request) -> Response:
        started = time.perf_counter()
        form: dict[str, str] = request.scope.get("console.form", {})
        username = form.get("username", "").strip()[:64]
        attempt = Attempt("console", username.lower(), client_address(request.scope, console.runtime.config))
        note = Note(purpose="sign-in with a local account")
        verdict = await run_in_threadpool(console.throttle.admit, attempt)  # before the password check
        if not verdict.allowed:
            note.error = "Client.TooManyAttempts"
            await console.audit(user=username or None, action="signin", status=429, note=note,
                                started=started)
            refused = console.render(request, "login.html", status=429, next=form.get("next", ""),
                                     oidc=console.settings.oidc, error="login.throttled")
            refused.headers["Retry-After"] = retry_after(verdict)
            return refused
        user = await run_in_threadpool(console.users.authenticate, username, form.get("password", ""))
        if user is None:  # the attempt stays counted, and the address counts it too
            await run_in_threadpool(console.throttle.failed, attempt)
            note.error = "Client.SignInRefused"
            await console.audit(user=username or None, action="signin", status=401, note=note,
                                started=started)
            return console.render(request, "login.html", status=401, next=form.get("next", ""),
                                  oidc=console.settings.oidc, error="login.failed")
        await run_in_threadpool(console.throttle.succeeded, attempt)
        await console.audit(user=user.username, action="signin", status=303, note=note, started=started)
        await console.sign_in(request, user, "local")
        return RedirectResponse(_safe_next(console.base(request), form.get("next")), 303)

    @page("account", "signout")
    def logout(ctx: Ctx) -> Response:
        console.sign_out(ctx.request)
        return RedirectResponse(f"{console.base(ctx.request)}/login", 303)

    async def language(request: Request) -> Response:
        code = request.path_params["code"]
        base = console.base(request)
        response = RedirectResponse(_safe_next(base, request.query_params.get("next")), 303)
        if code in ("vi", "en"):
            response.set_cookie("lt_lang", code, max_age=365 * 86400, path="/console", samesite="lax",
                                httponly=True, secure=console.secure(request.scope))
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{console.base(request)}/overview", 303)

    # -- overview -------------------------------------------------------------------------------------

    @page("overview", "overview")
    def overview_page(ctx: Ctx) -> Response:
        window = ctx.query.get("window", "24h")
        window = window if window in overview.WINDOWS else "24h"
        period = ctx.query.get("period", "month")
        period = period if period in PERIODS else "month"
        data = console.data
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
        names = _agency_names(data.config, _, rollup=rollup, day=day)
        short_names = _agency_names(data.config, _, rollup=rollup, day=day, short=True)
        latest_period = sorted({k["period"] for k in kpis})[-3:]
        shown = [k for k in kpis if k["period"] in latest_period]
        kpi_rows = [(f"{short_names.get(k['agency'], k['agency'])} · {k['period']}", k) for k in shown]
        kpi_charts = {
            name: charts.hbars([(label, k[field], _pct(k[field]) if share else str(k[field]))
                                for label, k in kpi_rows],
                               _(title), charts.COLOURS[name], peak=1 if share else None, label_w=260)
            for name, field, title, share in (("received", "received", "kpi.received", False),
                                              ("online", "onlineShare", "kpi.online_share", True),
                                              ("resolved", "resolved", "kpi.resolved", False),
                                              ("ontime", "onTimeShare", "kpi.on_time_share", True))}
        ctx.note.purpose = (f"window={window} period={period}" + (f" service={chosen}" if chosen else "")
                            + (" rollup" if rollup else ""))
        params = {"window": window, "period": period, **({"service": chosen} if chosen else {})}
        rollup_url = (f"{console.base(ctx.request)}/overview?"
                      f"{urlencode({**params, **({} if rollup else {'rollup': '1'})})}#kpi")
        return console.render(ctx.request, "overview.html", user=ctx.user, window=window,
                              windows=list(overview.WINDOWS), period=period, periods=PERIODS, chosen=chosen,
                              traffic=traffic, traffic_chart=traffic_chart, service_chart=service_chart,
                              services=services, refused=refused, refused_by_status=refused_by_status,
                              health=health, kpis=shown, kpi_charts=kpi_charts, agency_names=names,
                              plain_names=_agency_names(data.config), rollup=rollup,
                              rollup_offered=rollup or agencies.changes, rollup_url=rollup_url)

    # -- the exchange log -----------------------------------------------------------------------------

    @page("log", "log.search")
    def log_page(ctx: Ctx) -> Response:
        filters = Filters.from_query(ctx.query)
        rows, next_before = logquery.search(console.data.engine, filters)
        ctx.note.purpose = filters.describe() or "all"
        if filters.subject:
            ctx.note.subjects = (filters.subject,)
        base = console.base(ctx.request)
        return console.render(
            ctx.request, "log.html", user=ctx.user, filters=filters, rows=rows, outcomes=logquery.OUTCOMES,
            services=[s.id for s in console.data.config.services],
            next_url=filters.url(f"{base}/log", before=next_before) if next_before is not None else None,
            first_url=filters.url(f"{base}/log", before=None) if filters.before is not None else None,
            csv_url=filters.url(f"{base}/log/export.csv", before=None),
            jsonl_url=filters.url(f"{base}/log/export.jsonl", before=None))

    @page("log", None)
    def log_search(ctx: Ctx) -> Response:
        """The search form: the personal id, if any, is hashed here and only its hash goes on."""
        form = dict(ctx.form)
        personal_id = form.pop("personal_id", "").strip()
        if personal_id:
            form["subject"] = console.data.subjects(personal_id)
        del personal_id
        filters = Filters.from_query(form)
        return RedirectResponse(filters.url(f"{console.base(ctx.request)}/log", before=None), 303)

    def _export(ctx: Ctx, kind: str) -> Response:
        filters = Filters.from_query(ctx.query)
        ctx.note.purpose = f"export {kind}: {filters.describe() or 'all'}"
        if filters.subject:
            ctx.note.subjects = (filters.subject,)
        rows = logquery.export_rows(console.data.engine, filters, size=console.data.audit.log.size())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if kind == "csv":
            return streaming(csv_stream(rows), "text/csv; charset=utf-8", f"lienthong-audit-{stamp}.csv")
        return streaming(jsonl_stream(rows), "application/x-ndjson", f"lienthong-audit-{stamp}.jsonl")

    @page("log", "log.export.csv")
    def export_csv(ctx: Ctx) -> Response:
        return _export(ctx, "csv")

    @page("log", "log.export.jsonl")
    def export_jsonl(ctx: Ctx) -> Response:
        return _export(ctx, "jsonl")

    @page("log", "log.entry")
    def entry(ctx: Ctx) -> Response:
        idx = index(ctx.request.path_params["idx"])  # not Starlette's int: it fails on 4,301 digits
        row = console.data.entry(idx) if idx is not None else None
        ctx.note.purpose = f"entry {idx}"
        if row is None:
            return console.error_page(ctx.request, 404, "error.no_entry", ctx.user)
        doc = row.doc
        ctx.note.subjects = tuple(doc.get("subjects") or ())
        bundle = console.data.proof(row)
        rule = console.data.rule(row.rule)
        same = [logquery.Row.of(leaf) for leaf in console.data.audit.log.by_exchange(row.exchange_id)
                if leaf.idx != row.idx]
        return console.render(ctx.request, "entry.html", user=ctx.user, row=row, doc=doc, bundle=bundle,
                              proof_json=json_block(bundle.as_json()), rule=rule, same=same,
                              leaf_text=row.leaf.decode("utf-8", "replace"))

    # -- checkpoints --------------------------------------------------------------------------------

    @page("checkpoints", "checkpoints")
    def checkpoints(ctx: Ctx) -> Response:
        data = console.data
        views = data.checkpoints()
        consistency = None
        first, second = ctx.query.get("first", ""), ctx.query.get("second", "")
        size1, size2 = index(first), index(second)
        if size1 is not None and size2 is not None:
            consistency = data.consistency(size1, size2)
            ctx.note.purpose = f"consistency {first} {second}"
        return console.render(ctx.request, "checkpoints.html", user=ctx.user, checkpoints=views,
                              vkey=data.vkey, origin=data.audit.origin, consistency=consistency,
                              first=first, second=second)

    # -- data subjects -------------------------------------------------------------------------------

    @page("subjects", None)
    def subject_form(ctx: Ctx) -> Response:
        return console.render(ctx.request, "subject_form.html", user=ctx.user)

    @page("subjects", None)
    def subject_lookup(ctx: Ctx) -> Response:
        personal_id = ctx.form.get("personal_id", "").strip()
        if not personal_id:
            return RedirectResponse(f"{console.base(ctx.request)}/subjects", 303)
        subject = console.data.subjects(personal_id)
        del personal_id
        return RedirectResponse(f"{console.base(ctx.request)}/subjects/{subject}", 303)

    @page("subjects", "subjects.report")
    def subject_report(ctx: Ctx) -> Response:
        subject = ctx.request.path_params["subject"].lower()
        filters = Filters.from_query({"subject": subject})
        if not filters.subject:
            return console.error_page(ctx.request, 404, "error.no_subject", ctx.user)
        ctx.note.purpose, ctx.note.subjects = "data-subject report", (subject,)
        data = console.data
        names = _client_names(data.config)
        disclosing = {r.name for r in data.rules if getattr(r, "disclose_official", False)}
        accesses = []
        for found in logquery.export_rows(data.engine, filters, limit=5000):
            record = found.record
            disclose = record.get("rule") in disclosing
            accesses.append({"index": found.index, "time": logquery.local_from_leaf(record.get("time")),
                             "organisation": names.get(record.get("client") or "", record.get("client")),
                             "official": record.get("userId") if disclose else None,
                             "withheld": bool(record.get("userId")) and not disclose,
                             "service": record.get("service") or record.get("operation"),
                             "purpose": record.get("purpose"), "outcome": record.get("outcome")})
        counts = Counter(a["organisation"] for a in accesses)
        return console.render(ctx.request, "subject_report.html", user=ctx.user, subject=subject,
                              accesses=accesses, counts=counts.most_common(),
                              generated=logquery.local_text(time.time_ns() // 1000))

    # -- operations --------------------------------------------------------------------------------

    @page("deliveries", "deliveries")
    def deliveries(ctx: Ctx) -> Response:
        store = console.data.deliveries
        state = ctx.query.get("state", "dead")
        state = state if state in DELIVERY_STATES else "dead"
        service = ctx.query.get("service", "").replace("\x00", "").strip() or None  # NUL: see logquery
        after = index(ctx.query.get("after")) or 0
        items: list[dict[str, Any]] = []
        by_state: Counter[str] = Counter()
        if store is not None:
            items = store.find(state=state, service=service, after=after, limit=51)
            for row in store.counts():
                by_state[row["state"]] += int(row["n"])
        more = len(items) > 50
        items = items[:50]
        ctx.note.purpose = f"state={state}" + (f" service={service}" if service else "")
        base = console.base(ctx.request)
        params = {"state": state, **({"service": service} if service else {})}
        next_url = f"{base}/deliveries?{urlencode({**params, 'after': items[-1]['seq']})}" if more else None
        return console.render(ctx.request, "deliveries.html", user=ctx.user, items=items, state=state,
                              states=DELIVERY_STATES, by_state=by_state, service=service or "",
                              services=[s.id for s in console.data.config.services if s.delivery == "async"],
                              available=store is not None, next_url=next_url,
                              done=ctx.query.get("done"), can_act=True)

    def _act(ctx: Ctx, what: str) -> Response:
        store = console.data.deliveries
        delivery_id = ctx.request.path_params["delivery_id"]
        ctx.note.purpose = f"{what} delivery {delivery_id}"
        back = ctx.form.get("back", "")
        base = console.base(ctx.request)
        if store is None:
            return console.error_page(ctx.request, 404, "error.no_queue", ctx.user)
        if what == "retry":
            count = store.retry(ids=[delivery_id], state=None)
            done = f"retried:{count}"
        else:
            created = store.replay(ids=[delivery_id])
            count = len(created)
            done = f"replayed:{count}"
        console.data.poke_deliveries()
        if count == 0:
            ctx.note.error = "Client.NothingToDo"
        target = back if back.startswith(f"{base}/deliveries") else f"{base}/deliveries"
        glue = "&" if "?" in target else "?"
        return RedirectResponse(f"{target}{glue}{urlencode({'done': done})}", 303)

    @page("deliveries.act", "deliveries.retry")
    def retry(ctx: Ctx) -> Response:
        return _act(ctx, "retry")

    @page("deliveries.act", "deliveries.replay")
    def replay(ctx: Ctx) -> Response:
        return _act(ctx, "replay")

    @page("catalog", "catalog")
    def catalog(ctx: Ctx) -> Response:
        data = console.data
        config = data.config
        services_of: dict[str, list[Any]] = {}
        for service in config.services:
            owner = str(service.service_id.subsystem_id)
            services_of.setdefault(owner, []).append(
                {"service": service, "rules": [(r, data.clients_of(r)) for r in data.rules_for(service.id)]})
        agencies, day = config.agencies, today()
        return console.render(ctx.request, "catalog.html", user=ctx.user, members=config.members,
                              services_of=services_of, clients=config.clients,
                              names={m.id: m.name or m.id for m in config.members},
                              former={m.id for m in config.members if agencies.ended(m.id, day)},
                              formers_of={m.id: agencies.formers(m.id) for m in config.members})

    return [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang/{code}", language),
        Route("/overview", overview_page),
        Route("/log", log_page, methods=["GET"]),
        Route("/log", log_search, methods=["POST"]),
        Route("/log/export.csv", export_csv),
        Route("/log/export.jsonl", export_jsonl),
        Route("/log/{idx}", entry),
        Route("/checkpoints", checkpoints),
        Route("/subjects", subject_form, methods=["GET"]),
        Route("/subjects", subject_lookup, methods=["POST"]),
        Route("/subjects/{subject}", subject_report),
        Route("/deliveries", deliveries),
        Route("/deliveries/{delivery_id}/retry", retry, methods=["POST"]),
        Route("/deliveries/{delivery_id}/replay", replay, methods=["POST"]),
        Route("/catalog", catalog),
    ]


def short_service(service_id: str) -> str:
    """``VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC`` as ``G22 DVCQG/DongBoHoSoMC``: what a chart label
    has room for (the full id is in the table beside it)."""
    parts = service_id.split("/")
    if len(parts) < 5:
        return service_id
    agency = parts[2].rsplit(".", 1)[-1]
    return f"{agency} {'/'.join(parts[3:])}"


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f} %"


def _agency_names(config: Any, _: Translate | None = None, *, rollup: bool = False,
                  day: date | None = None, short: bool = False) -> dict[str, str]:
    """Agency code (``000.00.00.H22``) -> the member's name; with a translator, a former agency's
    name says so beside the agency it is now part of ("UBND tỉnh Hà Giang (cũ, nay thuộc UBND tỉnh
    Tuyên Quang)"), and, rolled up, a current agency's names the former ones it includes. ``short``:
    what a chart label has room for ("(cũ)", "(+1 cũ)")."""
    plain = {_code(m.id): m.name or m.id for m in config.members}
    if _ is None:
        return plain
    agencies = config.agencies
    day = today() if day is None else day
    out = dict(plain)
    for member in config.members:
        code, name = _code(member.id), plain[_code(member.id)]
        if agencies.ended(member.id, day):
            into = agencies.rolled_up(member.id, day)
            successors = ([into] if into != member.id else
                          list(dict.fromkeys(agencies.rolled_up(s.successor, day) for s in member.split)))
            now = ", ".join(agencies.name(s) for s in successors)
            out[code] = (_("agency.former", name=name, successor=now) if now and not short
                         else _("agency.former_short", name=name))
        elif rollup:
            formers = [f for f in agencies.formers(member.id) if agencies.rolled_up(f, day) == member.id]
            if formers:
                out[code] = (_("agency.including_short", name=name, n=len(formers)) if short else
                             _("agency.including", name=name,
                               formers=", ".join(agencies.name(f) for f in formers)))
    return out


def _code(member_id: str) -> str:
    return member_id.split("/")[2]


def _client_names(config: Any) -> dict[str, str]:
    """Client subsystem id -> "member name · subsystem name"."""
    out = {}
    for m in config.members:
        for s in m.subsystems:
            out[f"{m.id}/{s.code}"] = f"{m.name or m.id} · {s.name or s.code}"
    out["console"] = "Liên Thông console"
    return out
