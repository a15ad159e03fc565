"""Is a kiosk, ticket machine, parcel locker or ATM answering? A TCP connect, or an HTTP GET that must not
fail; the value is the answer time in milliseconds."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.sensors.base import Key, SensorConfig, SensorEnv
from lobbywatch.protocol import Reading, SensorKind


class Config(SensorConfig):
    type: Literal["equipment"]
    key: Key
    host: str | None = Field(None, description="TCP check: the machine's address")
    port: int | None = Field(None, ge=1, le=65535, description="TCP check: a port it listens on")
    url: str | None = Field(None, pattern=r"^https?://", description="HTTP check: a status page (2xx/3xx = up)")
    timeout_s: float = Field(3.0, gt=0, le=30)
    slow_ms: float | None = Field(None, description="answers slower than this count as a problem")

    @model_validator(mode="after")
    def _one_check(self) -> Config:
        if (self.url is None) == (self.host is None or self.port is None):
            raise ValueError("give either url, or host and port")
        return self


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
        return [Reading(sensor=self.key, kind=SensorKind.EQUIPMENT, value=None if unreachable else elapsed,
                        unit="ms", ok=problem is None, detail=problem)]


build = Equipment
