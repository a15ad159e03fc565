"""The server's own connection to the broker: while it is lost, silence says nothing of the devices; when the
loss lasts, the administrators are told once (not one alert per device, whose wills the broker sent as it
stopped), and told again when it is back."""

from __future__ import annotations

from collections.abc import Callable

BROKER_DOWN_TELL_S = 30.0  # the server's broker connection lost this long: the administrators are told


class BrokerWatch:
    def __init__(self) -> None:
        self._heard: bool | None = None
        self._deaf_since: float | None = None
        self.told = False
        self.on_system: Callable[[dict[str, object]], None] | None = None  # the broker lost and back

    def hears(self, hearing: bool, now: float) -> bool:
        """Whether the server hears the broker now; True when that changed."""
        changed = hearing != self._heard
        if changed:
            if not hearing:
                self._deaf_since = now
            elif self._deaf_since is not None:
                if self.told:
                    self._tell({"event": "broker_back", "down_s": round(now - self._deaf_since)})
                self._deaf_since, self.told = None, False
            self._heard = hearing
        if (
            not hearing
            and self._deaf_since is not None
            and not self.told
            and now - self._deaf_since >= BROKER_DOWN_TELL_S
        ):
            self.told = True
            self._tell({"event": "broker_down", "down_s": round(now - self._deaf_since)})
        return changed

    def _tell(self, event: dict[str, object]) -> None:
        if self.on_system is not None:
            self.on_system(event)
