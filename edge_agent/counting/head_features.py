"""What a head looks like to the head counter, per 4 x 4 pixel cell of the frame: brightness, colour, gradients in
six orientations, and dark-or-light blobs at three sizes; each cell is described with its 5 x 5 neighbourhood
(20 x 20 pixels, a head and its shoulders near the camera, a few heads far from it) and its height in the frame.

Seen from above, a head is a round blob (dark hair, mostly) ringed by shoulders; what it looks like at each place
of one camera's view is learnt from the heads a technician clicked (`heads.py`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

CELL = 4  # pixels
REACH = 2  # cells either side: the neighbourhood is (2 * REACH + 1) squared cells
ORIENTATIONS = 6
BLOB_SIGMAS = (2.0, 4.0, 8.0)  # pixels: centre against surround, for heads far away to near
MAPS = 3 + ORIENTATIONS + len(BLOB_SIGMAS)
WIDTH = MAPS * (2 * REACH + 1) ** 2 + 1  # features per cell

Cells = NDArray[np.float32]


def cell_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of cells for a frame of (height, width)."""
    return shape[0] // CELL, shape[1] // CELL


def cell_maps(frame: NDArray[np.uint8]) -> Cells:
    """rows x columns x MAPS: each map averaged over each cell."""
    colour = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    lab = cv2.cvtColor(colour, cv2.COLOR_BGR2LAB).astype(np.float32) / 255
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.sqrt(gx * gx + gy * gy)
    angle = (np.arctan2(gy, gx) % np.pi) / np.pi * ORIENTATIONS
    low = np.floor(angle).astype(np.int32) % ORIENTATIONS
    share = angle - np.floor(angle)  # each gradient split between its two nearest orientations
    maps: list[NDArray[np.floating[Any]]] = [grey, lab[..., 1], lab[..., 2]]
    maps += [
        magnitude * ((low == b) * (1 - share) + ((low + 1) % ORIENTATIONS == b) * share) for b in range(ORIENTATIONS)
    ]
    maps += [cv2.GaussianBlur(grey, (0, 0), s) - cv2.GaussianBlur(grey, (0, 0), 2 * s) for s in BLOB_SIGMAS]
    rows, columns = cell_grid(grey.shape[:2])
    return np.stack([cv2.resize(m, (columns, rows), interpolation=cv2.INTER_AREA) for m in maps], axis=-1)


def cell_features(maps: Cells) -> Cells:
    """(rows * columns) x WIDTH, row-major: each cell's neighbourhood and its height in the frame (0 top, 1 bottom)."""
    rows, columns, _ = maps.shape
    padded = np.pad(maps, ((REACH, REACH), (REACH, REACH), (0, 0)), mode="edge")
    side = 2 * REACH + 1
    parts = [padded[dy : dy + rows, dx : dx + columns] for dy in range(side) for dx in range(side)]
    height = np.broadcast_to((np.arange(rows, dtype=np.float32) / rows)[:, None, None], (rows, columns, 1))
    return np.concatenate([*parts, height], axis=-1).reshape(rows * columns, -1).astype(np.float32)


def head_cells(shape: tuple[int, int], heads: list[tuple[float, float]]) -> NDArray[np.uint8]:
    """rows x columns, 1 in each cell that holds a clicked head."""
    rows, columns = cell_grid(shape)
    marks = np.zeros((rows, columns), np.uint8)
    for x, y in heads:
        r, c = int(y) // CELL, int(x) // CELL
        if 0 <= r < rows and 0 <= c < columns:
            marks[r, c] = 1
    return marks


def peaks(scores: NDArray[np.float32], threshold: float) -> NDArray[np.bool_]:
    """Cells whose score is above the threshold and the highest in their 3 x 3 neighbourhood: one per head."""
    highest = cv2.dilate(scores, np.ones((3, 3), np.uint8))
    return (scores >= highest) & (scores > threshold)
