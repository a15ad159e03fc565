"""A calibration snapshot a technician asked for: checked, and kept in memory for the fleet page only."""

from __future__ import annotations

import base64

from lobbywatch.protocol import Snapshot
from server.ingest.rejects import Rejects
from server.live import LiveState, SnapshotNow


def take_snapshot(rejects: Rejects, live: LiveState, device: str, message: Snapshot, monotonic: float) -> None:
    try:
        jpeg = base64.b64decode(message.jpeg_b64, validate=True)
    except ValueError:
        rejects.refuse("invalid", device, "snapshot is not base64")
        return
    if not jpeg.startswith(b"\xff\xd8"):
        rejects.refuse("invalid", device, "snapshot is not a JPEG image")
        return
    live.set_snapshot(device, SnapshotNow(message.id, jpeg, message.width, message.height, message.ts, monotonic))
