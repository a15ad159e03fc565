"""The agent's own health: CPU and memory of this process from /proc, and whether the clock is NTP-synced."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class HealthSample:
    cpu_pct: float
    mem_rss_mb: float
    clock_synced: bool | None


class HealthProbe:
    def __init__(self, proc_root: Path = Path("/proc"), run_root: Path = Path("/run")) -> None:
        self._proc = proc_root
        self._run = run_root
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._last: tuple[float, float] | None = None  # (cpu seconds, monotonic)

    def _cpu_seconds(self) -> float:
        fields = (self._proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def _rss_mb(self) -> float:
        pages = int((self._proc / "self" / "statm").read_text().split()[1])
        return pages * self._page / 2**20

    def clock_synced(self) -> bool | None:
        # systemd-timesyncd creates this file once it has synchronised; without timesyncd we cannot tell
        timesync = self._run / "systemd" / "timesync"
        if not timesync.is_dir():
            return None
        return (timesync / "synchronized").exists()

    def sample(self, monotonic: float) -> HealthSample:
        cpu = self._cpu_seconds()
        pct = 0.0
        if self._last is not None and monotonic > self._last[1]:
            pct = 100.0 * (cpu - self._last[0]) / (monotonic - self._last[1])
        self._last = (cpu, monotonic)
        return HealthSample(
            cpu_pct=round(max(pct, 0.0), 1), mem_rss_mb=round(self._rss_mb(), 1), clock_synced=self.clock_synced()
        )
