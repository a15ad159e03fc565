from pathlib import Path

import pytest

from edge_agent.outbox import Outbox


def payload(seq: int, stream: str) -> bytes:
    return f'{{"seq": {seq}, "stream": "{stream}"}}'.encode()


def test_sequence_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    stream = box.stream
    assert [box.append("t", payload) for _ in range(3)] == [1, 2, 3]
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.stream == stream
    assert box.append("t", payload) == 4
    assert [p.seq for p in box.pending(0, 10)] == [1, 2, 3, 4]
    assert box.pending(0, 10)[3].payload == payload(4, stream)
    box.close()


def test_a_new_outbox_is_a_new_stream(tmp_path: Path) -> None:
    a, b = Outbox(tmp_path / "a.sqlite3"), Outbox(tmp_path / "b.sqlite3")
    assert a.stream != b.stream
    a.close()
    b.close()


def test_acknowledged_messages_leave_the_pending_list_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    for _ in range(5):
        box.append("t", payload)
    box.mark_acked([1, 2])
    assert [p.seq for p in box.pending(0, 10)] == [3, 4, 5]
    assert [p.seq for p in box.pending(3, 10)] == [4, 5]
    assert box.depth() == 3
    box.mark_refused(4, "Not authorized")
    assert [p.seq for p in box.pending(0, 10)] == [3, 5]
    assert box.refused_count() == 1
    box.close()


def test_a_failing_build_stores_nothing_and_uses_no_number(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")

    def broken(seq: int, stream: str) -> bytes:
        raise ValueError("bad message")

    with pytest.raises(ValueError, match="bad message"):
        box.append("t", broken)
    assert box.append("t", payload) == 1
    assert box.depth() == 1
    box.close()


def test_history_is_bounded(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", history_rows=1000)
    for _ in range(2500):
        box.append("t", payload)
    box.mark_acked(list(range(1, 2501)))
    kept = box._db.execute("SELECT min(seq), count(*) FROM outbox").fetchone()
    assert kept == (1501, 1000)
    assert box.append("t", payload) == 2501
    box.close()


def test_requeue_sends_history_again_and_names_what_is_gone(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", history_rows=1000)
    for _ in range(2200):
        box.append("t", payload)
    box.mark_acked(list(range(1, 2201)))  # pruning keeps the newest 1000 acknowledged
    assert box.depth() == 0
    count, gone = box.requeue(1000, 1300)
    assert count == 100
    assert gone == [[1000, 1200]]
    assert [p.seq for p in box.pending(0, 1000)] == list(range(1201, 1301))
    assert box.requeue(2150, 2160) == (11, [])
    assert box.requeue(5000, 5001) == (0, [[5000, 5001]])
    box.close()
