import json
from pathlib import Path

import pytest

from lobbywatch.protocol import (
    MAX_PAYLOAD_BYTES,
    Channel,
    InvalidPayload,
    InvalidTopic,
    QueueReport,
    Topic,
    parse_payload,
)
from lobbywatch.protocol.schema import schemas

GOOD = {
    "v": 1,
    "stream": "0123456789abcdef",
    "seq": 7,
    "ts": "2026-11-22T08:00:00.000+00:00",
    "uptime_s": 12.5,
    "zones": [{"zone": "queue", "occupancy": 4}],
}


def raw(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_topic_round_trip() -> None:
    topic = Topic("bj-001-cam1", Channel.QUEUE)
    assert str(topic) == "lobby/v1/bj-001-cam1/queue"
    assert Topic.parse(str(topic)) == topic


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("lobby/v2/dev1/queue", "not of the form"),
        ("lobby/v1/dev1/queue/extra", "not of the form"),
        ("lobby/v1/dev1/weather", "unknown channel 'weather'"),
        ("lobby/v1/Dev 1/queue", "device id"),
        ("lobby/v1/ab/queue", "device id"),
    ],
)
def test_bad_topics_say_why(topic: str, problem: str) -> None:
    with pytest.raises(InvalidTopic, match=problem):
        Topic.parse(topic)


def test_valid_payload_parses() -> None:
    message = parse_payload(Channel.QUEUE, raw())
    assert isinstance(message, QueueReport)
    assert message.seq == 7
    assert message.zones[0].occupancy == 4
    assert message.ts.utcoffset() is not None


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    message = parse_payload(Channel.QUEUE, raw(v=3, new_field={"x": 1}))
    assert isinstance(message, QueueReport)
    assert message.v == 3


@pytest.mark.parametrize(
    ("payload", "cause", "words"),
    [
        (b"{not json", "not_json", "not JSON"),
        (raw(seq="7"), "invalid", "queue field seq"),
        (raw(zones=[{"zone": "queue", "occupancy": "4"}]), "invalid", "zones.0.occupancy"),
        (raw(ts="2026-11-22T08:00:00"), "invalid", "timezone"),
        (raw(seq=0), "invalid", "seq"),
        (raw(zones=[]), "invalid", "zones"),
        (raw(stream="XYZ"), "invalid", "stream"),
    ],
)
def test_bad_payloads_are_refused_with_the_field_named(payload: bytes, cause: str, words: str) -> None:
    with pytest.raises(InvalidPayload, match=words) as info:
        parse_payload(Channel.QUEUE, payload)
    assert info.value.cause == cause


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b" " * (MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(InvalidPayload, match="exceeds") as info:
        parse_payload(Channel.QUEUE, payload)
    assert info.value.cause == "too_large"


def test_committed_json_schemas_match_the_models() -> None:
    folder = Path(__file__).parent.parent / "docs" / "schema"
    for name, schema in schemas().items():
        committed = json.loads((folder / f"{name}.schema.json").read_text(encoding="utf-8"))
        assert committed == json.loads(json.dumps(schema)), f"run `lobbywatch schema` to refresh {name}"
