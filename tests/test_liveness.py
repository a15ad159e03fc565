"""How a worker finds another worker gone: the pure bookkeeping, and the probe against a real NATS cluster (a
subject with a listener, one whose listener never answers, one whose connection is closed)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.nats_cluster import NatsCluster
from server.scale import liveness


def test_a_worker_is_gone_only_after_nobody_has_listened_for_a_while() -> None:
    suspects = liveness.Suspects(gone_after_s=2.0)
    suspects.heard("w1", False, now=10.0)
    suspects.heard("w2", True, now=10.0)
    assert suspects.gone(11.9) == set()
    suspects.heard("w1", None, now=11.0)  # our own connection away: nothing learnt, nothing forgotten
    suspects.heard("w1", False, now=12.0)
    assert suspects.gone(12.0) == {"w1"}


def test_a_worker_heard_again_starts_over_and_one_no_longer_listed_is_forgotten() -> None:
    suspects = liveness.Suspects(gone_after_s=2.0)
    suspects.heard("w1", False, now=0.0)
    suspects.heard("w1", True, now=1.5)  # back on another node after a node was lost
    suspects.heard("w1", False, now=3.0)
    assert suspects.gone(4.0) == set()
    assert suspects.gone(5.0) == {"w1"}
    suspects.keep_only({"w2"})
    assert suspects.gone(100.0) == set()


def test_the_pins_a_worker_listed_are_read_and_anything_else_is_not() -> None:
    entry = json.dumps({"received": 3, "pins": {"4": "abc", "x": "no", "5": 7}}).encode()
    assert liveness.pins_of(entry) == {4: "abc"}
    assert liveness.pins_of(json.dumps({"received": 3}).encode()) == {}
    assert liveness.pins_of(b"not json") == {}
    assert liveness.pins_of(b"[1, 2]") == {}
    assert liveness.pins_of(json.dumps({"pins": ["4"]}).encode()) == {}
    assert liveness.pins_of(None) == {}


def test_a_probe_tells_a_closed_connection_from_a_live_or_a_slow_one(cluster: NatsCluster) -> None:
    async def main() -> tuple[bool | None, ...]:
        prober, live, slow = Client(), Client(), Client()
        for nc in (prober, live, slow):
            await nc.connect(servers=cluster.urls)

        async def never_answers(_msg: Msg) -> None:
            return None

        await live.subscribe(liveness.subject("live"), cb=liveness.answer)
        await slow.subscribe(liveness.subject("slow"), cb=never_answers)
        await live.flush()
        await slow.flush()

        async def within_grace(worker: str, expected: bool) -> bool | None:
            # A subscription made or gone reaches the other nodes a moment after its own node knows, so a probe
            # through another node may at first see the old state: a worker is taken for gone only after
            # GONE_AFTER_S of "no responders", and the probe must see the new state within that.
            deadline = asyncio.get_running_loop().time() + liveness.GONE_AFTER_S
            while (listens := await liveness.probe(prober, worker)) is not expected:
                if listens is None or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            return listens

        heard = (
            await within_grace("live", True),
            await within_grace("slow", True),
            await liveness.probe(prober, "never-started"),
        )
        await live.close()  # as the kernel closes a killed worker's connection
        closed = await within_grace("live", False)
        await slow.close()
        await prober.close()
        gone_prober = await liveness.probe(prober, "slow")  # our own connection is away: not known
        return (*heard, closed, gone_prober)

    with ThreadPoolExecutor(1, thread_name_prefix="asyncio_nats") as pool:
        heard = pool.submit(asyncio.run, main()).result()
    assert heard == (True, True, False, False, None)
