"""The real service time at a zone's windows, learnt from its occupancy. Pure; times passed in.

While somebody waits, every open window is busy, so services end at c / s a minute (c windows, s minutes a
service), and each ends with a fall of the queue: the next person goes to the window. So over many busy
minutes s = c × busy minutes ÷ falls. The agent sends every change of its median-smoothed count, so falls are
seen one by one. A count that comes back within FLICKER_S was a miscount and is not a fall; the real falls
hidden that way (a service and an arrival seconds apart) are put back by their expected share. Miscounts that
last longer, and customers who give up and leave, still add falls: the estimate errs short (bench/service_rate.py
measures it). It is kept within a factor of two of the standard either way, so neither a camera gone wrong nor
a quiet day can switch the wait rule off or make it shout.

Old evidence fades (a half-life counted in busy window-minutes, so a quiet week forgets nothing); until there
is enough of it the branch standard is used.
"""

from __future__ import annotations

from dataclasses import dataclass

FLICKER_S = 8.0  # a count that comes back within this long was a miscount
MAX_GAP_S = 120.0  # a longer gap between counts (device offline, branch closed) is not busy time
HALF_LIFE_BUSY_MIN = 600.0
MIN_BUSY_MIN = 60.0  # window-minutes of evidence needed before the learnt value is used
MIN_SERVED = 20.0
BOUND = 2.0  # learnt within [standard / 2, standard × 2]


@dataclass(slots=True)
class ServiceLearner:
    busy_min: float = 0.0  # window-minutes spent with people waiting (faded)
    served: float = 0.0  # falls of the queue in that time (faded)
    arrived: float = 0.0  # rises of the queue in that time (faded)
    windows: int = 1  # open at the last count
    level: int | None = None  # the count at `at`
    at: float | None = None
    # A fall is counted once it has lasted FLICKER_S; a fall that undoes a rise of the last FLICKER_S is the
    # count returning from a miscount, not a service.
    fall: tuple[int, int, float] | None = None  # (from, to, at), not yet counted
    rise: tuple[int, float] | None = None  # (from, at)

    def observe(self, occupancy: int | None, at: float, windows_open: int) -> None:
        """A count (None: unknown, or the branch closed) at time `at` (seconds), with this many windows open."""
        if self.at is not None and at <= self.at:
            return  # rules only move forward in time
        if occupancy is None or (self.at is not None and at - self.at > MAX_GAP_S):
            self._settle(at)
            self.level = self.at = self.rise = None
            if occupancy is None:
                return
        self.windows = windows_open
        if self.level is not None and self.at is not None and self.level > 0:
            minutes = (at - self.at) / 60
            fade = 0.5 ** (minutes * windows_open / HALF_LIFE_BUSY_MIN)
            self.busy_min = self.busy_min * fade + minutes * windows_open
            self.served *= fade
            self.arrived *= fade
        self._settle(at)
        if self.level is not None and occupancy != self.level:
            self._move(self.level, occupancy, at)
        self.level, self.at = occupancy, at

    def _settle(self, at: float | None) -> None:
        if self.fall is not None and (at is None or at - self.fall[2] > FLICKER_S):
            self.served += self.fall[0] - self.fall[1]
            self.fall = None

    def _move(self, before: int, after: int, at: float) -> None:
        if after < before:
            top = before
            if self.rise is not None and at - self.rise[1] <= FLICKER_S:
                top = min(before, self.rise[0])  # back down from a miscount: only a fall below it is one
            self.rise = None
            if after < top:
                self.fall = (top, after, at) if self.fall is None else (self.fall[0], after, self.fall[2])
            return
        if self.fall is not None and at - self.fall[2] <= FLICKER_S:
            back = min(after, self.fall[0])  # the dip undone, as far as the count came back
            self.fall = (back, self.fall[1], self.fall[2]) if back < self.fall[0] else None
            self.fall = None if self.fall and self.fall[0] <= self.fall[1] else self.fall
            if after > back:
                self.rise = (back, at)
                self._arrive(back, after)
            return
        self.rise = (before, at)
        self._arrive(before, after)

    def _arrive(self, before: int, after: int) -> None:
        if before > 0:  # counted like the falls: only while the windows are busy
            self.arrived += after - before

    def service_min(self, standard: float) -> float:
        """The learnt mean service time, or the standard while evidence is short."""
        if not self.learnt():
            return standard
        return min(standard * BOUND, max(standard / BOUND, self.estimate()))

    def estimate(self) -> float:
        """busy minutes ÷ services, the services corrected for those hidden by an arrival within FLICKER_S
        (a fall and a rise that close look like a miscount and are not counted): about a share
        FLICKER_S × (arrival rate + service rate) of them."""
        clock_min = self.busy_min / self.windows
        hidden = FLICKER_S / 60 * (self.arrived + self.served) / clock_min if clock_min else 0.0
        return self.busy_min * (1 - min(hidden, 0.5)) / self.served

    def learnt(self) -> bool:
        return self.busy_min >= MIN_BUSY_MIN and self.served >= MIN_SERVED
