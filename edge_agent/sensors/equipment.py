"""Is a kiosk, ticket machine, parcel locker or ATM answering? A TCP connect, or an HTTP GET that must not
fail; the value is the answer time in milliseconds."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from edge_agent.sensors.base import SensorEnv
from lobbywatch.device_config import EquipmentConfig
from lobbywatch.protocol import Reading, SensorKind

Config = EquipmentConfig  # the sensor's settings live in the shared device-config model


class Equipment:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._config = config

    def _probe(self) -> str | None:
        c = self._config
        try:
            if c.url is not None:
                with urllib.request.urlopen(c.url, timeout=c.timeout_s) as response:  # noqa: S310 - http(s) only
                    response.read(1024)
            else:
                assert c.host is not None
                with socket.create_connection((c.host, c.port or 0), timeout=c.timeout_s):
                    pass
        except urllib.error.HTTPError as exc:
            return f"answers HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            return f"not reachable: {getattr(exc, 'reason', exc)}"
        return None

    def read(self) -> list[Reading]:
        started = time.monotonic()
        problem = self._probe()
        elapsed = round((time.monotonic() - started) * 1000, 1)
        if problem is None and self._config.slow_ms is not None and elapsed > self._config.slow_ms:
            problem = f"slow: {elapsed} ms"
        unreachable = problem is not None and not problem.startswith("slow")
        return [
            Reading(
                sensor=self.key,
                kind=SensorKind.EQUIPMENT,
                value=None if unreachable else elapsed,
                unit="ms",
                ok=problem is None,
                detail=problem,
            )
        ]


build = Equipment
