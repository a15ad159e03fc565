import math
import random
from pathlib import Path

import pytest

from lobby_sim.lobby import SERVICE_MIX, Lobby, LobbyPlan


def test_service_mix_is_the_standards() -> None:
    assert math.isclose(sum(share for share, _ in SERVICE_MIX), 1.0)
    assert {minutes for _, minutes in SERVICE_MIX} == {3.0, 4.0, 5.0, 6.0}


def test_mean_service_time_follows_the_standards() -> None:
    lobby = Lobby(LobbyPlan(), random.Random(1))
    samples = [lobby.service_minutes() for _ in range(20_000)]
    expected = sum(share * minutes for share, minutes in SERVICE_MIX)
    assert abs(sum(samples) / len(samples) - expected) < 0.1


def test_a_peak_over_capacity_builds_a_queue_and_a_flexible_window_helps() -> None:
    plan = LobbyPlan(windows=2, max_windows=4, base_per_min=0.2, peak_per_min=1.0, peak_from_min=0, peak_to_min=600)
    crowded = Lobby(plan, random.Random(2))
    crowded.advance(60)
    assert crowded.waiting > 15
    relieved = Lobby(plan, random.Random(2))
    assert relieved.open_window()
    assert relieved.open_window()
    assert not relieved.open_window()  # only four windows in this branch
    relieved.advance(60)
    assert relieved.waiting < crowded.waiting


def test_quiet_branch_has_short_queue() -> None:
    lobby = Lobby(LobbyPlan(windows=3, base_per_min=0.2, peak_per_min=0.2), random.Random(3))
    lobby.advance(120)
    assert lobby.waiting <= 3
    assert lobby.served > 10


def test_a_cycled_day_brings_the_peak_back_and_windows_close_when_it_is_over() -> None:
    plan = LobbyPlan(
        windows=2, max_windows=4, base_per_min=0.1, peak_per_min=1.2, peak_from_min=0, peak_to_min=40, cycle_min=150
    )
    lobby = Lobby(plan, random.Random(4))
    peaks = []
    for _ in range(3):  # three cycles: each peak builds a queue, each quiet spell empties it
        lobby.advance(40)
        peaks.append(lobby.waiting)
        assert lobby.open_window()
        lobby.advance(110)
        assert lobby.waiting <= 2
        assert lobby.close_window()
        assert lobby.windows_open == 2
        assert not lobby.close_window()  # never below the plan's windows
    assert min(peaks) > 8


def test_a_broker_whose_port_a_stranger_took_moves_to_another(tmp_path: Path) -> None:
    """A port picked as free can be taken before Mosquitto binds it: the broker must not leave its clients
    talking to the stranger (seen in CI: every client failed with a protocol error), but listen elsewhere."""
    import socket

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from lobby_sim.broker import Mosquitto

    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        broker = Mosquitto(tmp_path / "picked")
        broker.port = taken  # as if the port picked for it had been taken since
        broker.start()
        try:
            assert broker.port != taken
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="after-move")
            assert client.connect("127.0.0.1", broker.port) == mqtt.MQTT_ERR_SUCCESS
            client.disconnect()
        finally:
            broker.stop()
        given = Mosquitto(tmp_path / "given", port=taken)
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{taken}.*Address already in use"):
            given.start()
