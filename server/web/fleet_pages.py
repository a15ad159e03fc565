"""The technicians' pages: the fleet, and one device with its remote actions, a snapshot to draw its zones on,
labels for calibration, and the config push. The snapshot is shown from memory and never stored here."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lobbywatch.i18n import t
from server import fleet as devices
from server.api.deps import RuntimeDep
from server.ingest import dead_letters
from server.runtime import Runtime
from server.web.cards import visible_branches
from server.web.session import SignedIn, Viewer, check_form, render

fleet_pages = APIRouter(include_in_schema=False)
TECHNICIANS = ("administrator", "technician")
MAX_POINTS = 64


def _technician(viewer: SignedIn) -> None:
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


@fleet_pages.get("/lobby/fleet/{device}", response_class=HTMLResponse)
def device_page(
    request: Request,
    runtime: RuntimeDep,
    viewer: Viewer,
    device: str,
    done: str | None = None,
    error: str | None = None,
    snapshot: str | None = None,
) -> HTMLResponse:
    row = _device(runtime, viewer, device)
    version, sections = runtime.fleet.pushed_config(device)
    camera = sections.get("camera") if isinstance(sections.get("camera"), dict) else None
    zones = [z for z in (camera or {}).get("zones", []) if isinstance(z, dict)]
    shown = runtime.fleet.snapshot(device)
    return render(
        request,
        "device.html",
        viewer.locale,
        viewer=viewer,
        row=row,
        pushed=version,
        camera=camera,
        zones=zones,
        done=done,
        error=error,
        waiting_for=snapshot,
        snapshot=shown,
        can_act=viewer.person.role in TECHNICIANS,
        letters=_letters(runtime, {device}),
    )


@fleet_pages.get("/lobby/fleet/{device}/snapshot.jpg")
def snapshot_image(runtime: RuntimeDep, viewer: Viewer, device: str) -> Response:
    _technician(viewer)
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
    _technician(viewer)
    _device(runtime, viewer, device)
    target = f"/lobby/fleet/{device}"
    try:
        sent = runtime.fleet.send_command(device, action, viewer.person.name)
    except devices.FleetError:
        return RedirectResponse(f"{target}?error={action}", status.HTTP_303_SEE_OTHER)
    extra = f"&snapshot={sent}" if action == "snapshot" else ""
    return RedirectResponse(f"{target}?done={action}{extra}", status.HTTP_303_SEE_OTHER)


@fleet_pages.post("/lobby/fleet/{device}/label")
def label(
    runtime: RuntimeDep,
    viewer: Viewer,
    device: str,
    csrf: Annotated[str, Form()],
    snapshot: Annotated[str, Form()],
    zone: Annotated[str, Form()],
    count: Annotated[int, Form()],
) -> Response:
    check_form(viewer, csrf)
    _technician(viewer)
    _device(runtime, viewer, device)
    runtime.fleet.send_command(
        device, "label", viewer.person.name, {"snapshot": snapshot, "zone": zone, "count": count}
    )
    return RedirectResponse(f"/lobby/fleet/{device}?done=label", status.HTTP_303_SEE_OTHER)


@fleet_pages.post("/lobby/fleet/{device}/zones")
def save_zone(
    runtime: RuntimeDep,
    viewer: Viewer,
    device: str,
    csrf: Annotated[str, Form()],
    zone: Annotated[str, Form()],
    polygon: Annotated[str, Form()],
    source: Annotated[str, Form()] = "0",
) -> Response:
    """Put the drawn polygon in the camera section and push it; the device says which version it runs."""
    check_form(viewer, csrf)
    _technician(viewer)
    _device(runtime, viewer, device)
    target = f"/lobby/fleet/{device}"
    try:
        points = [[int(x), int(y)] for x, y in json.loads(polygon)]
    except (ValueError, TypeError):
        points = []
    if not 3 <= len(points) <= MAX_POINTS or not zone.strip():
        return RedirectResponse(f"{target}?error=polygon", status.HTTP_303_SEE_OTHER)
    _, sections = runtime.fleet.pushed_config(device)
    camera: dict[str, Any] = dict(sections.get("camera") or {"source": source, "fps": 1})
    zones = [z for z in camera.get("zones", []) if isinstance(z, dict) and z.get("key") != zone]
    camera["zones"] = [*zones, {"key": zone.strip(), "polygon": points}]
    try:
        runtime.fleet.push_config(device, {"camera": camera}, viewer.person.name)
    except devices.ConfigRefused:
        return RedirectResponse(f"{target}?error=polygon", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"{target}?done=zones", status.HTTP_303_SEE_OTHER)
