"""The forwarders' JetStream publisher on a real NATS cluster: a message is done only once JetStream answers that
it stored it; one left unanswered, refused or met by nobody goes out again with the same headers."""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.nats_cluster import NatsCluster
from bench.processes import Proxy
from server.scale.publisher import Publisher
from tests.test_scale import run, until


def test_unanswered_refused_and_unheard_messages_go_out_again_until_stored(cluster: NatsCluster) -> None:
    """A stand-in for the stream on a plain subject: it ignores the first delivery of `a`, refuses `b` once with
    a JetStream error, and stores the rest; `c` is published where nobody listens until the stand-in does."""
    deliveries: list[tuple[str, str]] = []
    done: list[tuple[str, bool]] = []
    why: list[str] = []

    async def body(nc: Client) -> None:
        async def stand_in(msg: Msg) -> None:
            name = msg.data.decode()
            assert msg.headers is not None
            deliveries.append((name, msg.headers["Nats-Msg-Id"]))
            seen = sum(1 for n, _ in deliveries if n == name)
            if name == "a" and seen == 1:
                return  # lost: no answer at all
            if name == "b" and seen == 1:
                await msg.respond(json.dumps({"error": {"code": 503, "description": "stream full"}}).encode())
                return
            await msg.respond(json.dumps({"stream": "S", "seq": len(deliveries), "duplicate": seen > 1}).encode())

        await nc.subscribe("pub.test.s", cb=stand_in)
        publisher: Publisher[str] = Publisher(nc, lambda item, dup: done.append((item, dup)), why.append, timeout_s=0.5)
        await publisher.start()
        for name in ("a", "b"):
            await publisher.publish("pub.test.s", name.encode(), {"Nats-Msg-Id": f"id-{name}"}, name)
        await publisher.publish("pub.test.nobody", b"c", {"Nats-Msg-Id": "id-c"}, "c")
        await until(lambda: len(done) == 2, 10, "a and b stored")
        assert publisher.in_flight() == 1  # c: nobody listens, so it waits and goes out again
        assert any(w == "status 503" for w in why)
        await nc.subscribe("pub.test.nobody", cb=stand_in)
        await until(lambda: len(done) == 3, 15, "c stored once someone answers")
        await publisher.drained()
        await publisher.close()

    run(cluster, body, None)
    assert sorted(done) == [("a", True), ("b", True), ("c", False)]
    # each went out again with its own id (what makes JetStream store it once), and only until it was stored
    assert sorted(deliveries) == [("a", "id-a"), ("a", "id-a"), ("b", "id-b"), ("b", "id-b"), ("c", "id-c")]
    assert "no answer in 0.5 s" in why
    assert "stream full" in why


def test_a_message_answered_late_counts_once(cluster: NatsCluster) -> None:
    """An answer that comes after the message went out again is ignored: only the second one's counts."""
    done: list[str] = []
    answers: list[asyncio.Task[None]] = []

    async def body(nc: Client) -> None:
        async def slow(msg: Msg) -> None:
            first = not answers

            async def later() -> None:
                if first:
                    await asyncio.sleep(0.8)  # past the timeout: the message has gone out again by then
                await msg.respond(b'{"stream": "S", "seq": 1}')

            answers.append(asyncio.create_task(later()))

        await nc.subscribe("pub.test.slow", cb=slow)
        publisher: Publisher[str] = Publisher(
            nc, lambda item, _dup: done.append(item), lambda _why: None, timeout_s=0.5
        )
        await publisher.start()
        await publisher.publish("pub.test.slow", b"x", {"Nats-Msg-Id": "id-x"}, "x")
        await publisher.drained()
        await asyncio.gather(*answers)
        await asyncio.sleep(0.2)
        await publisher.close()

    run(cluster, body, None)
    assert done == ["x"]
    assert len(answers) == 2


def test_what_was_out_when_the_connection_was_lost_goes_out_again_once_it_is_back(cluster: NatsCluster) -> None:
    """A NATS node lost under a forwarder: what it had published and not had answered may be gone with the
    connection. It goes out again once the connection is back, not after the (here 60 s) timeout."""
    deliveries: list[str] = []
    done: list[str] = []
    why: list[str] = []
    errors: list[Exception] = []  # the connection's, told by nats-py
    node = Proxy(int(cluster.urls[0].rsplit(":", 1)[1]))

    async def body(nc: Client) -> None:
        async def stand_in(msg: Msg) -> None:
            deliveries.append(msg.data.decode())
            if len(deliveries) > 1:  # the first went with the connection: no answer
                await msg.respond(b'{"stream": "S", "seq": 1}')

        await nc.subscribe("pub.test.cut", cb=stand_in)
        await nc.flush()

        async def cut_off(exc: Exception) -> None:
            errors.append(exc)

        forwarder = Client()
        await forwarder.connect(
            f"nats://127.0.0.1:{node.port}", reconnect_time_wait=0.2, max_reconnect_attempts=-1, error_cb=cut_off
        )
        publisher: Publisher[str] = Publisher(forwarder, lambda item, _dup: done.append(item), why.append, timeout_s=60)
        await publisher.start()
        await publisher.publish("pub.test.cut", b"x", {"Nats-Msg-Id": "id-x"}, "x")
        await until(lambda: bool(deliveries), 10, "the message delivered once")
        node.cut()
        await asyncio.sleep(0.5)
        node.heal()
        await until(lambda: bool(done), 15, "the message stored after the reconnect")
        await publisher.close()
        await forwarder.close()

    try:
        run(cluster, body, None)
    finally:
        node.close()
    assert done == ["x"]
    assert deliveries == ["x", "x"]
    assert "the connection to NATS was lost" in why
    assert errors  # the cut was seen as one
