import pytest

from server.rules.engine import RuleEngine
from server.rules.queue_length import Change, QueueRule, QueueState, step

RULE = QueueRule(threshold=8, for_s=300, clear_below=5, clear_for_s=120)


def run(values: list[tuple[float, int | None]], state: QueueState | None = None) -> list[tuple[str, float]]:
    state = state or QueueState()
    out = []
    for at, value in values:
        change = step(RULE, state, value, at)
        if change:
            out.append((change.change.value, at))
    return out


def test_fires_only_after_the_queue_stays_long() -> None:
    assert run([(0, 8), (100, 9), (299, 8)]) == []
    assert run([(0, 8), (100, 9), (300, 8)]) == [("fired", 300)]


def test_a_dip_restarts_the_duration() -> None:
    assert run([(0, 9), (200, 7), (210, 9), (500, 9), (510, 9)]) == [("fired", 510)]


def test_clears_with_hysteresis() -> None:
    history = [(0, 9), (300, 9), (310, 7), (400, 6), (500, 5), (600, 4), (620, 4)]
    assert run(history) == [("fired", 300), ("resolved", 620)]


def test_bouncing_around_the_threshold_does_not_flap() -> None:
    history = [(0, 9), (300, 9)] + [(300 + 10 * i, 8 if i % 2 else 7) for i in range(1, 60)]
    assert run(history) == [("fired", 300)]


def test_unknown_counts_neither_fire_nor_clear() -> None:
    assert run([(0, 9), (100, None), (300, None)]) == []
    assert run([(0, 9), (300, 9), (400, None), (1000, None)]) == [("fired", 300)]


def test_peak_is_reported_on_resolve() -> None:
    state = QueueState()
    for at, value in [(0, 9), (300, 9), (310, 14), (320, 3)]:
        step(RULE, state, value, at)
    change = step(RULE, state, 2, 440)
    assert change is not None
    assert (change.change, change.peak) == (Change.RESOLVED, 14)


def test_rule_refuses_clear_level_at_or_above_threshold() -> None:
    with pytest.raises(ValueError, match="clear_below"):
        QueueRule(threshold=5, for_s=0, clear_below=5, clear_for_s=0)


def test_branch_state_moves_between_engines() -> None:
    first = RuleEngine()
    first.observe_occupancy("b1", "queue", RULE, 9, 0)
    moved = RuleEngine()
    moved.load_branch("b1", first.export_branch("b1"))
    change = moved.observe_occupancy("b1", "queue", RULE, 9, 300)
    assert change is not None
    assert change.change is Change.FIRED


def test_restored_firing_alert_can_clear() -> None:
    engine = RuleEngine()
    engine.mark_firing("b1", "queue", peak=12)
    assert engine.observe_occupancy("b1", "queue", RULE, 3, 0) is None
    change = engine.observe_occupancy("b1", "queue", RULE, 3, 120)
    assert change is not None
    assert (change.change, change.peak) == (Change.RESOLVED, 12)
