"""The technicians' pages: the fleet, and one device with its remote actions, a snapshot to draw its zones on,
labels for calibration, and the config push. The snapshot is shown from memory and never stored here."""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lobbywatch.i18n import catalog, t
from server import fleet as devices
from server import zone_shapes
from server.api.deps import RuntimeDep
from server.ingest import dead_letters
from server.live import LastReply
from server.provisioning.enrollment import CAMERAS
from server.runtime import Runtime
from server.web.cards import local_time, visible_branches
from server.web.session import SignedIn, Viewer, check_form, render

fleet_pages = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
TECHNICIANS = ("administrator", "technician")
WAIT_TRIES = 40  # reloads 1.5 s apart: a device that has not answered in a minute is not going to


def require_technician(viewer: SignedIn) -> None:
    if viewer.person.role not in TECHNICIANS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, t(viewer.locale, "page.error.read_only"))


def _device(runtime: Runtime, viewer: SignedIn, device: str) -> devices.FleetRow:
    mine = set(visible_branches(runtime, viewer.person))
    for row in runtime.fleet.rows(mine):
        if row.device == device:
            return row
    raise HTTPException(status.HTTP_404_NOT_FOUND, t(viewer.locale, "page.fleet.no_device"))


@fleet_pages.get("/lobby/fleet", response_class=HTMLResponse)
def fleet_page(
    request: Request, runtime: RuntimeDep, viewer: Viewer, branch: str | None = None, state: str = "all"
) -> HTMLResponse:
    mine = visible_branches(runtime, viewer.person)
    chosen = {branch} if branch in mine else set(mine)
    rows = [
        r
        for r in runtime.fleet.rows(chosen)
        if state == "all" or (state == "attention" and r.attention) or (state == "offline" and not r.online)
    ]
    return render(
        request,
        "fleet.html",
        viewer.locale,
        viewer=viewer,
        rows=rows,
        branches=mine,
        branch=branch,
        state=state,
        letters=_letters(runtime, {r.device for r in rows}),
    )


def _letters(runtime: Runtime, of: set[str], limit: int = 20) -> list[dict[str, Any]]:
    """The newest messages these devices sent that were set aside, for the technician to look into."""
    with runtime.sessions() as session:
        return [
            {
                "at": x.at,
                "device": x.device_id,
                "cause": x.cause,
                "detail": x.detail,
                "payload": x.payload[:300].decode("utf-8", errors="replace"),
            }
            for x in dead_letters.recent(session, limit, devices=of)
        ]


@dataclass(frozen=True, slots=True)
class ReplyView:
    """A device's answer, in the reader's words."""

    ok: bool
    action_label: str
    text: str
    at: str


def reply_view(reply: LastReply, locale: str, at: str) -> ReplyView:
    action = f"page.fleet.command.{reply.action}"
    label = t(locale, action) if action in catalog(locale) else reply.action
    key = f"page.fleet.reply.{reply.code}"
    if key not in catalog(locale):  # a refusal names its reason by the catalog's own key (calibration.error.*)
        key = reply.code or key
    text = reply.detail or t(locale, "page.fleet.reply_ok" if reply.ok else "page.fleet.reply_failed")
    if reply.code and key in catalog(locale):
        with suppress(KeyError, IndexError, ValueError):  # a newer agent's params: its English detail says it
            text = t(locale, key, **{**reply.params, "detail": reply.detail})
    return ReplyView(reply.ok, label, text, at)


def counting_view(row: devices.FleetRow, locale: str) -> list[str]:
    """How each zone is counted, in the reader's words; a method this server does not know, by its name."""
    shown = []
    for zone, method in sorted(row.counting.items()):
        key = f"page.fleet.method.{method}"
        text = t(locale, key) if key in catalog(locale) else method
        if zone in row.fitting:
            text = t(locale, "page.fleet.method_fitting", method=text)
        shown.append(t(locale, "page.fleet.zone_method", zone=zone, method=text))
    return shown


@fleet_pages.get("/lobby/fleet/{device}", response_class=HTMLResponse)
def device_page(
    request: Request,
    runtime: RuntimeDep,
    viewer: Viewer,
    device: str,
    done: str | None = None,
    error: str | None = None,
    sent: str | None = None,
    tries: int = 0,
) -> HTMLResponse:
    row = _device(runtime, viewer, device)
    version, sections = runtime.fleet.pushed_config(device)
    camera = sections.get("camera") if isinstance(sections.get("camera"), dict) else None
    zones = [z for z in (camera or {}).get("zones", []) if isinstance(z, dict)]
    shown = runtime.fleet.snapshot(device)
    branch = runtime.directory.branches[row.branch]
    last = row.last_reply
    at = local_time(last.at, branch, runtime) if last else ""
    last_view = reply_view(last, viewer.locale, at) if last else None
    reply = last_view if last and sent and last.command == sent else None  # the answer to the command just sent
    answered = reply is not None
    if sent and sent.startswith("snapshot-"):  # its image comes on a channel of its own, maybe after the answer
        refused = last is not None and last.command == sent and not last.ok
        answered = (shown is not None and shown.id == sent) or refused
    return render(
        request,
        "device.html",
        viewer.locale,
        viewer=viewer,
        row=row,
        last_seen=local_time(row.last_seen, branch, runtime) if row.last_seen else None,
        pushed=version,
        camera=camera,
        has_camera=camera is not None or row.profile in CAMERAS,
        zones=zones,
        ignore=[a for a in (camera or {}).get("ignore", []) if isinstance(a, list)],
        done=done,
        error=error,
        sent=sent,
        waiting=bool(sent) and not answered and tries < WAIT_TRIES,
        snapshot=shown,
        can_act=viewer.person.role in TECHNICIANS,
        letters=_letters(runtime, {device}),
        reply=reply,
        last_reply=last_view,
        counting=counting_view(row, viewer.locale),
    )


@fleet_pages.get("/lobby/fleet/{device}/snapshot.jpg")
def snapshot_image(runtime: RuntimeDep, viewer: Viewer, device: str) -> Response:
    require_technician(viewer)
    _device(runtime, viewer, device)
    found = runtime.fleet.snapshot(device)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, t(viewer.locale, "page.fleet.no_snapshot"))
    return Response(found.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@fleet_pages.post("/lobby/fleet/{device}/action")
def action(
    runtime: RuntimeDep, viewer: Viewer, device: str, csrf: Annotated[str, Form()], action: Annotated[str, Form()]
) -> Response:
    check_form(viewer, csrf)
    require_technician(viewer)
    _device(runtime, viewer, device)
    target = f"/lobby/fleet/{device}"
    try:
        sent = runtime.fleet.send_command(device, action, viewer.person.name)
    except devices.FleetError:
        return RedirectResponse(f"{target}?error={action}", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"{target}?done={action}&sent={sent}", status.HTTP_303_SEE_OTHER)


@fleet_pages.post("/lobby/fleet/{device}/label")
def label(
    runtime: RuntimeDep,
    viewer: Viewer,
    device: str,
    csrf: Annotated[str, Form()],
    snapshot: Annotated[str, Form()],
    zone: Annotated[str, Form()],
    count: Annotated[int, Form()],
    heads: Annotated[str, Form()] = "[]",
) -> Response:
    """A snapshot labelled with the people in a zone: a count, or the heads clicked on it (the count is theirs;
    the device keeps the points for a density calibration)."""
    check_form(viewer, csrf)
    require_technician(viewer)
    _device(runtime, viewer, device)
    try:
        points = zone_shapes.parse_heads(heads)
    except zone_shapes.ShapesRefused as exc:
        log.info("heads for %s refused: %s", device, exc)
        return RedirectResponse(f"/lobby/fleet/{device}?error=label", status.HTTP_303_SEE_OTHER)
    args: dict[str, object] = {"snapshot": snapshot, "zone": zone, "count": len(points) if points else count}
    if points:
        args["points"] = points
    sent = runtime.fleet.send_command(device, "label", viewer.person.name, args)
    return RedirectResponse(f"/lobby/fleet/{device}?done=label&sent={sent}", status.HTTP_303_SEE_OTHER)


@fleet_pages.post("/lobby/fleet/{device}/zones")
def save_zones(
    runtime: RuntimeDep,
    viewer: Viewer,
    device: str,
    csrf: Annotated[str, Form()],
    shapes: Annotated[str, Form()],
    source: Annotated[str, Form()] = "0",
) -> Response:
    """Put the drawn zones and areas to ignore in the camera section and push it; the device says which version
    it runs."""
    check_form(viewer, csrf)
    require_technician(viewer)
    _device(runtime, viewer, device)
    target = f"/lobby/fleet/{device}"
    _, sections = runtime.fleet.pushed_config(device)
    try:
        zones, ignore = zone_shapes.parse(shapes)
        camera = zone_shapes.apply(dict(sections.get("camera") or {"source": source, "fps": 1}), zones, ignore)
        runtime.fleet.push_config(device, {"camera": camera}, viewer.person.name)
    except (zone_shapes.ShapesRefused, devices.ConfigRefused) as exc:
        log.info("zones for %s refused: %s", device, exc)
        return RedirectResponse(f"{target}?error=polygon", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"{target}?done=zones", status.HTTP_303_SEE_OTHER)
