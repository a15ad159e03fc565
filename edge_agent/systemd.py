"""systemd's notify protocol (sd_notify): READY once started, WATCHDOG while healthy. A datagram to
$NOTIFY_SOCKET; without it (not under systemd) every call does nothing."""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        if path and path.startswith("@"):
            path = "\0" + path[1:]  # abstract namespace
        self._path = path or None

    @property
    def active(self) -> bool:
        return self._path is not None

    def notify(self, state: str) -> None:
        if self._path is None:
            return
        # if systemd misses a message it restarts us on the watchdog: nothing better to do on an error here
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(state.encode(), self._path)

    def watchdog_interval(self) -> float | None:
        """Half of the watchdog timeout systemd asked for, or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        return int(usec) / 2e6 if usec and usec.isdigit() else None
