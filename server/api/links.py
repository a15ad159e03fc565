"""The page a one-tap acknowledgement link opens on a phone: no login, the signed link is the permission."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from lobbywatch.i18n import t
from server.alerts.links import LinkError, verify
from server.alerts.service import AlertError
from server.api.deps import RuntimeDep
from server.registry import models

pages = APIRouter()

PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>LobbyWatch</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;font-size:1.2rem}}h1{{font-size:1.4rem}}</style>
</head><body><h1>{heading}</h1><p>{text}</p></body></html>"""


@pages.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def acknowledge_by_link(token: str, runtime: RuntimeDep) -> HTMLResponse:
    try:
        alert_id, who = verify(token, runtime.clock.now().timestamp(), runtime.link_secret)
    except LinkError as exc:
        return _page("zh-CN", t("zh-CN", "ack.failed"), f"{t('zh-CN', 'ack.' + _reason(exc))} / {exc}", 400)
    with runtime.sessions() as session:
        alert = session.get(models.Alert, alert_id)
        branch = runtime.directory.branches.get(alert.branch_id) if alert else None
    lang = branch.locale if branch else "zh-CN"
    try:
        done = runtime.alerts.acknowledge(alert_id, who, "link")
    except AlertError:
        return _page(lang, t(lang, "ack.failed"), t(lang, "ack.closed"), 409)
    owner = done.owner or who
    text = t(lang, "ack.done_owner" if owner == who else "ack.done_other", who=who, owner=owner)
    return _page(lang, t(lang, "ack.done"), text, 200)


def _reason(exc: LinkError) -> str:
    return "expired" if "expired" in str(exc) else "invalid"


def _page(lang: str, heading: str, text: str, status: int) -> HTMLResponse:
    return HTMLResponse(PAGE.format(lang=lang, heading=escape(heading), text=escape(text)), status_code=status)
