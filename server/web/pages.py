"""The lobby pages: open alerts of a person's branches with acknowledge / resolve / pass on, one alert's
timeline, silences; and the page a one-tap acknowledgement link opens. Server-rendered (Jinja2), no build step,
made for a phone. Sign-in is a signed cookie; every form carries a token from it (no cross-site posts)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from lobbywatch.clock import as_utc
from lobbywatch.i18n import normalize_locale, t
from server.alerts.errors import AlertError
from server.api.deps import RuntimeDep
from server.api.reports import as_csv
from server.delivery.links import LinkError, verify
from server.registry import models, users
from server.registry.directory import BranchEntry
from server.registry.users import Person
from server.reports.build import Chart, Period, PeriodKind, make_report, region_reports
from server.rules.catalog import KINDS
from server.runtime import Runtime
from server.web.cards import cards, event_detail, local_time, shared_zone, visible_branches
from server.web.session import SignedIn, Viewer, check_form, page_locale, render

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
pages = APIRouter(include_in_schema=False)


# -- the lobby: open alerts -----------------------------------------------------------------------------
@pages.get("/", include_in_schema=False)
def root() -> Response:
    return RedirectResponse("/lobby", status.HTTP_303_SEE_OTHER)


@pages.get("/lobby", response_class=HTMLResponse)
def lobby(
    request: Request, runtime: RuntimeDep, viewer: Viewer, branch: str | None = None, done: str | None = None
) -> HTMLResponse:
    return render(request, "lobby.html", viewer.locale, done=done, **_lobby(runtime, viewer, branch))


@pages.get("/lobby/cards", response_class=HTMLResponse)
def lobby_cards(request: Request, runtime: RuntimeDep, viewer: Viewer, branch: str | None = None) -> HTMLResponse:
    """The open alerts alone, for the open lobby page to fetch again and again (it stays current)."""
    return render(
        request, "_cards.html", viewer.locale, headers={"Cache-Control": "no-store"}, **_lobby(runtime, viewer, branch)
    )


def _lobby(runtime: Runtime, viewer: SignedIn, branch: str | None) -> dict[str, Any]:
    visible = visible_branches(runtime, viewer.person)
    shown = {branch: visible[branch]} if branch in visible else visible
    alerts = runtime.alert_views.find("open", within=list(shown), limit=10_000)
    alerts.sort(key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.state != "firing", as_utc(a.started_at)))
    now = runtime.clock.now()
    zone = shared_zone(shown)  # "updated at" in the branches' time zone
    return {
        "viewer": viewer,
        "cards": cards(runtime, alerts, shown, viewer.locale),
        "branches": visible,
        "branch": branch if branch in visible else None,
        "colleagues": _colleagues(runtime, viewer.person, visible),
        "updated": now.astimezone(zone).strftime("%H:%M:%S"),
    }


# -- the history of alerts ------------------------------------------------------------------------------
@pages.get("/lobby/history", response_class=HTMLResponse)
def history(
    request: Request,
    runtime: RuntimeDep,
    viewer: Viewer,
    branch: str | None = None,
    rule: str | None = None,
    date: date | None = None,
) -> HTMLResponse:
    """Alerts that started on a day (in the branches' time zone), of one branch or all, of one kind or all."""
    visible = visible_branches(runtime, viewer.person)
    shown = {branch: visible[branch]} if branch in visible else visible
    zone = shared_zone(shown)
    day = date or runtime.clock.now().astimezone(zone).date()
    first = datetime.combine(day, time(0), zone)
    found = runtime.alert_views.find(
        "all",
        within=list(shown),
        rule=rule if rule in KINDS else None,
        started=(first, datetime.combine(day + timedelta(days=1), time(0), zone)),
        limit=1000,
    )
    return render(
        request,
        "history.html",
        viewer.locale,
        viewer=viewer,
        branches=visible,
        branch=branch if branch in visible else None,
        rules={name: t(viewer.locale, f"rule.{name}") for name in KINDS},
        rule=rule if rule in KINDS else None,
        day=day,
        cards=cards(runtime, found, shown, viewer.locale),
        truncated=len(found) == 1000,
    )


def _colleagues(runtime: Runtime, person: Person, visible: dict[str, BranchEntry]) -> list[str]:
    """Names an alert can be passed on to: people who can act and see at least one of these branches."""
    with runtime.sessions() as session:
        found = [users.person(u) for u in session.scalars(select(models.User).where(models.User.active))]
    return sorted(
        p.name
        for p in found
        if p.can_act and p.login != person.login and any(p.sees(b, runtime.directory.lineage(b)) for b in visible)
    )


def _alert_for(runtime: Runtime, viewer: SignedIn, alert_id: int) -> tuple[models.Alert, BranchEntry]:
    alert = runtime.alert_views.get(alert_id)
    branch = runtime.directory.branches.get(alert.branch_id) if alert else None
    if alert is None or branch is None or not viewer.person.sees(branch.id, runtime.directory.lineage(branch.id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, t(viewer.locale, "page.error.no_alert"))
    return alert, branch


@pages.get("/lobby/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    request: Request,
    runtime: RuntimeDep,
    viewer: Viewer,
    alert_id: int,
    done: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    alert, branch = _alert_for(runtime, viewer, alert_id)
    events = runtime.alert_views.timeline(alert_id)
    timeline = [
        {
            "at": local_time(as_utc(e.at), branch, runtime),
            "kind": t(viewer.locale, f"event.{e.kind}"),
            "detail": event_detail(e.kind, e.detail, viewer.locale),
        }
        for e in events
    ]
    return render(
        request,
        "alert.html",
        viewer.locale,
        viewer=viewer,
        card=cards(runtime, [alert], {branch.id: branch}, viewer.locale)[0],
        timeline=timeline,
        done=done,
        error=error,
        colleagues=_colleagues(runtime, viewer.person, {branch.id: branch}),
    )


def _act(runtime: Runtime, viewer: SignedIn, alert_id: int, csrf: str, action: str, **args: str) -> Response:
    check_form(viewer, csrf)
    _alert_for(runtime, viewer, alert_id)
    if not viewer.person.can_act:
        raise HTTPException(status.HTTP_403_FORBIDDEN, t(viewer.locale, "page.error.read_only"))
    by = viewer.person.name
    target = f"/lobby/alerts/{alert_id}"
    try:
        if action == "acknowledge":
            runtime.alerts.acknowledge(alert_id, by, "web")
        elif action == "resolve":
            if not args["note"].strip():
                return RedirectResponse(f"{target}?error=note_needed", status.HTTP_303_SEE_OTHER)
            runtime.alerts.resolve(alert_id, by, args["note"].strip())
        else:
            runtime.alerts.pass_on(alert_id, by, args["to"].strip())
    except AlertError:
        return RedirectResponse(f"{target}?error={action}_refused", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"{target}?done={action}", status.HTTP_303_SEE_OTHER)


@pages.post("/lobby/alerts/{alert_id}/acknowledge")
def acknowledge(runtime: RuntimeDep, viewer: Viewer, alert_id: int, csrf: Annotated[str, Form()]) -> Response:
    return _act(runtime, viewer, alert_id, csrf, "acknowledge")


@pages.post("/lobby/alerts/{alert_id}/resolve")
def resolve(
    runtime: RuntimeDep, viewer: Viewer, alert_id: int, csrf: Annotated[str, Form()], note: Annotated[str, Form()] = ""
) -> Response:
    return _act(runtime, viewer, alert_id, csrf, "resolve", note=note)


@pages.post("/lobby/alerts/{alert_id}/pass")
def pass_on(
    runtime: RuntimeDep, viewer: Viewer, alert_id: int, csrf: Annotated[str, Form()], to: Annotated[str, Form()]
) -> Response:
    return _act(runtime, viewer, alert_id, csrf, "pass", to=to)


# -- silences -------------------------------------------------------------------------------------------
@pages.get("/lobby/silences", response_class=HTMLResponse)
def silences_page(
    request: Request, runtime: RuntimeDep, viewer: Viewer, done: str | None = None, error: str | None = None
) -> HTMLResponse:
    visible = visible_branches(runtime, viewer.person)
    active = [
        {
            "silence": s,
            "branch": visible[s.branch_id],
            "until": local_time(as_utc(s.ends_at), visible[s.branch_id], runtime),
            "rule": t(viewer.locale, f"rule.{s.rule}") if s.rule else t(viewer.locale, "page.silence.all_rules"),
        }
        for s in runtime.alerts.silences.active()
        if s.branch_id in visible
    ]
    return render(
        request,
        "silences.html",
        viewer.locale,
        viewer=viewer,
        active=active,
        branches=visible,
        rules=sorted(KINDS),
        done=done,
        error=error,
    )


@pages.post("/lobby/silences")
def add_silence(
    runtime: RuntimeDep,
    viewer: Viewer,
    csrf: Annotated[str, Form()],
    branch: Annotated[str, Form()],
    minutes: Annotated[float, Form()],
    reason: Annotated[str, Form()] = "",
    rule: Annotated[str, Form()] = "",
) -> Response:
    check_form(viewer, csrf)
    if branch not in visible_branches(runtime, viewer.person) or not viewer.person.can_act:
        raise HTTPException(status.HTTP_403_FORBIDDEN, t(viewer.locale, "page.error.read_only"))
    if not reason.strip():
        return RedirectResponse("/lobby/silences?error=reason_needed", status.HTTP_303_SEE_OTHER)
    try:
        runtime.alerts.silences.add(branch, minutes, viewer.person.name, reason.strip(), rule or None)
    except AlertError:
        return RedirectResponse("/lobby/silences?error=silence_refused", status.HTTP_303_SEE_OTHER)
    return RedirectResponse("/lobby/silences?done=silenced", status.HTTP_303_SEE_OTHER)


@pages.post("/lobby/silences/{silence_id}/end")
def end_silence(runtime: RuntimeDep, viewer: Viewer, silence_id: int, csrf: Annotated[str, Form()]) -> Response:
    check_form(viewer, csrf)
    silence = runtime.alert_views.silence(silence_id)
    mine = visible_branches(runtime, viewer.person)
    if silence is None or silence.branch_id not in mine or not viewer.person.can_act:
        raise HTTPException(status.HTTP_404_NOT_FOUND, t(viewer.locale, "page.error.no_alert"))
    runtime.alerts.silences.end(silence_id, viewer.person.name)
    return RedirectResponse("/lobby/silences?done=ended", status.HTTP_303_SEE_OTHER)


# -- reports ----------------------------------------------------------------------------------------------
@pages.get("/lobby/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    runtime: RuntimeDep,
    viewer: Viewer,
    branch: str | None = None,
    period: PeriodKind = "day",
    date: date | None = None,  # the API's name for it too
    day: date | None = None,  # the name it had before: links in reports already mailed still work
) -> Response:
    day = date or day
    visible = visible_branches(runtime, viewer.person)
    if not visible:
        return render(request, "reports.html", viewer.locale, viewer=viewer, branches={}, report=None)
    entry = visible.get(branch or "") or next(iter(sorted(visible.values(), key=lambda b: b.id)))
    # the page opens on today (this week) so far: a manager looks at how the day goes, not only at yesterday
    today = runtime.clock.now().astimezone(ZoneInfo(entry.timezone)).date()
    try:
        chosen = Period.of(period, day or today)
    except ValueError:
        return _message(
            request, viewer.locale, t(viewer.locale, "page.report.title"), t(viewer.locale, "page.report.bad_day"), 422
        )
    report = make_report(runtime.store, runtime.sessions, entry, chosen, runtime.clock.now())
    if request.query_params.get("format") == "csv":
        return as_csv([report.figures], f"lobbywatch-{entry.id}-{chosen.kind}-{chosen.first}")
    # the region view: every branch this person sees, best service first, for the same period
    ranking = (
        region_reports(runtime.store, runtime.sessions, visible.values(), chosen, runtime.clock.now())
        if len(visible) > 1
        else []
    )
    return render(
        request,
        "reports.html",
        viewer.locale,
        viewer=viewer,
        branches=visible,
        branch=entry,
        period=chosen,
        report=report.figures,
        bars=bars(report.chart),
        ranking=ranking,
    )


def bars(chart: Chart) -> dict[str, list[dict[str, Any]]]:
    """Bar heights (0-100) for the page's two charts, drawn as SVG by the template."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in (("wait", chart.wait_avg_min), ("queue", chart.longest_queue)):
        top = max((v for v in values if v is not None), default=0) or 1
        out[name] = [
            {"label": label, "value": v, "height": 0 if v is None else round(100 * v / top, 1)}
            for label, v in zip(chart.labels, values, strict=True)
        ]
    return out


# -- one-tap acknowledgement -------------------------------------------------------------------------------
# Opening the link shows the alert and acknowledges it with a POST the page sends itself: chat apps fetch
# links to preview them, and a preview must not make anyone the owner of an alert they never saw.
@pages.get("/ack/{token}", response_class=HTMLResponse)
def ack_link_page(request: Request, runtime: RuntimeDep, token: str) -> HTMLResponse:
    return _ack(request, runtime, token, act=False)


@pages.post("/ack/{token}", response_class=HTMLResponse)
def ack_link(request: Request, runtime: RuntimeDep, token: str) -> HTMLResponse:
    return _ack(request, runtime, token, act=True)


def _ack(request: Request, runtime: Runtime, token: str, act: bool) -> HTMLResponse:
    found = _from_link(request, runtime, token)
    if isinstance(found, HTMLResponse):
        return found
    alert, branch, who, locale = found
    result = None
    if act:
        try:
            alert = runtime.alerts.acknowledge(alert.id, who, "link")
        except AlertError:
            return _message(request, locale, t(locale, "ack.failed"), t(locale, "ack.closed"), 409)
        owner = alert.owner or who
        result = t(locale, "ack.done_owner" if owner == who else "ack.done_other", who=who, owner=owner)
    return render(
        request,
        "ack.html",
        locale,
        card=cards(runtime, [alert], {branch.id: branch}, locale)[0],
        who=who,
        token=token,
        result=result,
    )


def _from_link(
    request: Request, runtime: Runtime, token: str
) -> tuple[models.Alert, BranchEntry, str, str] | HTMLResponse:
    fallback = page_locale(request, normalize_locale(request.headers.get("accept-language")))
    try:
        alert_id, who = verify(token, runtime.clock.now().timestamp(), runtime.link_secret)
    except LinkError as exc:
        reason = "expired" if "expired" in str(exc) else "invalid"
        return _message(request, fallback, t(fallback, "ack.failed"), t(fallback, f"ack.{reason}"), 400)
    alert = runtime.alert_views.get(alert_id)
    branch = runtime.directory.branches.get(alert.branch_id) if alert else None
    if alert is None or branch is None:
        return _message(request, fallback, t(fallback, "ack.failed"), t(fallback, "ack.invalid"), 404)
    locale = page_locale(request, branch.locale)
    if alert.state == "resolved":
        return _message(request, locale, t(locale, "ack.failed"), t(locale, "ack.closed"), 409)
    return alert, branch, who, locale


def _message(request: Request, locale: str, heading: str, text: str, status_code: int) -> HTMLResponse:
    return render(request, "message.html", locale, status_code=status_code, heading=heading, text=text)
