"""A camera that films a simulated lobby: the agent reads it like any other frame source."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.calibration import CalibrationStore, calibrate
from edge_agent.counting.zones import Zone
from lobby_sim.lobby import Lobby
from lobby_sim.render import LobbyRenderer


class SimulatedCamera:
    def __init__(self, lobby: Lobby, renderer: LobbyRenderer, lock: threading.Lock, staff: int = 3) -> None:
        self._lobby = lobby
        self._renderer = renderer
        self._lock = lock
        self._staff = staff
        self.covered = False  # a hand, a cloth or tape over the lens

    def read(self) -> NDArray[np.uint8] | None:
        with self._lock:
            waiting, serving = self._lobby.waiting, self._lobby.serving
        frame = self._renderer.render(waiting, serving, self._staff)
        if self.covered:
            return np.full_like(frame, 96)
        return frame

    def close(self) -> None:
        return None


def calibrate_simulated(data_dir: Path, renderer: LobbyRenderer, zone: Zone, seed: int = 0) -> None:
    """What a technician does at installation, done on the simulated lobby: snapshots at quiet and busy
    moments, each labelled with its true count, fitted and stored in the device's calibration folder."""
    rng = random.Random(seed)
    counts = [0, 1, 2, 3, 5, 8, 12, 16, 20, 25, 30, 35, *(rng.randint(0, 35) for _ in range(18))]
    frames = [renderer.render(n, rng.randint(0, 3), 3) for n in counts]
    empty = [renderer.render(0, 0, 3) for _ in range(5)]
    calibration, background = calibrate(zone, frames, counts, empty)
    CalibrationStore(data_dir).save(calibration, background)
