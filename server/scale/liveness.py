"""Which workers' connections are gone, found within seconds instead of after the partitions' priority timeout.

A worker answers on `lw.workers.<name>.alive` for as long as its connection lives. The NATS server answers a
request to a subject nobody listens on at once with "no responders", so a worker killed with -9 (the kernel
closes its connection) is seen gone within a few heartbeats, where the pinned consumers would wait out their
priority timeout (15 s) before pinning another worker. A worker that is alive but slow to answer still has its
subscription: the server routes the request to it, and the request times out instead, which is not taken as
gone (if it stalls long enough, its pins lapse on their own). A worker moving to another node after a node was
lost is briefly without its subscription too, so a worker is gone only after `GONE_AFTER_S` of "no responders".

`Suspects` is the pure part: what was heard of each worker, with the time passed in.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from server.scale import subjects

PROBE_TIMEOUT_S = 0.5
GONE_AFTER_S = 2.0  # "no responders" for this long: gone (a worker moving to another node is back well within it)


def subject(worker: str) -> str:
    return f"lw.workers.{subjects.token(worker)}.alive"


async def answer(msg: Msg) -> None:
    """A worker's answer to a probe (any answer will do: that it comes is the point)."""
    await msg.respond(b"")


async def probe(nc: Client, worker: str) -> bool | None:
    """True: `worker` listens (it answered, or its subscription took the request and it did not answer in time);
    False: nobody listens on its subject; None: not known (our own connection is away)."""
    try:
        await nc.request(subject(worker), b"", timeout=PROBE_TIMEOUT_S)
    except NoRespondersError:
        return False
    except TimeoutError:
        return True
    except NatsError:
        return None
    return True


class Suspects:
    def __init__(self, gone_after_s: float = GONE_AFTER_S) -> None:
        self._gone_after_s = gone_after_s
        self._silent_since: dict[str, float] = {}  # worker: since when nobody listens on its subject

    def heard(self, worker: str, listens: bool | None, now: float) -> None:
        if listens is None:
            return
        if listens:
            self._silent_since.pop(worker, None)
        else:
            self._silent_since.setdefault(worker, now)

    def keep_only(self, workers: Collection[str]) -> None:
        """Forget the workers no longer listed (they left, or their entry was deleted)."""
        for worker in set(self._silent_since) - set(workers):
            del self._silent_since[worker]

    def gone(self, now: float) -> set[str]:
        return {w for w, since in self._silent_since.items() if now - since >= self._gone_after_s}


def pins_of(entry: bytes | None) -> dict[int, str]:
    """The pins a worker listed in its entry of the worker list (`{"pins": {"<partition>": "<pin>"}}`); nothing
    from an entry that has none or is not of that form."""
    try:
        pins = json.loads(entry or b"").get("pins")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(pins, dict):
        return {}
    return {int(p): pin for p, pin in pins.items() if isinstance(p, str) and p.isdecimal() and isinstance(pin, str)}
