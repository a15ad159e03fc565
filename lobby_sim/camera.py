"""A camera that films a simulated lobby: the agent reads it like any other frame source."""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

from lobby_sim.lobby import Lobby
from lobby_sim.render import LobbyRenderer


class SimulatedCamera:
    def __init__(self, lobby: Lobby, renderer: LobbyRenderer, lock: threading.Lock, staff: int = 3) -> None:
        self._lobby = lobby
        self._renderer = renderer
        self._lock = lock
        self._staff = staff

    def read(self) -> NDArray[np.uint8] | None:
        with self._lock:
            waiting, serving = self._lobby.waiting, self._lobby.serving
        return self._renderer.render(waiting, serving, self._staff)

    def close(self) -> None:
        return None
