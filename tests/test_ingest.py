"""The ingest against a real Mosquitto: valid messages are stored and shown, bad ones refused and counted."""

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lobby_sim.broker import Mosquitto
from lobbywatch.protocol import MAX_PAYLOAD_BYTES
from server.app import create_app
from server.delivery.notify import Delivered, Dispatcher, Notice, WebhookChannel
from server.processing.sequence import SequenceTracker
from server.registry import models
from server.runtime import Runtime
from tests.helpers import Device, eventually, start_runtime


@pytest.fixture
def runtime(tmp_path: Path, mosquitto: Mosquitto, inbox: ThreadingHTTPServer) -> Iterator[Runtime]:
    url = f"http://127.0.0.1:{inbox.server_address[1]}/hook"
    rt = start_runtime(tmp_path, mosquitto.port, webhook_url=url)
    yield rt
    rt.stop()


def stored(runtime: Runtime, measurement: str = "occupancy", branch: str = "b1") -> list[object]:
    return runtime.store.query(measurement, branch, 0)


def test_message_arrives_in_storage_and_api(runtime: Runtime, device: Device) -> None:
    device.queue(3)
    (point,) = eventually(lambda: stored(runtime), what="occupancy stored")
    assert point.fields == {"occupancy": 3, "known": True, "threshold": 5.0}  # the zone's own "too long"
    assert dict(point.tags) == {
        "region": "r1",
        "region_label": "Region one (r1)",
        "branch": "b1",
        "branch_label": "阜成门支局 (b1)",  # what the dashboards show and pick by
        "zone": "queue",
        "name": "窗口排队区",  # the zone's name in the branch's language: the legend
        "device": "dev-b1-cam",
    }
    with TestClient(create_app(runtime=runtime)) as client:
        branches = {b["id"]: b for b in client.get("/api/v1/branches").json()}
        assert branches["b1"]["zones"][0]["occupancy"] == 3
        assert branches["b2"]["zones"][0]["occupancy"] is None
        detail = client.get("/api/v1/branches/b1").json()
        assert [s["occupancy"] for s in detail["occupancy"]] == [3]
        devices = {d["id"]: d for d in client.get("/api/v1/devices").json()}
        assert devices["dev-b1-cam"]["received_seq"] == 1


def test_duplicates_are_dropped_and_gaps_counted(runtime: Runtime, device: Device) -> None:
    first = device.queue(3)
    device.send("queue", first)  # the same message again, as after a reconnect
    device.seq += 2  # two messages lost on the way
    device.queue(4)
    eventually(lambda: runtime.pipeline.stats.received == 3, what="3 messages received")
    # received is counted on arrival, a duplicate when its batch is processed: wait for that
    eventually(lambda: runtime.pipeline.stats.duplicates == 1, what="the duplicate dropped")
    tracker = runtime.pipeline.devices["dev-b1-cam"].sequence
    assert tracker.missing == 2
    assert len(stored(runtime)) == 2
    # the sequence state survives a restart: it is flushed to the registry
    runtime.pipeline.flush_devices()
    with runtime.sessions() as session:
        row = session.get(models.Device, "dev-b1-cam")
        assert row is not None
        assert row.sequence is not None
        assert row.sequence["gaps"] == [[2, 3]]
        assert row.last_seen is not None
    assert SequenceTracker.from_dict(dict(row.sequence)) == tracker


def test_bad_input_is_refused_counted_and_logged_once(
    runtime: Runtime, device: Device, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.ingest.rejects")
    device.send("queue", b"{not json")
    device.send("queue", b"{also not json")
    device.send("queue", device.envelope(zones=[{"zone": "queue", "occupancy": "3"}]))
    device.send("queue", b"{" + b" " * MAX_PAYLOAD_BYTES + b"}")
    device.send("queue", device.envelope(zones=[{"zone": "unknown-zone", "occupancy": 1}]))
    device.send("queue", device.envelope(zones=[{"zone": "queue", "occupancy": 1}]), topic_device="stranger-1")
    device.send("queue", device.envelope(zones=[{"zone": "queue", "occupancy": 1}]), topic_device="Bad Device")
    device.queue(2)  # and the ingest carries on
    eventually(lambda: stored(runtime), what="the good message stored")
    assert runtime.rejects.snapshot() == {
        "not_json": 2,
        "invalid": 1,
        "too_large": 1,
        "unknown_zone": 1,
        "unknown_device": 1,
        "bad_topic": 1,
    }
    not_json_logs = [r for r in caplog.records if "(not_json)" in r.getMessage()]
    assert len(not_json_logs) == 1
    assert "stranger-1" in caplog.text
    with TestClient(create_app(runtime=runtime)) as client:
        health = client.get("/api/v1/health").json()
    assert health["refused"]["not_json"] == 2
    assert health["internal_errors"] == 0


def test_queue_rule_fires_notifies_and_resolves(runtime: Runtime, device: Device, inbox: ThreadingHTTPServer) -> None:
    device.queue(6)  # site rule: threshold 5, no duration
    eventually(lambda: len(inbox.messages.get("/hook", [])) == 1, what="fired notice")  # type: ignore[attr-defined]
    notice = inbox.messages["/hook"][0]  # type: ignore[attr-defined]
    assert notice["change"] == "fired"
    assert notice["title"] == "阜成门支局：窗口排队区排队过长——请开启弹性窗口"
    assert notice["at_local"].endswith("+08:00")
    device.queue(7)  # still firing: one alert, not two
    device.queue(1)
    eventually(lambda: len(inbox.messages.get("/hook", [])) == 2, what="resolved notice")  # type: ignore[attr-defined]
    assert inbox.messages["/hook"][1]["change"] == "resolved"  # type: ignore[attr-defined]
    assert "7" in inbox.messages["/hook"][1]["body"]  # the peak  # type: ignore[attr-defined]
    with TestClient(create_app(runtime=runtime)) as client:
        (alert,) = client.get("/api/v1/alerts").json()
        assert alert["state"] == "resolved"
        assert alert["peak"] == 7
        english = client.get(f"/api/v1/alerts/{alert['id']}", params={"lang": "en"}).json()
        assert english["title"] == "阜成门支局: queue too long in 窗口排队区"
        kinds = eventually(
            lambda: (
                [e["kind"] for e in client.get(f"/api/v1/alerts/{alert['id']}").json()["events"]]
                if len(client.get(f"/api/v1/alerts/{alert['id']}").json()["events"]) >= 6
                else None
            ),
            what="timeline with deliveries",
        )
    assert kinds.count("fired") == 1
    assert kinds.count("resolved") == 1
    assert kinds.count("notified") == 4  # two notices, to the log and the webhook


def test_failing_webhook_is_retried_then_reported(inbox: ThreadingHTTPServer) -> None:
    inbox.status = 500  # type: ignore[attr-defined]
    outcomes: list[tuple[str, bool, str]] = []
    done = threading.Event()

    def outcome(recorded: Sequence[Delivered]) -> None:
        outcomes.extend((o.channel, o.delivered, o.detail) for o in recorded)
        done.set()

    channel = WebhookChannel(f"http://127.0.0.1:{inbox.server_address[1]}/hook")
    dispatcher = Dispatcher([channel], outcome, sleep=lambda _s: False)
    dispatcher.start()
    dispatcher.submit(Notice(1, "fired", "queue_too_long", "warning", "b1", "B", "queue", "t", "b", "", "", "", None))
    assert done.wait(10)
    dispatcher.stop()
    channel.close()
    assert len(inbox.messages.get("/hook", [])) == 5  # type: ignore[attr-defined]
    ((name, delivered, detail),) = outcomes
    assert (name, delivered) == ("webhook", False)
    assert "500" in detail
    assert dispatcher.failed == 1


def notice(alert_id: int) -> Notice:
    return Notice(alert_id, "fired", "queue_too_long", "warning", "b1", "B", "queue", "t", "b", "", "", "", None)


class HeldChannel:
    """A channel whose first delivery waits until the test lets it go; it notes each delivery."""

    name = "held"

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.first = threading.Event()
        self.go = threading.Event()

    def deliver(self, notice: Notice) -> None:
        if not self.first.is_set():
            self.first.set()
            assert self.go.wait(10)
        self.events.append(f"delivered {notice.alert_id}")


def test_a_burst_of_notices_goes_out_before_its_outcomes_are_recorded_together() -> None:
    """Alerts fire in bursts: the notices waiting when the dispatcher comes to them all go out first, and their
    outcomes are recorded in one call (one registry transaction), not one each before the next notice goes."""
    events: list[str] = []
    channel = HeldChannel(events)
    dispatcher = Dispatcher([channel], lambda outcomes: events.append(f"recorded {len(outcomes)}"))
    dispatcher.start()
    dispatcher.submit(notice(1))
    assert channel.first.wait(10)
    for alert_id in range(2, 11):  # a burst, while the first notice is on its way
        dispatcher.submit(notice(alert_id))
    channel.go.set()
    eventually(lambda: events.count("recorded 9"), what="the burst recorded")
    dispatcher.stop()
    assert events == ["delivered 1", "recorded 1", *(f"delivered {n}" for n in range(2, 11)), "recorded 9"]
    assert dispatcher.delivered == 10


def test_outcomes_the_registry_refused_are_recorded_with_the_next_round() -> None:
    recorded: list[list[int]] = []
    refuse = [True]

    def record(outcomes: Sequence[Delivered]) -> None:
        if refuse.pop() if refuse else False:
            raise OSError("the registry is away")
        recorded.append([o.notice.alert_id for o in outcomes])

    channel = HeldChannel([])
    channel.go.set()
    dispatcher = Dispatcher([channel], record)
    dispatcher.deliver_now(notice(1))
    assert recorded == []
    dispatcher.deliver_now(notice(2))
    assert recorded == [[1, 2]]


def test_backlog_is_bounded_by_the_server_not_the_broker(mosquitto: Mosquitto) -> None:
    """A slow pipeline: paho's reader waits at the bound, the broker holds the rest, nothing is lost or doubled."""
    from unittest.mock import create_autospec

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from server.ingest.mqtt_source import MqttSettings, MqttSource, Received
    from server.ingest.pipeline import Pipeline
    from server.ingest.worker import IngestWorker

    seen: list[bytes] = []

    def slow_process(batch: list[Received]) -> None:
        seen.extend(m.payload for m in batch)
        threading.Event().wait(0.05)

    pipeline = create_autospec(Pipeline, instance=True, spec_set=True)
    pipeline.process.side_effect = slow_process
    source: MqttSource | None = None
    worker = IngestWorker(pipeline, lambda batch: source.ack(batch) if source else None, max_backlog=300)
    source = MqttSource(MqttSettings(host="127.0.0.1", port=mosquitto.port, client_id="bounded"), worker.put)
    worker.start()
    source.start()
    assert source.wait_connected(10)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(500)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    for n in range(6000):
        info = publisher.publish("lobby/v1/dev-001/queue", str(n).encode(), qos=1)
    info.wait_for_publish(30)
    eventually(lambda: len(seen) >= 6000, timeout=60, what="all 6000 processed")
    publisher.disconnect()
    publisher.loop_stop()
    worker.stop()
    source.stop()
    assert worker.peak_backlog <= 300
    assert sorted(int(p) for p in seen) == list(range(6000))


def test_the_pipeline_cost_benchmark_stores_every_report() -> None:
    """`bench.pipeline_cost`, reduced: every report it hands the pipeline is taken and stored (an occupancy and a
    wait point each, and the alerting zones' alerts), none refused; its figures are its own to print."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.pipeline_cost",
            "--batch",
            "300",
            "--batches",
            "2",
            "--repeat",
            "2",
            "--devices",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["received"] == 300 * (1 + 2 * 2)  # the first batch, then two repeats of two
    assert result["refused"] == 0
    assert result["stored_points"] > 2 * result["received"]
    assert len(result["runs"]) == 2
    assert all(us > 0 for us in result["runs"])


def test_a_trickle_is_gathered_into_one_batch_and_a_stop_does_not_wait() -> None:
    """Messages arriving a few milliseconds apart wait for each other (a batch's cost is mostly fixed) up to the
    linger, and no longer; a stop is taken at once."""
    from unittest.mock import create_autospec

    from server.ingest.mqtt_source import Received
    from server.ingest.pipeline import Pipeline
    from server.ingest.worker import LINGER_S, IngestWorker

    batches: list[list[bytes]] = []
    pipeline = create_autospec(Pipeline, instance=True, spec_set=True)
    pipeline.process.side_effect = lambda batch: batches.append([m.payload for m in batch])
    worker = IngestWorker(pipeline, lambda batch: None)
    worker.start()
    for n in range(5):
        worker.put(Received("lobby/v1/dev-001/queue", str(n).encode(), 0.0, 0, 0))
        time.sleep(LINGER_S / 25)  # 16 ms in all: well inside the linger on a loaded machine too
    eventually(lambda: len(batches) == 1, timeout=10, what="the trickle processed")
    time.sleep(LINGER_S * 2)
    worker.put(Received("lobby/v1/dev-001/queue", b"late", 0.0, 0, 0))
    eventually(lambda: len(batches) == 2, timeout=10, what="the later message processed")
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < LINGER_S * 5
    assert batches == [[b"0", b"1", b"2", b"3", b"4"], [b"late"]]
