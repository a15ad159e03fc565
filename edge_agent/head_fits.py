"""Head counters are fitted on a thread of their own. A fit takes seconds here and can take a minute or more on a
Raspberry Pi, and the technician's label arrives on the agent's main loop, which also hands on button presses and
feeds the watchdog: that loop must never wait for one. The regression (a fraction of a second) is still fitted
at once and answers the label; the head counter follows, and the camera loop picks it up like any calibration.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from edge_agent.counting.calibration import CalibrationStore, calibrate_heads
from edge_agent.counting.dataset import load_dataset
from edge_agent.counting.heads import HeadsError
from edge_agent.counting.zones import Zone

log = logging.getLogger(__name__)


def fit_heads_now(data_dir: Path, zone: Zone) -> None:
    """Fit the zone's head counter from its labels as they are now, or remove the old one (the log says why)."""
    labelled = load_dataset(data_dir / "labels" / zone.key)
    heads = calibrate_heads(CalibrationStore(data_dir), zone, labelled.frames, labelled.counts, labelled.points)
    if isinstance(heads, HeadsError):
        log.info("zone %s: no head counter: %s", zone.key, heads)
    else:
        log.info("zone %s: head counter fitted on %d heads, error %.2f", zone.key, heads.heads, heads.residual_sd)


class HeadFits:
    """One fit at a time, on a daemon thread that lives while there are fits to do (a fit cut short by a stop
    loses nothing: the labels stay). A zone asked for again while its fit waits is fitted once, from the labels it
    has when the fit starts."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Path, Zone]] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._waiting: set[tuple[Path, str]] = set()
        self._fitting: tuple[Path, str] | None = None
        self._busy = 0
        self._thread: threading.Thread | None = None

    def submit(self, data_dir: Path, zone: Zone) -> None:
        with self._lock:
            if (data_dir, zone.key) in self._waiting:
                return
            self._waiting.add((data_dir, zone.key))
            self._busy += 1
            self._queue.put((data_dir, zone))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="head-fit", daemon=True)
                self._thread.start()

    def zones(self, data_dir: Path) -> set[str]:
        """The zones of this data directory whose head counter is being fitted or waits to be."""
        with self._lock:
            asked = self._waiting | ({self._fitting} if self._fitting else set())
            return {key for folder, key in asked if folder == data_dir}

    def wait(self, timeout: float | None = None) -> bool:
        """Until every fit asked for is done (for the command line and tests); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._busy == 0, timeout)

    def _run(self) -> None:
        """Fits what was asked for, then ends: the thread lives only while there is work."""
        while True:
            data_dir, zone = self._queue.get()
            with self._lock:
                self._waiting.discard((data_dir, zone.key))
                self._fitting = (data_dir, zone.key)
            try:
                fit_heads_now(data_dir, zone)
            except Exception:  # a fit that fails must not end the thread: the next label tries again
                log.exception("zone %s: fitting the head counter failed", zone.key)
            with self._lock:
                self._fitting = None
                self._busy -= 1
                self._lock.notify_all()
                if self._busy == 0:
                    self._thread = None
                    return


HEAD_FITS = HeadFits()
