"""Enrollment and revocation over HTTP: technicians create enrollments; devices claim them (no login: the
single-use token is the permission, and attempts are rate-limited per address)."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lobbywatch.protocol import REMOTE_SECTIONS
from server.api.deps import CallerDep, RuntimeDep, roles
from server.provisioning import enrollment as enroll
from server.provisioning.broker_admin import BrokerRefused, BrokerUnreachable
from server.provisioning.profiles import BrokerPublic, device_config, with_calibrations
from server.registry import models, rate_limits
from server.runtime import Runtime

log = logging.getLogger(__name__)
provisioning = APIRouter(prefix="/api/v1")


ATTEMPTS = enroll.Attempts()


def _allowed(runtime: Runtime, address: str) -> bool:
    """One more enrollment attempt from this address, counted in the registry: one limit for every process."""
    key = ATTEMPTS.key(address)
    now = runtime.clock.now().timestamp()
    with runtime.sessions() as session:
        allowed, record = ATTEMPTS.allow(rate_limits.load(session, [key], lock=True).get(key), now)
        rate_limits.save(session, {key: record}, now)
        session.commit()
    return allowed


class EnrollmentIn(BaseModel):
    branch: str
    profile: str = "lobby-camera"
    device_id: str | None = Field(None, description="default: <branch>-<cam|btn|env|box><n>")
    replaces: str | None = Field(None, description="a broken device of the branch this one takes over from")
    by: str = Field(min_length=1, max_length=200, description="the technician, for the audit log")


class ClaimIn(BaseModel):
    token: Annotated[str, Field(min_length=8, max_length=200)]
    serial: Annotated[str, Field(min_length=1, max_length=64)]
    agent_version: str | None = Field(None, max_length=32)


class RevokeIn(BaseModel):
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500)


def refusal(error: enroll.EnrollError) -> JSONResponse:
    return JSONResponse({"code": error.code, "detail": str(error)}, status_code=error.status)


def _admin_or_refuse(runtime: Runtime) -> enroll.EnrollError | None:
    if runtime.broker_admin is None:
        return enroll.EnrollError(
            "provisioning_off",
            "this server has no broker administrator configured (LOBBYWATCH_MQTT_ADMIN_USERNAME)",
            503,
        )
    return None


TECHNICIANS = roles("administrator", "technician")


@provisioning.post("/enrollments", dependencies=[TECHNICIANS], summary="A single-use token for a new device")
def create_enrollment(body: EnrollmentIn, runtime: RuntimeDep, caller: CallerDep) -> Any:
    now = runtime.clock.now()
    body = body.model_copy(update={"by": caller.acting_as(body.by)})
    try:
        with runtime.sessions() as session:
            token, made = enroll.create(
                session,
                branch=body.branch,
                profile=body.profile,
                by=body.by,
                now=now,
                ttl=timedelta(hours=runtime.settings.enroll_ttl_h),
                device_id=body.device_id,
                replaces=body.replaces,
                reserved=runtime.settings.broker_names(),
            )
    except enroll.EnrollError as exc:
        return refusal(exc)
    return {
        "token": token,
        "device_id": made.device_id,
        "branch": made.branch_id,
        "profile": made.profile,
        "replaces": made.replaces,
        "expires_at": made.expires_at.isoformat(),
        "uri": enroll.uri(runtime.settings.public_url, token, made),
    }


@provisioning.post("/enroll", summary="A device exchanges its token and hardware serial for its identity")
def claim(body: ClaimIn, request: Request, runtime: RuntimeDep) -> Any:
    address = request.client.host if request.client else "?"
    if not _allowed(runtime, address):
        log.warning("enrollment refused for %s: too many attempts", address)
        return refusal(
            enroll.EnrollError("rate_limited", "too many enrollment attempts from this address: wait a minute", 429)
        )
    now = runtime.clock.now()
    try:
        off = _admin_or_refuse(runtime)
        if off is not None:
            raise off
        assert runtime.broker_admin is not None
        with runtime.sessions() as session:
            pending = enroll.claim(session, body.token, body.serial, now)
            device_id, replaces = pending.device_id, pending.replaces
            password = secrets.token_urlsafe(24)
            try:  # the broker first: if it cannot be reached, the token is not used up
                runtime.broker_admin.create_device(device_id, password)
                if replaces:
                    runtime.broker_admin.revoke_device(replaces)
            except BrokerUnreachable as exc:
                raise enroll.EnrollError(
                    "broker_unreachable",
                    f"the MQTT broker cannot be reached ({exc}); the token is still good: try again later",
                    503,
                ) from None
            except BrokerRefused as exc:
                raise enroll.EnrollError("broker_refused", f"the MQTT broker refused: {exc}", 502) from None
            device = enroll.complete(session, pending, body.serial, now)
            branch = session.get(models.Branch, device.branch_id)
            pushed = session.get(models.DeviceConfig, device.id)
            zones = [z.key for z in session.query(models.Zone).filter_by(device_id=device.id)]
            carried = enroll.calibrations(session, device.id)  # a replacement's, from the camera it replaces
            locale = branch.locale if branch else "zh-CN"
            profile = device.profile
    except enroll.EnrollError as exc:
        log.warning("enrollment refused (%s) for serial %s from %s: %s", exc.code, body.serial, address, exc)
        return refusal(exc)
    runtime.registry_changed()
    settings = runtime.settings
    ca = settings.broker_ca_file.read_text(encoding="ascii") if settings.broker_ca_file else None
    config = device_config(
        device_id,
        profile,
        BrokerPublic(settings.broker_public_host, settings.broker_public_port, settings.broker_public_tls),
        locale,
        zones,
        dict(pushed.sections) if pushed else None,
    )
    with runtime.sessions() as session:  # what a technician's page edits and pushes later (version 0: not pushed)
        if session.get(models.DeviceConfig, device_id) is None:
            session.add(
                models.DeviceConfig(
                    device_id=device_id,
                    version=0,
                    updated_at=now,
                    updated_by="enrollment",
                    sections={k: v for k, v in config.items() if k in REMOTE_SECTIONS},
                )
            )
            session.commit()
    config = with_calibrations(config, carried)
    log.info("device %s enrolled (serial %s)%s", device_id, body.serial, f", replacing {replaces}" if replaces else "")
    return {"device_id": device_id, "username": device_id, "password": password, "ca_pem": ca, "config": config}


@provisioning.post(
    "/devices/{device_id}/revoke",
    dependencies=[TECHNICIANS],
    summary="Cut a device off at the broker at once; its history stays",
)
def revoke(device_id: str, body: RevokeIn, runtime: RuntimeDep, caller: CallerDep) -> Any:
    body = body.model_copy(update={"by": caller.acting_as(body.by)})
    try:
        off = _admin_or_refuse(runtime)
        if off is not None:
            raise off
        assert runtime.broker_admin is not None
        with runtime.sessions() as session:  # only a device of the registry: never another broker client
            if session.get(models.Device, device_id) is None:
                raise enroll.EnrollError("device_unknown", f"no device {device_id!r}", 404)
        try:
            runtime.broker_admin.revoke_device(device_id)
        except BrokerUnreachable as exc:
            raise enroll.EnrollError(
                "broker_unreachable", f"the MQTT broker cannot be reached ({exc}); nothing was revoked", 503
            ) from None
        except BrokerRefused as exc:
            raise enroll.EnrollError("broker_refused", f"the MQTT broker refused: {exc}", 409) from None
        with runtime.sessions() as session:
            enroll.revoke(session, device_id, body.by, runtime.clock.now(), body.reason)
    except enroll.EnrollError as exc:
        return refusal(exc)
    runtime.registry_changed()
    return {"device_id": device_id, "revoked": True}
