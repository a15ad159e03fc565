"""The suite's own servers (VictoriaMetrics, NATS) on ports picked as free: a port a stranger took before the
server bound it must not leave the tests talking to the stranger (Mosquitto did in CI: tests/test_lobby_sim.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.nats_cluster import NatsCluster
from bench.processes import Victoria


@pytest.fixture
def stranger() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def test_victoria_whose_port_a_stranger_took_moves_to_another_and_a_known_port_is_not_left(
    tmp_path: Path, stranger: int
) -> None:
    victoria = Victoria(tmp_path)
    victoria.port = stranger  # as if the port picked for it had been taken since
    victoria.start()
    try:
        assert victoria.port != stranger
        assert httpx.get(f"{victoria.url}/health", timeout=5).text == "OK"
    finally:
        victoria.stop()
    victoria.port = stranger  # clients know its port now: a restart must come back on it, or say it cannot
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{stranger}"):
        victoria.start()


def test_a_nats_cluster_whose_port_a_stranger_took_starts_on_others(tmp_path: Path, stranger: int) -> None:
    cluster = NatsCluster(tmp_path, nodes=1)
    cluster.nodes[0].port = stranger
    cluster.nodes[0].configure([])
    cluster.start()
    try:
        assert cluster.nodes[0].port != stranger
        assert cluster.nodes[0].jetstream_ready()
    finally:
        cluster.stop()
