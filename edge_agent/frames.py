"""Frame sources: a camera through OpenCV, or a video or folder of frames for tests, demos and benchmarks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

Frame = NDArray[np.uint8]
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class FrameSource(Protocol):
    def read(self) -> Frame | None:
        """The next frame, or None when there is none now (camera unplugged, end of a recording)."""

    def close(self) -> None: ...


class FrameFolder:
    """Frames from a folder of images, in name order."""

    def __init__(self, folder: Path, loop: bool = False) -> None:
        self._paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not self._paths:
            raise FileNotFoundError(f"no .jpg/.png frames in {folder}")
        self._loop = loop
        self._next = 0

    def read(self) -> Frame | None:
        if self._next >= len(self._paths):
            if not self._loop:
                return None
            self._next = 0
        path = self._paths[self._next]
        self._next += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            log.warning("cannot decode frame %s", path)
            return None
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        return None


class OpenCVCamera:
    """A V4L2 camera, stream URL or video file through cv2.VideoCapture; reopens after the camera drops out."""

    def __init__(self, source: str, loop: bool = False) -> None:
        self._source: int | str = int(source) if source.isdigit() else source
        self._loop = loop
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self._source)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def read(self) -> Frame | None:
        if self._cap is None:
            self._cap = self._open()
            if self._cap is None:
                return None
        ok, frame = self._cap.read()
        if not ok and self._loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok:
            self._cap.release()
            self._cap = None
            return None
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(source: str, loop: bool = False) -> FrameSource:
    path = Path(source)
    if path.is_dir():
        return FrameFolder(path, loop)
    return OpenCVCamera(source, loop)
