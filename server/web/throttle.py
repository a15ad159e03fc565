"""Sign-in throttling: after a few wrong passwords for one account, or many from one address, further tries
wait, longer each time. Pure logic on an injected monotonic clock; the state is per server process (a guesser
spread over processes still meets each one's limits, and the accounts' own limits)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

PER_ACCOUNT = 5  # wrong passwords for one login before it must wait
PER_ADDRESS = 20  # wrong passwords from one address (any logins) before it must wait
FIRST_WAIT_S = 60.0  # the first wait; each further failure while limited doubles it
LONGEST_WAIT_S = 3600.0
FORGET_S = 3600.0  # failures older than this no longer count
MAX_TRACKED = 10_000  # keys kept; the oldest go first, so a flood of fake logins cannot fill memory


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    until: float = 0.0
    wait: float = 0.0


class LoginThrottle:
    def __init__(self, per_account: int = PER_ACCOUNT, per_address: int = PER_ADDRESS) -> None:
        self._limits = {"account": per_account, "address": per_address}
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def wait_s(self, login: str, address: str, now: float) -> float:
        """Seconds before this login may be tried from this address (0: now)."""
        records = [self._records.get(("account", login.lower())), self._records.get(("address", address))]
        return max([0.0, *(r.until - now for r in records if r is not None)])

    def failed(self, login: str, address: str, now: float) -> None:
        for key in (("account", login.lower()), ("address", address)):
            record = self._records.pop(key, None) or _Record()
            record.failures = [t for t in record.failures if now - t < FORGET_S] + [now]
            if len(record.failures) >= self._limits[key[0]]:
                record.wait = min(LONGEST_WAIT_S, record.wait * 2 if record.wait else FIRST_WAIT_S)
                record.until = now + record.wait
            self._records[key] = record
            while len(self._records) > MAX_TRACKED:
                self._records.popitem(last=False)

    def succeeded(self, login: str) -> None:
        self._records.pop(("account", login.lower()), None)
