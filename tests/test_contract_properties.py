"""Property-based tests of the wire contract and the ingest: any payload either parses into a message whose every
number is finite and bounded, or is refused with a named cause; through the real pipeline (SQLite store, SQLite
registry), every payload is stored or refused and counted, and every valid message around them is stored."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from lobbywatch.protocol import Channel, InvalidPayload, parse_payload
from lobbywatch.protocol.messages import EARLIEST, LATEST, MAX_SEQ, Envelope
from server.ingest.mqtt_source import Received
from server.registry import models
from server.runtime import Runtime
from server.settings import Settings
from tests.helpers import Device, write_site

CHANNELS = [Channel.QUEUE, Channel.BUTTON, Channel.FACILITY, Channel.HEALTH, Channel.REPLY, Channel.STATUS]

# JSON values a device could send, nasty ones included: huge and tiny numbers, deep nesting, long strings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2300-01-01T00:00:00+00:00",
            "1600-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59+00:00",
            "2026-11-30T08:00:00",
            "not a time",
            "0000-00-00",
            "",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
NON_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


def valid_queue(device: Device, occupancy: int = 3) -> dict[str, Any]:
    return device.envelope(zones=[{"zone": "queue", "occupancy": occupancy}])


def valid_for(channel: Channel, device: Device) -> dict[str, Any]:
    if channel is Channel.QUEUE:
        return valid_queue(device)
    if channel is Channel.BUTTON:
        return device.envelope(button="ramp", kind="accessibility")
    if channel is Channel.FACILITY:
        return device.envelope(readings=[{"sensor": "t1", "kind": "temperature", "value": 21.5, "ok": True}])
    if channel is Channel.HEALTH:
        return device.envelope(cpu_pct=3.0, mem_rss_mb=80.0, outbox_depth=0, clock_synced=True, agent_version="1.0")
    if channel is Channel.REPLY:
        return device.envelope(command="config", ok=True)
    return {"v": 1, "state": "online", "since": "2026-11-30T08:00:00+00:00", "agent_version": "1.0"}


@st.composite
def poisoned(draw: st.DrawFn) -> tuple[Channel, bytes]:
    """A valid payload with one field (top level or nested) replaced, or a number that is not finite."""
    channel = draw(st.sampled_from(CHANNELS))
    payload = valid_for(channel, Device.offline("dev-b2-cam"))
    target: Any = payload
    path = draw(st.lists(st.integers(min_value=0, max_value=9), max_size=3))
    for step in path:  # walk into a nested dict or list, if there is one
        children = (
            list(target.items())
            if isinstance(target, dict)
            else list(enumerate(target))
            if isinstance(target, list)
            else []
        )
        containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not containers:
            break
        target = containers[step % len(containers)][1]
    if isinstance(target, dict):
        key = draw(st.sampled_from([*sorted(target), "extra"]))
        target[key] = draw(json_values)
    elif isinstance(target, list):
        target[0] = draw(json_values)
    raw = json.dumps(payload)
    if draw(st.booleans()):  # and now and then a number JSON does not allow
        raw = raw.replace("1.0", draw(st.sampled_from(NON_JSON_NUMBERS)), 1)
    return channel, raw.encode()


def refusal(channel: Channel, raw: bytes) -> str | None:
    """The cause the contract refuses the payload for (its message must name the problem), or None."""
    try:
        parse_payload(channel, raw)
    except InvalidPayload as exc:
        return exc.cause if str(exc) else "no message"
    return None


def finite_numbers(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite_numbers(v) for v in value)
    return True


@settings(max_examples=400, deadline=None)
@given(poisoned())
def test_any_payload_parses_into_a_bounded_message_or_is_refused_with_a_cause(case: tuple[Channel, bytes]) -> None:
    channel, raw = case
    if refusal(channel, raw) is not None:
        return
    message = parse_payload(channel, raw)
    assert finite_numbers(message.model_dump())
    if isinstance(message, Envelope):
        assert 1 <= message.seq <= MAX_SEQ
        assert EARLIEST <= message.ts < LATEST


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_refused_or_parsed_never_raised(raw: bytes) -> None:
    for channel in CHANNELS:
        assert refusal(channel, raw) in (None, "invalid", "not_json", "too_large")


def test_deep_nesting_and_megabyte_bodies_are_refused_by_name() -> None:
    deep = ('{"v": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    with pytest.raises(InvalidPayload) as refused:
        parse_payload(Channel.QUEUE, deep)
    assert refused.value.cause == "too_large"
    nested = ('{"v": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}").encode()
    with pytest.raises(InvalidPayload) as refused:
        parse_payload(Channel.QUEUE, nested)
    assert refused.value.cause in ("not_json", "invalid")


@pytest.fixture(scope="module")
def offline_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The real pipeline, store and registry, fed directly (no broker): fast enough for many examples."""
    folder: Path = tmp_path_factory.mktemp("properties")
    runtime = Runtime(
        Settings(
            mode="dev",
            database_url=f"sqlite:///{folder / 'registry.sqlite3'}",
            site_file=write_site(folder),
            timeseries_path=folder / "ts.sqlite3",
        )
    )
    yield runtime
    runtime.store.close()
    runtime.engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(poisoned(), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_every_payload_is_stored_or_refused_and_every_valid_one_around_it_stored(
    offline_runtime: Runtime, poison: list[tuple[Channel, bytes]], rnd: Any
) -> None:
    runtime = offline_runtime
    good = Device.offline("dev-b1-cam")
    stream = uuid.uuid4().hex[:16]  # a fresh outbox per example: its sequence starts again
    valid = []
    for i in range(len(poison) + 1):
        payload = valid_queue(good, occupancy=i % 50)
        payload["stream"] = stream
        valid.append(Received("lobby/v1/dev-b1-cam/queue", json.dumps(payload).encode(), time.time(), 0, 1))
    bad = [Received(f"lobby/v1/dev-b2-cam/{channel.value}", raw, time.time(), 0, 1) for channel, raw in poison]
    batch = valid + bad
    rnd.shuffle(batch)
    with runtime.sessions() as session:
        last_letter = session.scalar(select(func.max(models.DeadLetter.id))) or 0
    refused_before = sum(runtime.rejects.snapshot().values())
    errors_before = runtime.pipeline.stats.internal_errors

    runtime.pipeline.process(batch)

    assert runtime.pipeline.stats.internal_errors == errors_before
    times = {p.time_ns for p in runtime.store.query("occupancy", "b1", 0) if p.tag("device") == "dev-b1-cam"}
    for received in valid:
        ts = datetime.fromisoformat(json.loads(received.payload)["ts"])
        assert int(ts.timestamp() * 1_000_000) * 1000 in times, "a valid message was not stored"
    with runtime.sessions() as session:
        letters = list(session.scalars(select(models.DeadLetter).where(models.DeadLetter.id > last_letter)))
    # every refusal is counted and kept with its payload; what the contract refuses is among them
    assert len(letters) == sum(runtime.rejects.snapshot().values()) - refused_before
    kept = [x.payload for x in letters]
    for channel, raw in poison:
        cause = refusal(channel, raw)
        if cause is not None:
            assert raw in kept
            assert any(x.cause == cause for x in letters if x.payload == raw)
