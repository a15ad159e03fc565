from server.processing.sequence import MAX_GAP_RANGES, SequenceTracker, Verdict


def test_in_order_messages_are_new() -> None:
    tracker = SequenceTracker()
    assert [tracker.accept("s1", n) for n in (1, 2, 3)] == [Verdict.NEW] * 3
    assert tracker.missing == 0


def test_duplicates_are_recognised() -> None:
    tracker = SequenceTracker()
    for n in (1, 2, 3):
        tracker.accept("s1", n)
    assert tracker.accept("s1", 2) is Verdict.DUPLICATE
    assert tracker.accept("s1", 3) is Verdict.DUPLICATE
    assert tracker.duplicates == 2


def test_gaps_are_counted_and_filled_by_late_messages() -> None:
    tracker = SequenceTracker()
    tracker.accept("s1", 1)
    tracker.accept("s1", 10)
    assert tracker.missing == 8
    assert tracker.accept("s1", 5) is Verdict.LATE
    assert tracker.gaps == [[2, 4], [6, 9]]
    assert tracker.accept("s1", 5) is Verdict.DUPLICATE
    for n in (2, 3, 4, 6, 7, 8, 9):
        assert tracker.accept("s1", n) is Verdict.LATE
    assert tracker.missing == 0
    assert tracker.gaps == []


def test_a_new_stream_starts_over() -> None:
    tracker = SequenceTracker()
    tracker.accept("s1", 500)
    assert tracker.accept("s2", 1) is Verdict.NEW
    assert tracker.restarts == 1
    assert tracker.missing == 0


def test_gap_ranges_are_bounded_and_what_is_given_up_is_counted() -> None:
    tracker = SequenceTracker()
    for n in range(1, 2 * (MAX_GAP_RANGES + 10), 2):  # every other message lost
        tracker.accept("s1", n)
    assert len(tracker.gaps) == MAX_GAP_RANGES
    assert tracker.given_up == 9


def test_state_round_trips_through_a_dict() -> None:
    tracker = SequenceTracker()
    for n in (1, 4, 7):
        tracker.accept("s1", n)
    copy = SequenceTracker.from_dict(tracker.to_dict())
    assert copy == tracker
    assert copy.accept("s1", 2) is Verdict.LATE


def test_reservoir_percentiles_cover_the_whole_stream() -> None:
    from server.ingest.stats import Reservoir

    reservoir = Reservoir(1000)
    assert reservoir.percentiles(50) == {"p50": None}
    for value in range(100_000):
        reservoir.add(float(value))
    got = reservoir.percentiles(50, 99)
    assert got["p50"] is not None
    assert got["p99"] is not None
    assert 45_000 < got["p50"] < 55_000  # a sample of all, not the last thousand
    assert got["p99"] > 95_000
    assert reservoir.seen == 100_000


def test_give_up_removes_what_the_device_no_longer_has() -> None:
    tracker = SequenceTracker()
    tracker.accept("s1", 1)
    tracker.accept("s1", 20)
    tracker.accept("s1", 40)
    assert tracker.gaps == [[2, 19], [21, 39]]
    assert tracker.give_up(10, 25) == 15
    assert tracker.gaps == [[2, 9], [26, 39]]
    assert tracker.given_up == 15
    assert tracker.give_up(100, 200) == 0


def test_gap_repair_waits_then_asks_then_retries() -> None:
    from server.ingest.repair import GapRepair

    repair = GapRepair(after_s=10, retry_s=60)
    tracker = SequenceTracker()
    tracker.accept("s1", 1)
    tracker.accept("s1", 5)
    assert list(repair.plan(0, {"d1": tracker})) == []  # just opened: may still close by itself
    assert list(repair.plan(9, {"d1": tracker})) == []
    (request,) = repair.plan(10, {"d1": tracker})
    assert (request.device, request.stream, request.ranges) == ("d1", "s1", [[2, 4]])
    assert list(repair.plan(30, {"d1": tracker})) == []  # asked recently
    assert len(list(repair.plan(70, {"d1": tracker}))) == 1
    for n in (2, 3, 4):
        tracker.accept("s1", n)
    assert list(repair.plan(200, {"d1": tracker})) == []
    assert repair.requests == 2


def test_new_streams_are_counted_as_restarts() -> None:
    tracker = SequenceTracker()
    tracker.accept("aaaaaaaa", 1)
    assert tracker.restarts == 0  # the first stream is no restart
    tracker.accept("bbbbbbbb", 1)
    tracker.accept("cccccccc", 1)
    assert tracker.restarts == 2


def test_past_the_bound_the_oldest_gap_is_given_up() -> None:
    tracker = SequenceTracker()
    tracker.accept("aaaaaaaa", 1)
    for n in range(MAX_GAP_RANGES + 1):  # every other number missing: one gap each
        tracker.accept("aaaaaaaa", 3 + 2 * n)
    assert len(tracker.gaps) == MAX_GAP_RANGES
    assert tracker.given_up == 1
    assert tracker.gaps[0] == [4, 4]  # [2, 2], the oldest, went


def test_giving_up_cuts_gaps_exactly_at_their_edges() -> None:
    tracker = SequenceTracker(stream="aaaaaaaa", highest=20, gaps=[[5, 9], [12, 14]])
    assert tracker.give_up(9, 12) == 2  # the last of one gap, the first of the next
    assert tracker.gaps == [[5, 8], [13, 14]]
    assert tracker.give_up(6, 6) == 1  # from the middle: both sides stay, one number each side at least
    assert tracker.gaps == [[5, 5], [7, 8], [13, 14]]
    assert tracker.give_up(1, 4) == 0  # before every gap: nothing
    assert tracker.given_up == 3
