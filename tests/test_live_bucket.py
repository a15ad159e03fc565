"""A worker's sharing of its live state on a real NATS cluster: what only moved on (a device's last message time)
is shared again spread over the refresh period, not in one round of thousands of writes."""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.nats_cluster import NatsCluster
from server.live import DeviceNow, LiveState
from server.scale import live_bucket
from tests.test_scale import run, until

DEVICES = [f"dev-{i:04d}" for i in range(400)]
ROUND_S = 0.5


def test_entries_shared_together_are_refreshed_spread_over_the_period(cluster: NatsCluster) -> None:
    clock = [0.0]
    live = LiveState(track=True)
    arrived: list[str] = []
    per_round: list[int] = []

    def moved_on() -> None:  # every device reports again: its last message time moves, nothing a person reads
        live.set_devices({d: DeviceNow(online=True, last_seen=1e9 + clock[0]) for d in DEVICES})

    async def body(nc: Client) -> None:
        async def heard(msg: Msg) -> None:
            arrived.append(msg.subject)

        await nc.subscribe(f"$KV.{live_bucket.LIVE}.>", cb=heard)
        publisher = live_bucket.Publisher(live, nc, lambda: clock[0])
        written = 0
        for step in range(int(live_bucket.REFRESH_S / ROUND_S) + 1):
            clock[0] = step * ROUND_S
            moved_on()
            await publisher.publish_once()
            per_round.append(publisher.written - written)
            written = publisher.written
        await until(lambda: len(arrived) == written, 10, "every write heard")

    run(cluster, body, None)
    first, *later = per_round
    assert first == len(DEVICES)
    half = int(live_bucket.REFRESH_S / 2 / ROUND_S)
    assert sum(later[: half - 1]) == 0  # nothing is shared again before half the period
    assert sum(later) == len(DEVICES)  # and everything once by the end of it
    assert max(later) <= len(DEVICES) / 5, per_round  # spread: no round carries a fifth of them
