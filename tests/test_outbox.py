import contextlib
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.transport.outbox import Outbox, OutboxFull


def payload(seq: int, stream: str) -> bytes:
    return f'{{"seq": {seq}, "stream": "{stream}"}}'.encode()


def test_sequence_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    stream = box.stream
    assert [box.append("t", payload, 0.0) for _ in range(3)] == [1, 2, 3]
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.stream == stream
    assert box.append("t", payload, 0.0) == 4
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
        box.append("t", payload, 0.0)
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
        box.append("t", broken, 0.0)
    assert box.append("t", payload, 0.0) == 1
    assert box.depth() == 1
    box.close()


def test_history_is_bounded(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", history_rows=1000)
    for _ in range(2500):
        box.append("t", payload, 0.0)
    box.mark_acked(list(range(1, 2501)))
    kept = box._db.execute("SELECT min(seq), count(*) FROM outbox").fetchone()
    assert kept == (1501, 1000)
    assert box.append("t", payload, 0.0) == 2501
    box.close()


def test_requeue_sends_history_again_and_names_what_is_gone(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", history_rows=1000)
    for _ in range(2200):
        box.append("t", payload, 0.0)
    box.mark_acked(list(range(1, 2201)))  # pruning keeps the newest 1000 acknowledged
    assert box.depth() == 0
    count, gone = box.requeue(1000, 1300)
    assert count == 100
    assert gone == [[1000, 1200]]
    assert [p.seq for p in box.pending(0, 1000)] == list(range(1201, 1301))
    assert box.requeue(2150, 2160) == (11, [])
    assert box.requeue(5000, 5001) == (0, [[5000, 5001]])
    box.close()


def big(seq: int, stream: str) -> bytes:
    return bytes(2000) + str(seq).encode()


def test_a_full_outbox_gives_up_history_first_then_the_oldest_unsent(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=1 * 2**20)
    first_full = None
    for n in range(1, 2000):
        box.append("t", big, 0.0)
        if n == 200:
            box.mark_acked(list(range(1, 201)))  # some history to give up first
        if box.dropped and first_full is None:
            first_full = n
    assert first_full is not None, "the bound never bit"
    assert box._db.execute("SELECT count(*) FROM outbox WHERE acked = 1").fetchone()[0] == 0  # history went first
    oldest = box.pending(0, 1)[0].seq
    assert oldest == 200 + box.dropped + 1  # then the oldest unsent, each counted
    assert box.last_seq() == 1999  # the newest are all there
    assert (tmp_path / "o.sqlite3").stat().st_size <= 1.1 * 2**20
    box.close()


def test_too_old_unsent_messages_expire_and_are_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_age_s=3600)
    for created in (0.0, 100.0, 5000.0):
        box.append("t", payload, created)
    assert box.expire(now=3800.0) == 2
    assert [p.seq for p in box.pending(0, 10)] == [3]
    assert box.dropped == 2
    box.close()
    assert Outbox(tmp_path / "o.sqlite3").dropped == 2  # the count survives a restart


def test_a_database_that_cannot_make_room_says_so(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=16 * 4096)

    def huge(seq: int, stream: str) -> bytes:
        return bytes(200_000)

    with pytest.raises(OutboxFull, match="outbox full"):
        box.append("t", huge, 0.0)
    assert box.append("t", payload, 0.0) == 1  # the failed message used no number
    box.close()


@pytest.fixture
def small_card(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 2 MiB (tmpfs), as a small or nearly full SD card; the tests run as root (CI does)."""
    card = tmp_path / "card"
    card.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(card)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs for the full-card tests (run as root): {done.stderr.strip()}")
    yield card
    subprocess.run(["umount", "--lazy", str(card)], check=True)


def churn(box: Outbox, rounds: int, seed: int = 1) -> tuple[int, int]:
    """Messages made and acknowledged as a running agent does; returns (appends refused, acks that failed)."""
    rnd = random.Random(seed)
    refused = failed = 0
    for i in range(rounds):
        try:
            box.append("t", lambda _seq, _stream: bytes(rnd.randint(100, 4000)), 0.0)
        except (OutboxFull, sqlite3.OperationalError):
            refused += 1
        if i % 3 == 0:
            try:
                box.mark_acked([p.seq for p in box.pending(0, rnd.randint(1, 300))])
            except sqlite3.OperationalError:
                failed += 1
    return refused, failed


def test_an_outbox_on_a_small_card_never_fills_it(small_card: Path) -> None:
    """Measured before: on a 2 MiB card the write-ahead log took the room, and 3,924 of 4,000 messages could
    not be stored."""
    box = Outbox(small_card / "outbox.sqlite3")  # configured for 256 MiB: the card is the bound
    assert churn(box, 4000) == (0, 0)
    assert shutil.disk_usage(small_card).free > 0
    box.close()


def test_an_outbox_on_a_card_something_else_filled_goes_on(small_card: Path) -> None:
    box = Outbox(small_card / "outbox.sqlite3")
    churn(box, 100)
    with (small_card / "filler").open("wb") as filler, contextlib.suppress(OSError):
        while True:  # something else fills the card to the last byte
            filler.write(bytes(65536))
            filler.flush()
    assert shutil.disk_usage(small_card).free < 4096
    refused, failed = churn(box, 3000, seed=2)
    assert (refused, failed) == (0, 0)  # the reserve file made the room to make room
    box.close()
