"""The head counter learnt from clicked heads: on real frames of an elevated camera (../shared/datasets/brt-train,
heads clicked by its authors), its storage, its masks, its refusals, and how the counter chooses it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_agent.counting.calibration import CalibrationStore, calibrate, calibrate_heads
from edge_agent.counting.counter import PeopleCounter
from edge_agent.counting.dataset import Dataset, DatasetError, load_dataset
from edge_agent.counting.heads import HeadCalibration, HeadCounter, HeadsError, fit_heads
from edge_agent.counting.network import Network, train_network
from edge_agent.counting.zones import Zone
from edge_agent.head_fits import HeadFits
from edge_agent.remote_calibration import add_label, fit, save_snapshot

BRT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "brt-train"


@pytest.fixture(scope="module")
def brt() -> Dataset:
    return load_dataset(BRT)


Fitted = tuple[HeadCalibration, list[int], list[int]]


@pytest.fixture(scope="module")
def camera_one(brt: Dataset) -> tuple[HeadCalibration, list[int], list[int]]:
    """Fitted on 16 snapshots of the first camera; returns it, them, and 40 other snapshots of that camera."""
    one = [i for i, name in enumerate(brt.names) if name.startswith("1-")]
    fit_on, count_on = one[:: len(one) // 16][:16], one[1 :: len(one) // 40][:40]
    assert brt.points is not None
    fitted = fit_heads(brt.zone, [brt.frames[i] for i in fit_on], [brt.points[i] for i in fit_on])
    return fitted, fit_on, count_on


def test_sixteen_clicked_snapshots_count_other_snapshots_of_the_camera(brt: Dataset, camera_one: Fitted) -> None:
    fitted, fit_on, count_on = camera_one
    counter = HeadCounter(fitted.networks, fitted.threshold, brt.zone, (640, 360))
    found = np.array([counter.estimate(brt.frames[i]) for i in count_on])
    truth = np.array([brt.counts[i] for i in count_on])
    # the floor: always answering the mean of the labelled snapshots (8.4 people off on these frames)
    mean = np.mean([brt.counts[i] for i in fit_on])
    assert np.abs(found - truth).mean() < 0.75 * np.abs(mean - truth).mean()
    assert fitted.heads >= 100
    assert 0 < fitted.residual_sd < 20
    assert fitted.method == "heads-net-v2"
    assert len(fitted.networks) == 4


def test_a_stored_head_counter_counts_the_same_and_a_broken_file_is_refused_by_name(
    tmp_path: Path, brt: Dataset, camera_one: Fitted
) -> None:
    fitted, _, count_on = camera_one
    store = CalibrationStore(tmp_path)
    path = store.save_heads(fitted)
    loaded = store.load_heads(brt.zone.key)
    assert loaded is not None
    assert loaded.threshold == fitted.threshold
    before = HeadCounter(fitted.networks, fitted.threshold, brt.zone, (640, 360))
    after = HeadCounter(loaded.networks, loaded.threshold, brt.zone, (640, 360))
    for i in count_on[:5]:
        assert [f.tolist() for f in after.found(brt.frames[i])] == [f.tolist() for f in before.found(brt.frames[i])]
    path.write_text(json.dumps({**json.loads(path.read_text()), "networks": [{"mean": [1.0]}]}))
    with pytest.raises(HeadsError, match=r"roi\.heads\.json.*unreadable"):
        store.load_heads(brt.zone.key)


def test_areas_to_ignore_take_their_heads_out_of_the_count(brt: Dataset, camera_one: Fitted) -> None:
    fitted, _, count_on = camera_one
    left = [(0, 0), (180, 0), (180, 640), (0, 640)]
    masked = replace(brt.zone, ignore=[left])
    whole = HeadCounter(fitted.networks, fitted.threshold, brt.zone, (640, 360))
    right = HeadCounter(fitted.networks, fitted.threshold, masked, (640, 360))
    taken_out = 0
    for i in count_on[:10]:
        for everywhere, outside in zip(whole.found(brt.frames[i]), right.found(brt.frames[i]), strict=True):
            assert not outside[:, : 180 // 4].any()
            assert (outside[:, 180 // 4 :] == everywhere[:, 180 // 4 :]).all()
            taken_out += int(everywhere[:, : 180 // 4].sum())
    assert taken_out > 0  # there were heads on the left to take out
    # a calibration fitted without that area to ignore is not used for the zone with it
    assert not fitted.matches(masked, (640, 360))


def test_the_counter_takes_the_method_with_the_smaller_error(brt: Dataset, camera_one: Fitted) -> None:
    fitted = camera_one[0]
    picks = list(range(0, 60, 6))
    regression, background = calibrate(brt.zone, [brt.frames[i] for i in picks], [brt.counts[i] for i in picks])
    error = regression.model.residual_sd
    better = replace(fitted, residual_sd=error / 2)
    worse = replace(fitted, residual_sd=error * 2)
    close = replace(fitted, residual_sd=error * 0.95)  # smaller, but within the noise of 16 snapshots' estimate
    shape = (640, 360)
    calibrations = {"roi": regression}
    assert PeopleCounter([brt.zone], shape, calibrations, background, heads={"roi": better}).methods() == {
        "roi": "heads"
    }
    for other in (worse, close):
        assert PeopleCounter([brt.zone], shape, calibrations, background, heads={"roi": other}).methods() == {
            "roi": "regression"
        }
    (result,) = PeopleCounter([brt.zone], shape, heads={"roi": better}).count(brt.frames[0])
    assert result.method == "heads"
    assert result.error == better.residual_sd
    assert result.count == round(result.estimate)
    moved = Zone("roi", [(0, 0), (300, 0), (300, 600), (0, 600)], "head")
    assert PeopleCounter([moved], shape, heads={"roi": better}).methods() == {"roi": "detector"}


def test_snapshots_labelled_by_count_alone_teach_no_heads_and_too_few_heads_remove_the_old_counter(
    tmp_path: Path, brt: Dataset, camera_one: Fitted
) -> None:
    store = CalibrationStore(tmp_path)
    store.save_heads(camera_one[0])
    frames = [brt.frames[i] for i in range(6)]
    counts = [brt.counts[i] for i in range(6)]
    by_count_only: list[list[tuple[float, float]]] = [[] for _ in frames]
    refused = calibrate_heads(store, brt.zone, frames, counts, by_count_only)
    assert isinstance(refused, HeadsError)
    assert refused.key == "heads.error.too_few_frames"
    assert store.load_heads("roi") is None  # it belonged to labels that are gone
    assert isinstance(calibrate_heads(store, brt.zone, frames, counts, None), HeadsError)


def test_fitting_refuses_what_cannot_teach_a_detector(brt: Dataset) -> None:
    frames, points = brt.frames[:4], (brt.points or [])[:4]
    with pytest.raises(HeadsError, match="2 sets of head points"):
        fit_heads(brt.zone, frames, points[:2])
    with pytest.raises(HeadsError, match="at least 4 snapshots"):
        fit_heads(brt.zone, frames[:3], points[:3])
    with pytest.raises(HeadsError, match="at least 20 are needed"):
        fit_heads(brt.zone, frames, [p[:2] for p in points])


def test_points_csv_is_read_per_frame_and_a_broken_one_is_named(tmp_path: Path, brt: Dataset) -> None:
    part = load_dataset(BRT, limit=3)
    assert part.points == (brt.points or [])[:3]
    assert [len(p) for p in part.points] == part.counts
    folder = tmp_path / "set"
    (folder / "frames").mkdir(parents=True)
    for name in ("roi.json", "counts.csv"):
        (folder / name).write_bytes((BRT / name).read_bytes())
    first = brt.names[0]
    (folder / "frames" / f"{first}.jpg").write_bytes((BRT / "frames" / f"{first}.jpg").read_bytes())
    (folder / "counts.csv").write_text(f"frame,count\n{first},1\n")
    assert load_dataset(folder).points is None
    (folder / "points.csv").write_text(f"frame,x,y\n{first},1,2\n")
    assert load_dataset(folder).points == [[(1.0, 2.0)]]
    (folder / "points.csv").write_text(f"frame,x,y\n{first},one,2\n")
    with pytest.raises(DatasetError, match="line 2: x and y must be numbers"):
        load_dataset(folder)
    (folder / "points.csv").write_text(f"frame,x\n{first},1\n")
    with pytest.raises(DatasetError, match="frame,x,y"):
        load_dataset(folder)


def test_the_network_separates_what_it_was_shown_and_keeps_its_numbers() -> None:
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0, 1, (4000, 5)), rng.normal(1.5, 1, (4000, 5))].astype(np.float32)
    y = np.r_[np.zeros(4000), np.ones(4000)].astype(np.float32)
    network = train_network(x, y, seed=0, hidden=8)
    scores = network.score(x)
    assert ((scores > 0) == (y > 0)).mean() > 0.9
    again = Network.from_numbers(json.loads(json.dumps(network.numbers())))
    assert np.allclose(again.score(x), scores, atol=1e-5)
    with pytest.raises(ValueError, match="inputs"):
        Network.from_numbers({**network.numbers(), "scale": [1.0]})


def test_heads_clicked_on_the_page_fit_a_head_counter_off_the_main_loop(tmp_path: Path, brt: Dataset) -> None:
    assert brt.points is not None
    zone = Zone("queue", list(brt.zone.polygon), "head")
    for i in range(6):
        save_snapshot(tmp_path, f"s{i}", brt.frames[i])
        clicked = [[min(359, round(x)), min(639, round(y))] for x, y in brt.points[i]]
        add_label(tmp_path, zone, f"s{i}", brt.counts[i], clicked)
    assert fit(tmp_path, zone) is not None  # the regression, at once, as before
    assert CalibrationStore(tmp_path).load_heads("queue") is None
    fits = HeadFits()
    fits.submit(tmp_path, zone)
    fits.submit(tmp_path, zone)  # asked again while waiting: fitted once
    assert fits.zones(tmp_path) == {"queue"}  # the health report says so (the fit takes seconds)
    assert fits.zones(tmp_path / "another-device") == set()
    assert fits.wait(120)
    assert fits.zones(tmp_path) == set()
    heads = CalibrationStore(tmp_path).load_heads("queue")
    assert heads is not None
    assert heads.frames == 6
    assert heads.heads == sum(brt.counts[:6])
