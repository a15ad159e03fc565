import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_agent.counting.background import QuietestFrames
from edge_agent.counting.calibration import CalibrationError, CalibrationStore, calibrate
from edge_agent.counting.counter import PeopleCounter
from edge_agent.counting.dataset import DatasetError, load_dataset
from edge_agent.counting.detector import distinct
from edge_agent.counting.features import DIFF_THRESHOLD, BandFeatures, grey
from edge_agent.counting.regression import fit_ridge
from edge_agent.counting.zones import Zone, polygon_mask
from edge_agent.debounce import PressFilter
from edge_agent.reporting import OccupancyReporter
from lobby_sim.camera import calibrate_simulated
from lobby_sim.render import QUEUE_ZONE, STAFF_AREA, LobbyRenderer

ROOT = Path(__file__).parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
ZONE = Zone("queue", list(QUEUE_ZONE))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[PeopleCounter, LobbyRenderer]:
    folder = tmp_path_factory.mktemp("device")
    renderer = LobbyRenderer(seed=3)
    calibrate_simulated(folder, renderer, ZONE, seed=3)
    store = CalibrationStore(folder)
    counter = PeopleCounter([ZONE], (360, 640), {"queue": store.load("queue")}, store.background(), [STAFF_AREA])
    return counter, renderer


@pytest.mark.parametrize("waiting", [0, 1, 4, 9, 17, 30])
def test_calibrated_zone_counts_the_queue_not_the_windows(
    calibrated: tuple[PeopleCounter, LobbyRenderer], waiting: int
) -> None:
    counter, renderer = calibrated
    (result,) = counter.count(renderer.render(waiting, serving=2, staff=3))
    assert result.method == "regression"
    assert abs(result.count - waiting) <= max(1, round(0.1 * waiting))
    assert result.error is not None
    assert result.error < 2


def test_people_who_stand_still_stay_counted(calibrated: tuple[PeopleCounter, LobbyRenderer]) -> None:
    counter, renderer = calibrated
    counts = [counter.count(renderer.render(6, 0, 3))[0].count for _ in range(120)]
    assert set(counts) == {6}  # the background is the calibrated empty lobby: nobody fades into it


def test_a_calibration_for_another_polygon_is_not_used(tmp_path: Path) -> None:
    renderer = LobbyRenderer(seed=1)
    calibrate_simulated(tmp_path, renderer, ZONE)
    store = CalibrationStore(tmp_path)
    moved = Zone("queue", [(0, 150), (600, 150), (600, 350), (0, 350)])
    counter = PeopleCounter([moved], (360, 640), {"queue": store.load("queue")}, store.background())
    assert counter.methods() == {"queue": "detector"}


def test_areas_to_ignore_leave_the_calibrated_count_untouched(tmp_path: Path) -> None:
    """Staff behind the counter, inside a zone drawn over the whole room: whatever moves in the ignored area
    changes nothing the regression sees, and a calibration fitted without the area is not used with it."""
    whole = [(0, 0), (640, 0), (640, 360), (0, 360)]
    masked = Zone("queue", whole, ignore=[list(STAFF_AREA)])
    renderer = LobbyRenderer(seed=5)
    calibrate_simulated(tmp_path, renderer, masked, seed=5)
    store = CalibrationStore(tmp_path)
    calibration = store.load("queue")
    assert calibration is not None
    assert calibration.ignore == [[list(p) for p in STAFF_AREA]]
    features = BandFeatures(masked, (360, 640), store.background())
    frame = renderer.render(7, serving=2, staff=3)
    busy = frame.copy()
    busy[5:65, 10:630] = np.random.default_rng(0).integers(0, 255, (60, 620, 3), dtype=np.uint8)  # staff moving
    assert np.array_equal(features(frame), features(busy))
    assert not np.array_equal(BandFeatures(Zone("queue", whole), (360, 640), store.background())(frame), features(busy))
    counter = PeopleCounter([masked], (360, 640), {"queue": calibration}, store.background(), [STAFF_AREA])
    assert counter.methods() == {"queue": "regression"}
    assert counter.count(busy) == counter.count(frame)
    unmasked = PeopleCounter([Zone("queue", whole)], (360, 640), {"queue": calibration}, store.background())
    assert unmasked.methods() == {"queue": "detector"}  # fitted without the staff's area: not valid with it
    elsewhere = Zone("queue", whole, ignore=[list(STAFF_AREA), [(700, 0), (800, 0), (800, 50)]])
    assert calibration.matches(elsewhere, (360, 640))  # an area outside the zone changes nothing in it
    legacy = replace(calibration, ignore=None)  # fitted before areas to ignore applied: used as it was fitted
    old = PeopleCounter([masked], (360, 640), {"queue": legacy}, store.background())
    assert old.methods() == {"queue": "regression"}
    assert old.count(busy) != old.count(frame)


def test_a_replacement_camera_learns_the_empty_lobby_and_counts_by_the_carried_calibration(tmp_path: Path) -> None:
    """The calibration fitted on the old camera, as numbers; the new camera at the same place never saw the
    lobby empty on purpose: it keeps the quietest of its samples and takes their median."""
    calibrate_simulated(tmp_path, LobbyRenderer(seed=3), ZONE, seed=3)
    carried = CalibrationStore(tmp_path).load("queue")
    assert carried is not None
    lobby, rng = LobbyRenderer(seed=3), random.Random(5)
    learner = QuietestFrames(period_s=300, samples=30, keep=7)
    background, now = None, 0.0
    while background is None:
        waiting = rng.choice([0, 1, 2, 3, 5, 8, 12, 20])  # a lobby that is seldom empty
        frame = lobby.render(waiting, rng.randint(0, 3), 3)
        background = learner.offer(frame, waiting, now)
        if background is None:
            assert learner.offer(frame, waiting, now + 1) is None  # sooner than the next sample is due: not taken
        now += 10
    assert (learner.seen, now) == (30, 300)
    off = np.abs(background.astype(int) - grey(lobby.render(0, 0, 3)).astype(int)) > DIFF_THRESHOLD
    assert off.mean() < 0.01  # pixels that would read as a person (the median of every sample: 1.7%)
    counter = PeopleCounter([ZONE], (360, 640), {"queue": carried}, background, [STAFF_AREA])
    for waiting in (0, 4, 9, 17, 30):
        (result,) = counter.count(lobby.render(waiting, serving=2, staff=3))
        assert result.method == "regression"
        assert abs(result.count - waiting) <= max(1, round(0.1 * waiting)), (waiting, result.count)


def test_calibration_refuses_what_cannot_work() -> None:
    frames = [LobbyRenderer(0).render(n, 0, 0) for n in (3, 3, 3, 3, 3)]
    with pytest.raises(CalibrationError, match="quiet and busy"):
        calibrate(ZONE, frames, [3, 3, 3, 3, 3])
    with pytest.raises(CalibrationError, match=r"at least 5"):
        calibrate(ZONE, frames[:3], [1, 2, 3])


def test_ridge_picks_a_strong_penalty_for_few_frames_and_knows_its_error() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = 2 * x[:, 0] - x[:, 1] + 10 + rng.normal(scale=0.5, size=200)
    model = fit_ridge(x, y)
    assert abs(model.predict(np.array([1.0, 0.0, 0.0])) - 12) < 0.3
    assert 0.4 < model.residual_sd < 0.7  # the noise it was given


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
        PeopleCounter([], (10, 10))


def test_detector_counts_real_people_without_calibration() -> None:
    """PETS 2009 from ../shared/datasets: the benchmark command, on its first 80 frames."""
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.benchmark", str(DATASETS / "pets09-s2l1"), "--limit", "80"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["frames"] == 80
    assert figures["method"] == "detector"
    assert figures["mae"] < 1.5
    assert {"mae", "rmse", "fps", "bias"} <= figures.keys()
    assert figures["views"]["counted"] == 1  # one fixed camera: one view, one counter
    # it learnt the empty lobby, and the foreground's area never took over: the detector misses nobody here
    assert figures["views"]["views_with_empty_lobby_learnt"] == 1
    assert figures["frames_by_method"] == {"detector": 80}


def test_two_people_side_by_side_stay_two_and_one_found_twice_is_one() -> None:
    """The detector's windows are twice as wide as the people in them: side by side, two people's windows
    overlap by a third (intersection over union), and judged whole one of them was suppressed."""
    left, beside, again = [100.0, 50.0, 64.0, 128.0], [132.0, 50.0, 64.0, 128.0], [108.0, 54.0, 64.0, 128.0]
    assert sorted(distinct([left, beside], [1.2, 0.8])) == [0, 1]
    assert distinct([left, again], [0.9, 1.1]) == [1]  # the same person a stride away: the surer one stays
    assert sorted(distinct([left, again, beside], [1.2, 0.7, 0.8])) == [0, 2]


def test_benchmark_says_what_is_wrong_with_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"roi\.json is missing"):
        load_dataset(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.benchmark", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "roi.json is missing" in result.stderr


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
    assert reporter.error("q", None) == pytest.approx(1.89, abs=0.01)  # spread of 5, 9, 5
    assert reporter.error("q", 2.5) == 2.5  # the method's own error when it is larger
    assert reporter.smooth("q", None) == 5
    assert reporter.smooth("q", None) is None  # mostly blind: unknown, never a fake 0


def test_press_filter_merges_repeated_presses() -> None:
    presses = PressFilter(repeat_guard_s=5)
    assert presses.accept("bell", 0.0)
    assert not presses.accept("bell", 2.0)
    assert presses.accept("help", 2.0)
    assert presses.accept("bell", 5.5)
