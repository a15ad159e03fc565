"""Sign-in throttling: after a few wrong passwords for one account, or many from one address, further tries
wait, longer each time. Pure policy on records the registry keeps (`server.registry.rate_limits`), shared by
every API process: a guesser spread over processes meets one limit. Times are wall-clock epoch seconds, as the
processes may run on different machines."""

from __future__ import annotations

from collections.abc import Mapping

from server.registry.rate_limits import Record

PER_ACCOUNT = 5  # wrong passwords for one login before it must wait
PER_ADDRESS = 20  # wrong passwords from one address (any logins) before it must wait
FIRST_WAIT_S = 60.0  # the first wait; each further failure while limited doubles it
LONGEST_WAIT_S = 3600.0
FORGET_S = 3600.0  # failures older than this no longer count


def account(login: str) -> str:
    return f"sign_in:account:{login.lower()}"


def limits(login: str, address: str) -> dict[str, int]:
    """The records a sign-in is held to, and each one's number of failures before a wait."""
    return {account(login): PER_ACCOUNT, f"sign_in:address:{address}": PER_ADDRESS}


def wait_s(records: Mapping[str, Record], now: float) -> float:
    """Seconds before a try may be made (0: now)."""
    return max([0.0, *(r.until - now for r in records.values())])


def failed(record: Record | None, limit: int, now: float) -> Record:
    """The record after one more wrong password."""
    record = record or Record()
    times = [t for t in record.times if now - t < FORGET_S] + [now]
    if len(times) < limit:
        return Record(times, record.until, record.wait)
    wait = min(LONGEST_WAIT_S, record.wait * 2 if record.wait else FIRST_WAIT_S)
    return Record(times, now + wait, wait)
