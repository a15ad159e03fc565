"""Enrollment by claim: a technician creates a single-use, expiring token for a branch and a hardware profile;
the device exchanges it, with its hardware serial, for its identity. Registry side only; the broker identity is
made by the caller between `claim` and `complete`, so that a broker that cannot be reached consumes nothing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from lobbywatch.clock import as_utc
from lobbywatch.i18n import catalog, t
from lobbywatch.protocol import InvalidTopic, check_device_id
from server.registry import audit, models
from server.registry.rate_limits import Record

PREFIX = "LW1-"
PROFILES = ("lobby-camera", "call-buttons", "facility-sensors", "combined")
CAMERAS = ("lobby-camera", "combined")
SHORT = {"lobby-camera": "cam", "call-buttons": "btn", "facility-sensors": "env", "combined": "box"}


class EnrollError(ValueError):
    """A refusal a technician can act on: `code` for machines (and the device's translated message)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


def refusal_text(lang: str, error: EnrollError, row: dict[str, str | None]) -> str:
    """The refusal in the technician's language, naming what the row asked for; the English message for a
    refusal the catalogs do not know."""
    key = f"enroll.error.{error.code}"
    if key not in catalog(lang):
        return str(error)
    facts = {name: row.get(name) or "–" for name in CSV_COLUMNS}
    return t(lang, key, **facts, profiles=", ".join(PROFILES))


def new_token() -> str:
    """160 random bits, in base32 groups a person can read out: LW1-ABCD-EFGH-..."""
    raw = base64.b32encode(secrets.token_bytes(20)).decode()
    return PREFIX + "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def uri(server_url: str, token: str, enrollment: models.Enrollment | None = None) -> str:
    """What the QR code holds: the server to ask and the token; `lobbywatch-agent enroll` takes it as is. With the
    enrollment, also the device id, branch and profile it is for, so that a label scanned by anyone says which
    box it belongs on (the agent reads only server and token)."""
    facts = {"server": server_url.rstrip("/"), "token": token}
    if enrollment is not None:
        facts |= {"device": enrollment.device_id, "branch": enrollment.branch_id, "profile": enrollment.profile}
    return "lobbywatch-enroll:?" + urlencode(facts, safe=":/")


CSV_COLUMNS = ("branch", "profile", "device_id", "replaces")


def csv_rows(text: str) -> list[dict[str, str | None]]:
    """A bulk enrollment list: a header naming some of CSV_COLUMNS (branch at least), then one device a line."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    columns = [c.strip() for c in reader.fieldnames or []]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if "branch" not in columns or unknown:
        raise EnrollError(
            "bad_csv",
            f"the first line must name the columns {', '.join(CSV_COLUMNS)} (branch at least); "
            f"got {', '.join(columns) or 'nothing'}",
        )
    return [
        {k.strip(): (v.strip() or None) if isinstance(v, str) else None for k, v in row.items() if k is not None}
        for row in reader
    ]


def token_hash(token: str) -> str:
    normal = re.sub(r"[^A-Z2-7]", "", token.upper().removeprefix(PREFIX))
    return hashlib.sha256(normal.encode()).hexdigest()


def create(
    session: Session,
    *,
    branch: str,
    profile: str,
    by: str,
    now: datetime,
    ttl: timedelta,
    device_id: str | None = None,
    replaces: str | None = None,
    reserved: frozenset[str] = frozenset(),
) -> tuple[str, models.Enrollment]:
    """`reserved`: this deployment's own broker names (server and administrator users, ingest client ids),
    besides those the contract reserves."""
    if session.get(models.Branch, branch) is None:
        raise EnrollError("branch_unknown", f"no branch {branch!r} in the registry", 404)
    if profile not in PROFILES:
        raise EnrollError("profile_unknown", f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if replaces is not None:
        old = session.get(models.Device, replaces)
        if old is None or old.branch_id != branch:
            raise EnrollError("device_unknown", f"no device {replaces!r} in branch {branch!r} to replace", 404)
        if old.revoked_at is not None:
            raise EnrollError("device_revoked", f"{replaces} was revoked already; enroll a new device instead")
    device_id = device_id or _next_id(session, branch, profile)
    try:
        check_device_id(device_id)
    except (InvalidTopic, ValueError) as exc:
        raise EnrollError("device_id_invalid", str(exc)) from None
    if device_id in reserved:
        raise EnrollError(
            "device_id_invalid",
            f"device id {device_id!r} is reserved for the system (the server's "
            "or the broker administrator's identity); choose another",
        )
    if session.get(models.Device, device_id) is not None or _pending(session, device_id, now):
        raise EnrollError("device_id_taken", f"{device_id} exists or is waiting to be enrolled; choose another")
    token = new_token()
    enrollment = models.Enrollment(
        token_hash=token_hash(token),
        branch_id=branch,
        profile=profile,
        device_id=device_id,
        replaces=replaces,
        created_by=by,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(enrollment)
    audit.record(
        session,
        now,
        by,
        "enrollment.create",
        device_id,
        f"branch {branch}, {profile}" + (f", replacing {replaces}" if replaces else ""),
    )
    session.commit()
    return token, enrollment


def _pending(session: Session, device_id: str, now: datetime) -> bool:
    rows = session.scalars(
        select(models.Enrollment).where(models.Enrollment.device_id == device_id, models.Enrollment.used_at.is_(None))
    )
    return any(as_utc(e.expires_at) > now for e in rows)


def _next_id(session: Session, branch: str, profile: str) -> str:
    taken = {d for (d,) in session.execute(select(models.Device.id).where(models.Device.branch_id == branch))}
    taken |= {
        d for (d,) in session.execute(select(models.Enrollment.device_id).where(models.Enrollment.branch_id == branch))
    }
    number = 1
    while f"{branch}-{SHORT[profile]}{number}" in taken:
        number += 1
    return f"{branch}-{SHORT[profile]}{number}"


def claim(session: Session, token: str, serial: str, now: datetime) -> models.Enrollment:
    """The enrollment this token opens, checked; not consumed until `complete`."""
    serial = serial.strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{4,64}", serial):
        raise EnrollError("serial_invalid", "the hardware serial must be 4-64 letters, digits or ._:-")
    enrollment = session.scalars(
        select(models.Enrollment).where(models.Enrollment.token_hash == token_hash(token))
    ).first()
    if enrollment is None:
        raise EnrollError("token_unknown", "this enrollment token is not known: check it was copied whole", 404)
    if enrollment.used_at is not None:
        raise EnrollError(
            "token_used",
            f"this token was used already, at {as_utc(enrollment.used_at):%Y-%m-%d %H:%M} UTC: ask for a new one",
            409,
        )
    if as_utc(enrollment.expires_at) <= now:
        raise EnrollError(
            "token_expired",
            f"this token expired at {as_utc(enrollment.expires_at):%Y-%m-%d %H:%M} UTC: ask for a new one",
            410,
        )
    if session.get(models.Branch, enrollment.branch_id) is None:
        raise EnrollError("branch_unknown", f"branch {enrollment.branch_id!r} is no longer in the registry", 404)
    holder = session.scalars(
        select(models.Device).where(models.Device.serial == serial, models.Device.revoked_at.is_(None))
    ).first()
    if holder is not None and holder.id != enrollment.replaces:
        raise EnrollError(
            "serial_enrolled",
            f"this device (serial {serial}) is enrolled already as {holder.id}: "
            "revoke that first, or enroll it as a replacement",
            409,
        )
    return enrollment


def complete(session: Session, enrollment: models.Enrollment, serial: str, now: datetime) -> models.Device:
    """Consume the token and register the device (taking over the zones and config of the one it replaces)."""
    enrollment.used_at, enrollment.used_serial = now, serial
    device = session.get(models.Device, enrollment.device_id)
    if device is None:
        device = models.Device(id=enrollment.device_id, branch_id=enrollment.branch_id, profile=enrollment.profile)
        session.add(device)
    device.serial, device.enrolled_at, device.revoked_at = serial, now, None
    session.flush()
    if enrollment.replaces:
        old = session.get(models.Device, enrollment.replaces)
        if old is not None:
            for zone in session.scalars(select(models.Zone).where(models.Zone.device_id == old.id)):
                zone.device_id = device.id
            pushed = session.get(models.DeviceConfig, old.id)
            if pushed is not None:
                session.merge(
                    models.DeviceConfig(
                        device_id=device.id,
                        version=pushed.version,
                        sections=dict(pushed.sections),
                        updated_at=now,
                        updated_by=f"replacement of {old.id}",
                    )
                )
            old.revoked_at, old.replaced_by, old.serial = now, device.id, None
    elif enrollment.profile in CAMERAS and session.query(models.Zone).filter_by(device_id=device.id).count() == 0:
        _first_zone(session, device)
    audit.record(
        session,
        now,
        f"device {device.id}",
        "enrollment.claim",
        device.id,
        f"serial {serial}" + (f", replacing {enrollment.replaces}" if enrollment.replaces else ""),
    )
    session.commit()
    return device


def _first_zone(session: Session, device: models.Device) -> None:
    """A new camera counts one queue until a technician draws its zones: `queue`, or `queue2`... where the
    branch has one already (zone keys are the branch's), with the branch's queue rule."""
    zones = list(session.scalars(select(models.Zone).where(models.Zone.branch_id == device.branch_id)))
    keys = {z.key for z in zones}
    key = next(k for k in ("queue", *(f"queue{n}" for n in range(2, 100))) if k not in keys)
    like = zones[0] if zones else None
    session.add(
        models.Zone(
            device_id=device.id,
            branch_id=device.branch_id,
            key=key,
            name=key,
            queue_threshold=like.queue_threshold if like else 8,
            queue_for_s=like.queue_for_s if like else 300,
            queue_clear_below=like.queue_clear_below if like else 5,
            queue_clear_for_s=like.queue_clear_for_s if like else 120,
        )
    )
    session.flush()


def calibrations(session: Session, device_id: str) -> dict[str, dict[str, Any]]:
    """The counting calibrations kept for the device's zones, by zone key (see profiles.with_calibrations)."""
    zones = session.scalars(
        select(models.Zone).where(models.Zone.device_id == device_id, models.Zone.calibration.is_not(None))
    )
    return {zone.key: dict(zone.calibration or {}) for zone in zones}


def revoke(session: Session, device_id: str, by: str, now: datetime, reason: str) -> models.Device:
    device = session.get(models.Device, device_id)
    if device is None:
        raise EnrollError("device_unknown", f"no device {device_id!r}", 404)
    device.revoked_at, device.serial, device.online = now, None, False
    audit.record(session, now, by, "device.revoke", device_id, reason)
    session.commit()
    return device


@dataclass(frozen=True)
class Attempts:
    """At most `limit` enrollment attempts per address in any `window_s` (tokens are not to be guessed). Pure
    policy on the record the registry keeps (`server.registry.rate_limits`), shared by every API process."""

    limit: int = 10
    window_s: float = 60.0

    @staticmethod
    def key(address: str) -> str:
        return f"enroll:address:{address}"

    def allow(self, record: Record | None, now: float) -> tuple[bool, Record]:
        """Whether one more attempt is allowed now, and the record after it (counted only when allowed)."""
        recent = [t for t in (record.times if record else []) if now - t < self.window_s]
        if len(recent) >= self.limit:
            return False, Record(recent)
        return True, Record([*recent, now])
