"""Enrollment from the technicians' pages: a single-use token for one device shown as a printable QR label, and a
CSV of many devices imported with progress, a label for each. Tokens are secrets until used: shown once, to
administrators and technicians only, never cached."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from lobbywatch.i18n import t
from server.api.deps import RuntimeDep
from server.provisioning import enrollment as enroll
from server.registry import models
from server.runtime import Runtime
from server.web.cards import local_time, visible_branches
from server.web.fleet_pages import require_technician
from server.web.session import SignedIn, Viewer, check_form, render, templates

enroll_pages = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
MAX_ROWS = 50  # a request's share of a bulk import: the page sends the file in parts and shows the progress
SECRET = {"Cache-Control": "no-store"}


class RowsIn(BaseModel):
    csrf: str = Field(max_length=200)
    text: str = Field(max_length=200_000, description="the CSV's header line and up to MAX_ROWS of its lines")
    first: int = Field(1, ge=1, description="the number of the first of these rows in the whole file")


def _create(runtime: Runtime, viewer: SignedIn, row: dict[str, str | None]) -> dict[str, Any]:
    """One enrollment, as a label's facts; raises EnrollError for a refusal."""
    with runtime.sessions() as session:  # technicians and administrators work across the whole network
        token, made = enroll.create(
            session,
            branch=row.get("branch") or "",
            profile=row.get("profile") or "lobby-camera",
            by=viewer.person.name,
            now=runtime.clock.now(),
            ttl=timedelta(hours=runtime.settings.enroll_ttl_h),
            device_id=row.get("device_id"),
            replaces=row.get("replaces"),
            reserved=runtime.settings.broker_names(),
        )
        return _label(runtime, viewer.locale, token, made)


def _label(runtime: Runtime, locale: str, token: str, made: models.Enrollment) -> dict[str, Any]:
    entry = runtime.directory.branches[made.branch_id]
    link = enroll.uri(runtime.settings.public_url, token, made)
    return {
        "device_id": made.device_id,
        "branch": made.branch_id,
        "branch_name": entry.name,
        "profile": made.profile,
        "profile_name": t(locale, f"page.fleet.profile.{made.profile}"),
        "replaces": made.replaces,
        "expires": local_time(made.expires_at, entry, runtime),
        "expires_at": made.expires_at.isoformat(),
        "token": token,
        "uri": link,
        # the QR code drawn as SVG paths: sharp in print, and nothing for the browser to fetch
        "qr_svg": segno.make(link, error="m").svg_inline(scale=4, border=4, title=made.device_id),
    }


@enroll_pages.get("/lobby/enroll", response_class=HTMLResponse)
def enroll_page(request: Request, runtime: RuntimeDep, viewer: Viewer) -> HTMLResponse:
    require_technician(viewer)
    return _form(request, runtime, viewer)


def _form(
    request: Request, runtime: Runtime, viewer: SignedIn, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    branches = visible_branches(runtime, viewer.person)
    devices = sorted(d.id for d in runtime.directory.devices.values() if d.branch_id in branches)
    return render(
        request,
        "enroll.html",
        viewer.locale,
        status_code=status_code,
        viewer=viewer,
        branches=branches,
        profiles=enroll.PROFILES,
        devices=devices,
        error=error,
        max_rows=MAX_ROWS,
        columns=",".join(enroll.CSV_COLUMNS),
    )


@enroll_pages.post("/lobby/enroll", response_class=HTMLResponse)
def enroll_one(
    request: Request,
    runtime: RuntimeDep,
    viewer: Viewer,
    csrf: Annotated[str, Form()],
    branch: Annotated[str, Form()],
    profile: Annotated[str, Form()] = "lobby-camera",
    device_id: Annotated[str, Form()] = "",
    replaces: Annotated[str, Form()] = "",
) -> HTMLResponse:
    check_form(viewer, csrf)
    require_technician(viewer)
    row = {"branch": branch, "profile": profile, "device_id": device_id or None, "replaces": replaces or None}
    try:
        label = _create(runtime, viewer, row)
    except enroll.EnrollError as exc:
        return _form(request, runtime, viewer, enroll.refusal_text(viewer.locale, exc, row), 400)
    log.info("%s created an enrollment for %s from the web page", viewer.person.login, label["device_id"])
    return render(request, "enroll_label.html", viewer.locale, headers=SECRET, viewer=viewer, labels=[label])


@enroll_pages.post("/lobby/enroll/rows")
def enroll_rows(request: Request, runtime: RuntimeDep, viewer: Viewer, body: RowsIn) -> JSONResponse:
    """A part of a bulk import: one result per row, with the label to print for each row that was made."""
    check_form(viewer, body.csrf)
    require_technician(viewer)
    try:
        rows = enroll.csv_rows(body.text)
    except enroll.EnrollError as exc:
        return JSONResponse({"error": enroll.refusal_text(viewer.locale, exc, {})}, 400, headers=SECRET)
    if len(rows) > MAX_ROWS:
        return JSONResponse({"error": f"at most {MAX_ROWS} rows a request"}, 413, headers=SECRET)
    label = templates.get_template("_label.html")

    def tr(key: str, **params: object) -> str:
        return t(viewer.locale, key, **params)

    results: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=body.first):
        try:
            made = _create(runtime, viewer, row)
        except enroll.EnrollError as exc:
            results.append({"line": number, "ok": False, "why": enroll.refusal_text(viewer.locale, exc, row)})
            continue
        results.append({"line": number, "ok": True, **made, "label": label.render(tr=tr, label=made)})
    made_count = sum(1 for r in results if r["ok"])
    log.info("%s imported %d enrollments (%d refused)", viewer.person.login, made_count, len(results) - made_count)
    return JSONResponse({"results": results}, headers=SECRET)
