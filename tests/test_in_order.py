"""Each device's messages put back in its order before the rules see them (server.scale.in_order): pure, with the
time passed in."""

from __future__ import annotations

from server.scale.in_order import InOrder, sender_of

KEY = (3, "dev-1/5ca1e")


def test_messages_in_order_pass_at_once() -> None:
    order: InOrder[int] = InOrder(wait_s=6.0)
    assert [order.offer(KEY, seq, seq, now=0.0) for seq in (10, 11, 12)] == [[10], [11], [12]]
    assert order.due(100.0) == []
    assert len(order) == 0
    assert order.waited == 0


def test_a_message_after_a_gap_waits_for_the_gap_to_fill_and_then_all_go_in_order() -> None:
    order: InOrder[int] = InOrder(wait_s=6.0)
    order.offer(KEY, 1, 1, now=0.0)
    assert order.offer(KEY, 3, 3, now=0.1) == []
    assert order.offer(KEY, 4, 4, now=0.2) == []
    assert order.due(5.0) == []
    assert len(order) == 2
    assert order.offer(KEY, 2, 2, now=5.5) == [2, 3, 4]
    assert order.offer(KEY, 5, 5, now=5.6) == [5]
    assert (order.waited, order.given_up, len(order)) == (2, 0, 0)


def test_a_gap_that_never_fills_holds_its_device_for_the_wait_only() -> None:
    order: InOrder[int] = InOrder(wait_s=6.0)
    order.offer(KEY, 1, 1, now=0.0)
    order.offer(KEY, 3, 3, now=1.0)
    order.offer(KEY, 5, 5, now=2.0)  # a second gap behind the first
    assert order.due(6.9) == []
    assert order.due(7.0) == [3, 5]
    assert order.given_up == 1
    assert order.offer(KEY, 6, 6, now=7.1) == [6]
    assert order.offer(KEY, 2, 2, now=8.0) == [2]  # come at last: passed on, the sequence window calls it late


def test_a_number_known_from_the_saved_state_makes_the_first_message_after_a_takeover_wait() -> None:
    """A partition taken on: its devices go on from their saved numbers, so a newer message delivered before
    the former owner's unsaved one (which comes again after the ack wait) waits for it; a device that sent
    nothing unsaved is not held at all."""
    order: InOrder[int] = InOrder(wait_s=6.0)
    other = (3, "dev-2/5ca1e")
    order.expect(KEY, 8)  # saved up to 7
    order.expect(other, 21)
    assert order.offer(KEY, 9, 9, now=0.0) == []  # 8 was in the former owner's hands
    assert order.offer(other, 21, 21, now=0.1) == [21]
    assert order.offer(KEY, 7, 7, now=0.2) == [7]  # saved already: a duplicate, passed for the window to drop
    assert order.offer(KEY, 8, 8, now=5.0) == [8, 9]
    order.expect(KEY, 3)  # known already (from the messages themselves): not moved back
    assert order.offer(KEY, 10, 10, now=5.1) == [10]


def test_senders_wait_apart_and_duplicates_are_not_held() -> None:
    order: InOrder[str] = InOrder(wait_s=6.0)
    other = (3, "dev-2/5ca1e")
    order.offer(KEY, 1, "a1", now=0.0)
    order.offer(other, 7, "b7", now=0.0)
    assert order.offer(KEY, 3, "a3", now=0.1) == []
    assert order.offer(other, 8, "b8", now=0.2) == ["b8"]  # another device is not held up
    assert order.offer(KEY, 1, "a1 again", now=0.3) == ["a1 again"]
    assert order.offer(KEY, 3, "a3 again", now=0.4) == []  # kept with the first copy
    assert order.offer(KEY, 2, "a2", now=0.5) == ["a2", "a3", "a3 again"]


def test_a_partition_handed_on_forgets_its_senders() -> None:
    order: InOrder[int] = InOrder(wait_s=6.0)
    order.offer(KEY, 1, 1, now=0.0)
    order.offer(KEY, 3, 3, now=0.1)
    order.forget(lambda key: key[0] == 3)
    assert len(order) == 0
    assert order.due(100.0) == []
    assert order.offer(KEY, 9, 9, now=101.0) == [9]  # taken on again: its first message starts afresh


def test_the_sender_and_number_come_from_the_message_id() -> None:
    assert sender_of("dev-1/5ca1e5ca1e5ca1e0/42") == ("dev-1/5ca1e5ca1e5ca1e0", 42)
    assert sender_of("dev-1/#0123abcd") is None  # no number: an id made from the bytes
    assert sender_of("") is None
    assert sender_of("dev-1/str/x1") is None
