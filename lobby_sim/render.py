"""Frames of a simulated lobby, for the agent's real counter: a floor, counters with staff, and people queuing."""

from __future__ import annotations

import random

import cv2
import numpy as np
from numpy.typing import NDArray

WIDTH, HEIGHT = 640, 360
# The queue area in front of the windows, in frame pixels.
QUEUE_ZONE = [(30, 150), (610, 150), (610, 350), (30, 350)]
# Behind the counters: staff are there all day and must never be counted.
STAFF_AREA = [(0, 0), (640, 0), (640, 70), (0, 70)]
SLOT_DX, SLOT_DY = 36, 66  # queue slot spacing: people close together, but not touching
BODY_AXES = (9, 20)
HEAD_RADIUS = 7


class LobbyRenderer:
    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._noise = np.random.default_rng(seed)
        self._background = self._draw_background()
        self._colours = [self._colour() for _ in range(200)]
        self._slots = self._queue_slots()

    def _colour(self) -> tuple[int, int, int]:
        # clothes darker or brighter than the floor (grey ~150-175), as real clothes mostly are
        level = self._rng.choice([self._rng.randint(20, 90), self._rng.randint(215, 250)])
        return (level + self._rng.randint(-15, 5), level, level + self._rng.randint(-5, 15))

    def _draw_background(self) -> NDArray[np.uint8]:
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        for y in range(HEIGHT):
            frame[y, :] = 150 + int(25 * y / HEIGHT)
        for x in range(0, WIDTH, 64):
            cv2.line(frame, (x, 70), (x, HEIGHT), (140, 140, 145), 1)
        cv2.rectangle(frame, (0, 40), (WIDTH, 80), (90, 110, 130), -1)  # the counter
        for i in range(4):
            cv2.rectangle(frame, (40 + i * 150, 45), (150 + i * 150, 75), (60, 80, 100), 2)  # windows
        return frame

    def _queue_slots(self) -> list[tuple[int, int]]:
        slots: list[tuple[int, int]] = []
        rows = range(215, 350, SLOT_DY)
        for r, feet_y in enumerate(rows):
            xs = list(range(60, 600, SLOT_DX))
            slots.extend((x, feet_y) for x in (xs if r % 2 == 0 else reversed(xs)))
        return slots

    def _person(self, frame: NDArray[np.uint8], feet: tuple[int, int], colour: tuple[int, int, int]) -> None:
        x, y = feet
        cv2.ellipse(frame, (x, y - BODY_AXES[1]), BODY_AXES, 0, 0, 360, colour, -1)
        cv2.circle(frame, (x, y - 2 * BODY_AXES[1] - HEAD_RADIUS + 2), HEAD_RADIUS, colour, -1)

    @property
    def capacity(self) -> int:
        return len(self._slots)

    def render(self, waiting: int, serving: int, staff: int) -> NDArray[np.uint8]:
        frame = self._background.copy()
        for i in range(staff):
            self._person(frame, (95 + i * 150, 62), (40, 40, 60))
        for i in range(serving):
            self._person(frame, (95 + i * 150, 125), self._colours[(i * 7) % 200])
        for i in range(min(waiting, len(self._slots))):
            self._person(frame, self._slots[i], self._colours[i % 200])
        noise = self._noise.normal(0, 3, frame.shape)
        return np.clip(frame + noise, 0, 255).astype(np.uint8)
