"""The live state as the scale-out's workers share it with the API processes: what a worker's live state changed,
and each entry's round trip through the bucket's JSON (server/scale/live_codec.py)."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from server.live import BranchNow, CallNow, DeviceNow, LastReply, LiveState, ReadingNow, SnapshotNow, ZoneNow
from server.scale import live_codec

AT = datetime(2026, 12, 6, 1, 2, 3, 456000, tzinfo=UTC)


def test_a_tracked_live_state_hands_over_what_changed_once() -> None:
    live = LiveState(track=True)
    live.set_zone("b1", "queue", ZoneNow(4, 0.5, AT, "b1-cam"))
    live.set_reading("b1", "b1-env/temp", ReadingNow("temperature", 21.5, True, "b1-env", AT))
    live.set_devices({"b1-cam": DeviceNow(online=True)})
    changes = live.take_changes()
    assert changes.branches == {
        "b1": BranchNow(
            {"queue": ZoneNow(4, 0.5, AT, "b1-cam")},
            {"b1-env/temp": ReadingNow("temperature", 21.5, True, "b1-env", AT)},
        )
    }
    assert changes.devices == {"b1-cam": DeviceNow(online=True)}
    assert live.take_changes() == no_changes()
    untracked = LiveState()
    untracked.set_zone("b1", "queue", ZoneNow(4, 0.5, AT, "b1-cam"))
    assert untracked.take_changes() == no_changes()


def no_changes() -> object:
    return LiveState().take_changes()


def test_a_branch_comes_back_as_it_went() -> None:
    now = BranchNow(
        {"queue": ZoneNow(4, 0.5, AT, "b1-cam"), "q2": ZoneNow(None, None, AT, "b1-cam")},
        {"b1-env/door": ReadingNow("door", None, False, "b1-env", AT)},
        CallNow("ramp-bell", "accessibility", "b1-btn", AT),
    )
    assert live_codec.decode_branch(live_codec.encode_branch(now)) == now
    assert live_codec.decode_branch(live_codec.encode_branch(BranchNow())) == BranchNow()


def test_a_device_comes_back_with_every_field() -> None:
    reply = LastReply("label-1a2b", False, "too dark", AT, "label.error.dark", {"zone": "queue", "n": 3})
    now = DeviceNow(
        online=True,
        last_seen=1_765_000_000.25,
        clock_skew_ms=-12.5,
        agent_version="0.1.0",
        config_version=7,
        outbox_depth=3,
        outbox_dropped=1,
        not_stored=2,
        last_reply=reply,
        counting={"queue": "heads", "door": "detector"},
        fitting=("queue",),
        stream="00000000deadbeef",
        received_seq=99,
        missing=4,
        duplicates=5,
        gaps=((10, 12), (20, 20)),
    )
    assert {f.name for f in fields(DeviceNow)} <= {f.name for f in fields(now) if getattr(now, f.name)}
    assert live_codec.decode_device(live_codec.encode_device(now)) == now
    assert live_codec.decode_device(live_codec.encode_device(DeviceNow())) == DeviceNow()


def test_a_snapshot_comes_back_with_its_image() -> None:
    now = SnapshotNow("snap-1", b"\xff\xd8\x00\x01jpeg", 640, 480, AT, 5.0)
    back = live_codec.decode_snapshot(live_codec.encode_snapshot(now), received=123.0)
    assert back == SnapshotNow("snap-1", b"\xff\xd8\x00\x01jpeg", 640, 480, AT, 123.0)


def test_keys_carry_any_name_and_give_it_back() -> None:
    for name in ("b1", "阜成门 支局.1", "dev/with/slashes"):
        key = live_codec.key(live_codec.BRANCH, name)
        assert all(c.isalnum() or c in "-_=." for c in key), key
        assert live_codec.name_of(key) == (live_codec.BRANCH, name)


def test_what_a_person_reads_changes_the_signature_and_what_only_moves_on_does_not() -> None:
    seen = DeviceNow(online=True, last_seen=1.0, received_seq=5, clock_skew_ms=3.0)
    later = DeviceNow(online=True, last_seen=2.0, received_seq=6, clock_skew_ms=4.0)
    assert live_codec.signature(seen) == live_codec.signature(later)
    assert live_codec.signature(seen) != live_codec.signature(DeviceNow(online=False, last_seen=2.0))
    counted = BranchNow({"queue": ZoneNow(4, 0.5, AT, "b1-cam")})
    recounted = BranchNow({"queue": ZoneNow(4, 0.4, datetime(2026, 12, 6, 2, tzinfo=UTC), "b1-cam")})
    assert live_codec.signature(counted) == live_codec.signature(recounted)
    assert live_codec.signature(counted) != live_codec.signature(BranchNow({"queue": ZoneNow(5, 0.5, AT, "b1-cam")}))
    called = BranchNow(counted.zones, call=CallNow("ramp-bell", "accessibility", "b1-btn", AT))
    assert live_codec.signature(counted) != live_codec.signature(called)
