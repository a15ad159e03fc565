"""The device's clock: synchronised by NTP, and how far off. A Raspberry Pi has no battery clock: after a power
cut it starts from the last saved time until NTP answers, and every timestamp it sends is wrong until then.

Read from the kernel with `adjtimex()` (read-only, no privileges): its state says whether the clock is
synchronised (`TIME_ERROR` = not), `offset` is what the kernel is still correcting, `maxerror` its error bound.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.sensors.base import SensorEnv
from lobbywatch.device_config import ClockConfig
from lobbywatch.protocol import Reading, SensorKind

TIME_ERROR = 5
STA_NANO = 0x2000


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> on 64-bit Linux (x86_64 and aarch64 alike)
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class KernelClock:
    synchronised: bool
    offset_ms: float
    max_error_ms: float


def adjtimex() -> KernelClock:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    timex = _Timex()  # modes = 0: read only
    state = libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        raise OSError(ctypes.get_errno(), "adjtimex failed")
    divisor = 1e6 if timex.status & STA_NANO else 1e3
    return KernelClock(state != TIME_ERROR, timex.offset / divisor, timex.maxerror / 1e3)


Config = ClockConfig  # the sensor's settings live in the shared device-config model


class Clock:
    def __init__(self, config: Config, env: SensorEnv, read: Callable[[], KernelClock] = adjtimex) -> None:
        self.key = config.key
        self._max = config.max_offset_ms
        self._read = read

    def read(self) -> list[Reading]:
        try:
            clock = self._read()
        except OSError as exc:
            return [
                Reading(
                    sensor=self.key,
                    kind=SensorKind.CLOCK,
                    value=None,
                    unit="ms",
                    ok=False,
                    detail=f"cannot ask the kernel: {exc}",
                )
            ]
        problem = None
        if not clock.synchronised:
            problem = f"not synchronised by NTP (error up to {clock.max_error_ms:.0f} ms): check the network's NTP"
        elif abs(clock.offset_ms) > self._max:
            problem = f"{clock.offset_ms:.0f} ms off"
        return [
            Reading(
                sensor=self.key,
                kind=SensorKind.CLOCK,
                value=round(clock.offset_ms, 3),
                unit="ms",
                ok=problem is None,
                detail=problem,
            )
        ]


build = Clock
