import numpy as np
import pytest

from edge_agent.counting.foreground import ForegroundCounter
from edge_agent.counting.zones import Zone, polygon_mask
from edge_agent.debounce import PressFilter
from edge_agent.reporting import OccupancyReporter
from lobby_sim.render import PERSON_AREA_PX, QUEUE_ZONE, STAFF_AREA, LobbyRenderer


def counter() -> ForegroundCounter:
    return ForegroundCounter([Zone("queue", QUEUE_ZONE, "feet", PERSON_AREA_PX)], [STAFF_AREA])


@pytest.mark.parametrize("waiting", [0, 1, 4, 9, 17, 30])
def test_counts_people_in_the_zone_not_at_windows_or_behind_counter(waiting: int) -> None:
    renderer, c = LobbyRenderer(seed=3), counter()
    c.count(renderer.render(0, 0, 0))  # empty lobby at start-up
    (result,) = c.count(renderer.render(waiting, serving=2, staff=3))
    assert result.count == waiting


def test_people_who_stand_still_stay_counted() -> None:
    renderer, c = LobbyRenderer(seed=4), counter()
    c.count(renderer.render(0, 0, 0))
    counts = [c.count(renderer.render(6, 0, 3))[0].count for _ in range(240)]  # 2 minutes at 2 fps
    assert counts[-1] == 6
    assert min(counts) == 6


def test_zone_contains_and_mask() -> None:
    zone = Zone("q", [(10, 10), (50, 10), (50, 50), (10, 50)])
    assert zone.contains(30, 30)
    assert not zone.contains(5, 30)
    mask = polygon_mask((60, 60), [zone.polygon])
    assert mask[30, 30] == 255
    assert mask[5, 5] == 0
    with pytest.raises(ValueError, match="at least 3 points"):
        Zone("bad", [(0, 0), (1, 1)])


def test_counter_refuses_no_zones() -> None:
    with pytest.raises(ValueError, match="at least one zone"):
        ForegroundCounter([])


def test_grey_frames_work_too() -> None:
    c = counter()
    renderer = LobbyRenderer(seed=5)
    c.count(renderer.render(0, 0, 0)[:, :, 0].copy())
    frame = renderer.render(3, 0, 0)[:, :, 0].copy()
    assert frame.ndim == 2
    assert c.count(frame)[0].count == 3
    assert np.asarray(frame).dtype == np.uint8


def test_reporter_sends_on_change_and_keepalive() -> None:
    reporter = OccupancyReporter(keepalive_s=10, smoothing_frames=1)
    assert reporter.due(0.0, {"q": 3})
    assert not reporter.due(1.0, {"q": 3})
    assert reporter.due(2.0, {"q": 4})
    assert not reporter.due(11.0, {"q": 4})
    assert reporter.due(12.0, {"q": 4})


def test_smoothing_takes_the_median_and_reports_blindness_as_unknown() -> None:
    reporter = OccupancyReporter(keepalive_s=10, smoothing_frames=3)
    assert reporter.smooth("q", 5) == 5
    assert reporter.smooth("q", 9) == 5  # median_low of [5, 9]
    assert reporter.smooth("q", 5) == 5  # one odd frame does not move the count
    assert reporter.smooth("q", None) == 5
    assert reporter.smooth("q", None) is None  # mostly blind: unknown, never a fake 0


def test_press_filter_merges_repeated_presses() -> None:
    presses = PressFilter(repeat_guard_s=5)
    assert presses.accept("bell", 0.0)
    assert not presses.accept("bell", 2.0)
    assert presses.accept("help", 2.0)
    assert presses.accept("bell", 5.5)
