"""/api/v1/fleet and the remote actions on a device (technicians and administrators)."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from server import fleet as devices
from server.api.deps import CallerDep, FleetDep, RuntimeDep, roles
from server.ingest import dead_letters

fleet_api = APIRouter(prefix="/api/v1")
TECHNICIANS = roles("administrator", "technician")


class CommandIn(BaseModel):
    action: str = Field(description="identify, restart, resend, snapshot or label")
    args: dict[str, object] = Field(default_factory=dict, description="label: snapshot, zone, count")


class ConfigIn(BaseModel):
    sections: dict[str, Any] = Field(description="camera, buttons, sensors, reporting, outbox or locale")


@fleet_api.get("/fleet", summary="Every device you can see, those that need attention first")
def fleet_list(
    runtime: RuntimeDep,
    caller: CallerDep,
    branch: Annotated[str | None, Query()] = None,
    attention: Annotated[bool, Query(description="only devices that need attention")] = False,
) -> list[dict[str, Any]]:
    visible = {b for b in runtime.directory.branches if caller.sees(runtime, b) and branch in (None, b)}
    return [asdict(r) for r in runtime.fleet.rows(visible) if r.attention or not attention]


@fleet_api.post("/devices/{device_id}/commands", dependencies=[TECHNICIANS], summary="A remote action")
def command(device_id: str, body: CommandIn, fleet: FleetDep, caller: CallerDep) -> dict[str, str]:
    try:
        sent = fleet.send_command(device_id, body.action, caller.acting_as("api"), body.args)
    except devices.FleetError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"command": sent}


@fleet_api.post("/devices/{device_id}/config", dependencies=[TECHNICIANS], summary="Push config sections")
def config(device_id: str, body: ConfigIn, fleet: FleetDep, caller: CallerDep) -> dict[str, int]:
    refused = set(body.sections) - devices.REMOTE_SECTIONS
    if refused:
        raise HTTPException(
            422,
            f"{', '.join(sorted(refused))} cannot be pushed (allowed: {', '.join(sorted(devices.REMOTE_SECTIONS))})",
        )
    try:
        return {"version": fleet.push_config(device_id, body.sections, caller.acting_as("api"))}
    except devices.ConfigRefused as exc:
        raise HTTPException(422, f"the device would refuse this config: {exc}") from None
    except devices.FleetError as exc:
        raise HTTPException(404, str(exc)) from None


@fleet_api.get(
    "/devices/{device_id}/snapshot.jpg",
    dependencies=[TECHNICIANS],
    response_class=Response,
    summary="The snapshot the device sent last (minutes at most; never stored)",
)
def snapshot(device_id: str, fleet: FleetDep) -> Response:
    found = fleet.snapshot(device_id)
    if found is None:
        raise HTTPException(404, f"no snapshot from {device_id}: ask for one (action snapshot)")
    return Response(found.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@fleet_api.get(
    "/dead-letters",
    dependencies=[TECHNICIANS],
    summary="Messages set aside instead of stored (refused by validation or storage), newest first",
)
def dead_letter_list(
    runtime: RuntimeDep,
    caller: CallerDep,
    device: Annotated[str | None, Query(description="only this device's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    mine = (
        None
        if caller.person is None
        else {d.id for d in runtime.directory.devices.values() if caller.sees(runtime, d.branch_id)}
    )
    with runtime.sessions() as session:
        return [letter_public(x) for x in dead_letters.recent(session, limit, device, mine)]


def letter_public(letter: Any) -> dict[str, Any]:
    """A dead letter as JSON: the payload as text when it is text, else base64."""
    try:
        payload, encoding = letter.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(letter.payload).decode(), "base64"
    return {
        "id": letter.id,
        "at": letter.at,
        "device": letter.device_id,
        "topic": letter.topic,
        "cause": letter.cause,
        "detail": letter.detail,
        "payload": payload,
        "payload_encoding": encoding,
        "size": len(letter.payload),
    }
