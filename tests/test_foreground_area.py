"""Counting by the foreground's area where the detector misses people: the estimate's arithmetic on drawn people,
the rule that hands a zone to it, and its use on the crowded Mall's real frames, in the benchmark and on the
device's own path (the empty lobby learnt as the camera runs). That the sparse PETS09 stays with the detector is
in tests/test_counting.py."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.counting.area import FILL, ForegroundArea, MissWatch
from edge_agent.counting.calibration import CalibrationStore
from edge_agent.counting.dataset import load_dataset
from edge_agent.counting.zones import Zone
from edge_agent.zone_counting import ZoneCounting
from lobbywatch.device_config import CameraConfig

ROOT = Path(__file__).parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
SHAPE = (480, 640)
LINE = (60.0, 0.05)  # window height = a + b × row: a gentle perspective, as of a camera high above a lobby
ZONE = Zone("queue", [(20, 150), (620, 150), (620, 470), (20, 470)])


def empty_lobby(tile: int = 32) -> np.ndarray:
    """Floor tiles of two shades, with the sensor's noise."""
    rows, cols = np.indices(SHAPE)
    floor = np.where((rows // tile + cols // tile) % 2 == 0, 90, 150).astype(np.int16)
    noise = np.random.default_rng(7).integers(-4, 5, size=SHAPE)
    return np.asarray(floor + noise, dtype=np.uint8)


def with_people(background: np.ndarray, feet: list[tuple[int, int]]) -> np.ndarray:
    """People as the estimate models them: FILL × H² pixels each, H the window height at their feet; 45 grey
    levels off the floor, so the smoothing before the difference neither widens nor narrows them."""
    person = np.zeros(SHAPE, np.uint8)
    for x, y in feet:
        height = LINE[0] + LINE[1] * y
        tall = 0.86 * height
        wide = FILL * height**2 / tall
        cv2.rectangle(person, (round(x - wide / 2), round(y - tall)), (round(x + wide / 2) - 1, y - 1), 45, -1)
    return cv2.add(background, person)


def test_the_foreground_counts_standing_people_at_the_size_the_perspective_gives_them() -> None:
    background = empty_lobby()
    crowd = [(60 + 80 * (i % 7), 260 + 100 * (i // 7)) for i in range(14)]
    area = ForegroundArea(ZONE, SHAPE, background)
    assert area.people(background, LINE) == 0.0
    people = area.people(with_people(background, crowd), LINE)
    assert people is not None
    assert abs(people - len(crowd)) <= 0.1 * len(crowd), people
    # the same people where the camera's areas to ignore are: not in the count
    staff = Zone(ZONE.key, ZONE.polygon, ignore=[[(0, 0), (250, 0), (250, 480), (0, 480)]])
    customers = [p for p in crowd if p[0] > 250]
    counted = ForegroundArea(staff, SHAPE, background).people(with_people(background, crowd), LINE)
    assert counted is not None
    assert abs(counted - len(customers)) <= 0.1 * len(customers), (counted, len(customers))


def test_a_change_of_light_is_no_crowd_and_another_scene_gives_no_estimate() -> None:
    """The camera's exposure or the daylight moves every pixel: the same people in brighter light are as many. A
    scene that is not the learnt empty lobby (the camera knocked aside) gives no estimate, not a crowd."""
    background = empty_lobby()
    crowd = [(60 + 80 * (i % 7), 260 + 100 * (i // 7)) for i in range(14)]
    area = ForegroundArea(ZONE, SHAPE, background)
    brighter = cv2.convertScaleAbs(with_people(background, crowd), alpha=1.2, beta=15)
    people = area.people(brighter, LINE)
    assert people is not None
    assert abs(people - len(crowd)) <= 0.1 * len(crowd), people
    assert area.people(cv2.convertScaleAbs(background, alpha=1.2, beta=15), LINE) == 0.0
    assert area.people(empty_lobby(tile=45), LINE) is None
    # a floor of one shade tells no gain, only the offset: the same people, 40 levels brighter, are as many
    plain = np.asarray(np.full(SHAPE, 120) + np.random.default_rng(3).integers(-4, 5, size=SHAPE), dtype=np.uint8)
    lit = ForegroundArea(ZONE, SHAPE, plain).people(
        cv2.add(with_people(plain, crowd), np.full(SHAPE, 40, np.uint8)), LINE
    )
    assert lit is not None
    assert abs(lit - len(crowd)) <= 0.1 * len(crowd), lit


def test_the_foreground_takes_over_only_where_the_detector_clearly_misses() -> None:
    sparse, crowded = MissWatch(), MissWatch()
    assert not any(sparse.misses(5, 5.6) for _ in range(200))  # a sparse scene: they agree, the detector stays
    assert all(crowded.misses(14, 31.0) for _ in range(200))  # the Mall: the detector finds half
    assert not crowded.misses(14, None)  # no estimate (background gone): the detector's count
    assert not MissWatch().misses(0, 1.9)  # an empty lobby's specks are no crowd


def benchmark(dataset: str, *extra: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.benchmark", str(DATASETS / dataset), *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def test_the_benchmark_counts_a_crowd_by_its_foreground() -> None:
    """Real frames: uncalibrated, the detector finds about half of the Mall's crowd (MAE 16.7 over 800 frames).
    The sparse scene, PETS09, stays with the detector (tests/test_counting.py)."""
    mall = benchmark("mall-train", "--limit", "120")
    assert mall["views"]["views_with_empty_lobby_learnt"] == 1  # type: ignore[index]
    assert mall["frames_by_method"]["area"] >= 100  # type: ignore[index]
    assert float(mall["mae"]) < 8.0  # type: ignore[arg-type]  # half the detector's error


def test_a_device_learns_the_empty_lobby_as_it_runs_and_then_counts_the_crowd(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The device's own path: the detector until the empty lobby of a period is learnt (the quietest of 30
    samples), then the foreground, which the fleet page shows as the zone's method. Every fourth Mall frame, one
    a second: a period of 150 frames spans 600 of the Mall's, over which the people standing still move on (an
    hour does it in a lobby; a period of a minute learns the people who stood through it)."""
    mall = load_dataset(DATASETS / "mall-train", frames=slice(0, 800, 4))
    camera = CameraConfig.model_validate(
        {
            "source": "0",
            "learn_background_s": 150,
            "zones": [{"key": "roi", "polygon": [list(p) for p in mall.zone.polygon]}],
        }
    )
    backgrounds: list[np.ndarray] = []
    caplog.set_level(logging.INFO, logger="edge_agent.zone_counting")
    counting = ZoneCounting(camera, CalibrationStore(tmp_path), 0.0, backgrounds.append)
    methods, errors = [], []
    for second, (frame, truth) in enumerate(zip(mall.frames, mall.counts, strict=True)):
        (result,) = counting.count(frame, float(second))
        methods.append(result.method)
        if second >= 150:
            errors.append(abs(result.count - truth))
            assert result.error is not None
            assert result.error > 0.1 * result.estimate  # the fill's uncertainty, not a calibration's
    assert set(methods[:145]) == {"detector"}  # nothing learnt yet
    assert methods[150:].count("area") == 50, methods
    assert counting.methods() == {"roi": "area"}
    assert "zone roi is now counted by area" in caplog.messages
    assert np.mean(errors) < 8.0  # half the detector's error
    assert backgrounds == []  # no calibration waited for it: nothing written, no reference for the health check
