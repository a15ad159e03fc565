"""The server's commands to a device: one handler per action, each answering with a `Reply` that the agent sends
back as a command reply. `HANDLERS` is the table; an action not in it is refused by the agent, by name.

Handlers reach the agent only through `Device`, the few things a command may touch.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from edge_agent import __version__
from edge_agent.config import DeviceConfig, counting_zone
from edge_agent.counting.calibration import CalibrationError
from edge_agent.counting.dataset import DatasetError
from edge_agent.head_fits import HEAD_FITS
from edge_agent.remote_calibration import MIN_LABELS, LabelError, add_label, fit, save_snapshot
from edge_agent.transport.link import MqttLink
from edge_agent.transport.outbox import Outbox
from lobbywatch.clock import Clock
from lobbywatch.protocol import (
    MAX_SNAPSHOT_BYTES,
    Calibration,
    Channel,
    Command,
    InvalidPayload,
    ResendArgs,
    Snapshot,
    encode,
    parse_payload,
)

log = logging.getLogger(__name__)
Frame = NDArray[np.uint8]
IDENTIFY_S = 30  # how long the LEDs blink when a technician asks which box this is


@dataclass(frozen=True)
class Reply:
    ok: bool
    detail: str | None = None  # in English, for logs and older servers
    code: str | None = None  # the outcome, which the server's pages translate
    params: dict[str, str | int | float] = field(default_factory=dict)
    resent: int = 0
    unavailable: list[list[int]] = field(default_factory=list)
    calibration: Calibration | None = None


class Device(Protocol):
    """What a command may touch of the agent."""

    config: DeviceConfig
    outbox: Outbox
    link: MqttLink

    @property
    def clock(self) -> Clock: ...

    @property
    def last_frame(self) -> Frame | None: ...

    @property
    def button_keys(self) -> list[str]: ...

    def indicate(self, button: str, help_coming: bool) -> bool: ...

    def blink_all(self, seconds: float) -> int: ...

    def request_restart(self) -> None: ...


def resend(device: Device, command: Command) -> Reply:
    """Queue again what the server is missing; say which of it this outbox no longer has."""
    try:
        args = ResendArgs.model_validate(command.args)
    except ValidationError as exc:
        return Reply(ok=False, detail=f"bad resend arguments: {exc.errors(include_url=False)[0]}", code="bad_args")
    if args.stream != device.outbox.stream:
        # the outbox was re-created (new SD card): that stream's history is gone for good
        return Reply(
            ok=False,
            detail=f"stream {args.stream} is gone; this outbox is {device.outbox.stream}",
            code="stream_gone",
            unavailable=args.ranges,
        )
    resent, unavailable = 0, []
    for first, last in args.ranges:
        count, gone = device.outbox.requeue(first, last)
        resent += count
        unavailable.extend(gone)
    device.link.rewind()
    log.info("resending %d messages on request %s; %d ranges no longer kept", resent, command.id, len(unavailable))
    return Reply(ok=True, code="resent", params={"resent": resent}, resent=resent, unavailable=unavailable)


def indicate(device: Device, command: Command) -> Reply:
    button, state = command.args.get("button"), command.args.get("state")
    if button not in device.button_keys or state not in ("help_coming", "off"):
        return Reply(
            ok=False,
            detail=f"indicate needs a known button and state help_coming|off, got {button!r}, {state!r}",
            code="bad_args",
        )
    assert isinstance(button, str)
    shown = device.indicate(button, help_coming=state == "help_coming")
    if not shown:
        return Reply(ok=False, detail=f"button {button} has no LED", code="no_led")
    return Reply(ok=True)


def identify(device: Device, command: Command) -> Reply:
    """Blink every LED for a while, so that a technician finds this box among others."""
    shown = device.blink_all(IDENTIFY_S)
    log.warning("identify requested (%s): blinking %d LEDs for %d s", command.id, shown, IDENTIFY_S)
    if not shown:
        return Reply(ok=False, detail="this device has no LED", code="no_led")
    return Reply(
        ok=True,
        detail=f"blinking {shown} LEDs for {IDENTIFY_S} s",
        code="blinking",
        params={"leds": shown, "seconds": IDENTIFY_S},
    )


def restart(device: Device, command: Command) -> Reply:
    """Stop; systemd starts the agent again (Restart=always)."""
    log.warning("restart requested (%s)", command.id)
    device.request_restart()
    return Reply(ok=True, detail="restarting", code="restarting")


def snapshot(device: Device, command: Command) -> Reply:
    """The camera's view, for a technician calibrating: the only way an image leaves the device."""
    frame = device.last_frame
    if device.config.camera is None or frame is None:
        return Reply(ok=False, detail="no camera image to send (no camera, or none read yet)", code="no_image")
    if not re.fullmatch(r"[a-z0-9-]{1,64}", command.id):
        return Reply(ok=False, detail="a snapshot id must be a-z, 0-9 and '-'", code="bad_args")
    save_snapshot(device.config.data_dir, command.id, frame)
    jpeg = jpeg_within(frame, MAX_SNAPSHOT_BYTES * 3 // 4)
    height, width = frame.shape[:2]
    image = Snapshot(
        id=command.id,
        ts=device.clock.now(),
        width=int(width),
        height=int(height),
        jpeg_b64=base64.b64encode(jpeg).decode(),
    )
    device.link.send_direct(Channel.SNAPSHOT, encode(image))
    log.info("sent snapshot %s (%d bytes) on request", command.id, len(jpeg))
    return Reply(
        ok=True,
        detail=f"snapshot {width}x{height}, {len(jpeg)} bytes",
        code="snapshot_sent",
        params={"width": int(width), "height": int(height)},
    )


def label(device: Device, command: Command) -> Reply:
    """A technician's count of a snapshot: one more label, and the zone calibrated once there are enough."""
    camera = device.config.camera
    zone_key, shot, count = command.args.get("zone"), command.args.get("snapshot"), command.args.get("count")
    zones = {z.key: z for z in camera.zones} if camera else {}
    if zone_key not in zones or not isinstance(shot, str) or not isinstance(count, int):
        return Reply(
            ok=False,
            detail=f"label needs a known zone, a snapshot id and a count; got {zone_key!r}, {shot!r}, {count!r}",
            code="bad_args",
        )
    zone = counting_zone(zones[str(zone_key)], camera.ignore if camera else ())
    try:
        labels = add_label(device.config.data_dir, zone, shot, count, command.args.get("points"))
        fitted = fit(device.config.data_dir, zone)
    except (LabelError, DatasetError, CalibrationError) as exc:  # why, as a catalog key the page words
        params: dict[str, str | int | float] = {k: str(v)[:200] for k, v in exc.params.items()}
        return Reply(ok=False, detail=str(exc)[:1000], code=exc.key, params=params)
    if fitted is not None:
        HEAD_FITS.submit(device.config.data_dir, zone)  # from the clicked heads, when there are enough
    if fitted is None:
        return Reply(
            ok=True,
            detail=f"{labels} labels; {MIN_LABELS} needed to calibrate",
            code="labelled",
            params={"labels": labels, "needed": MIN_LABELS},
        )
    return Reply(
        ok=True,
        detail=f"{labels} labels; calibrated, residual {fitted.model.residual_sd:.2f} people",
        code="calibrated",
        params={"labels": labels, "residual": round(fitted.model.residual_sd, 2)},
        calibration=Calibration.model_validate(asdict(fitted)),
    )


HANDLERS: dict[str, Callable[[Device, Command], Reply]] = {
    "resend": resend,
    "indicate": indicate,
    "identify": identify,
    "restart": restart,
    "snapshot": snapshot,
    "label": label,
}


def carry_out(device: Device, payload: bytes) -> tuple[str, Reply] | None:
    """A command from the server, carried out: its id and the reply; None when it could not be read (logged:
    with no id there is nobody to answer)."""
    try:
        command = parse_payload(Channel.CMD, payload)
    except InvalidPayload as exc:
        log.error("refused a command from the server: %s", exc)
        return None
    assert isinstance(command, Command)
    handler = HANDLERS.get(command.action)
    if handler is None:
        return command.id, Reply(
            ok=False,
            detail=f"agent {__version__} does not support {command.action!r}",
            code="unsupported",
            params={"version": __version__},
        )
    return command.id, handler(device, command)


def jpeg_within(frame: Frame, limit: int) -> bytes:
    """The frame as a JPEG of at most `limit` bytes: lower quality first, then a smaller image."""
    image = frame
    while True:
        for quality in (80, 65, 50, 35):
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= limit:
                return bytes(encoded.tobytes())
        size = (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4)
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
