import numpy as np

from edge_agent.camera_health import FROZEN_AFTER_S, MOVED_CHECKS, MOVED_EVERY_S, CameraHealth, Problem
from lobby_sim.render import LobbyRenderer


def lobby(n: int = 4, seed: int = 0) -> np.ndarray:
    return LobbyRenderer(seed).render(n, 1, 3)


def test_a_normal_lobby_is_fine() -> None:
    health = CameraHealth()
    for i in range(50):
        assert health.observe(lobby(i % 10), float(i)) is Problem.NONE
    assert health.ok


def test_dark_and_covered() -> None:
    health = CameraHealth()
    assert health.observe(np.full((360, 640, 3), 5, np.uint8), 0) is Problem.DARK
    assert "too dark" in health.detail
    grey_cloth = np.full((360, 640, 3), 120, np.uint8)
    assert health.observe(grey_cloth, 1) is Problem.COVERED
    assert health.observe(lobby(), 2) is Problem.NONE  # uncovered again


def test_frozen_picture() -> None:
    health = CameraHealth()
    frame = lobby()
    health.observe(frame, 0.0)
    t = 5.0  # the first identical frame: the stillness starts here
    while t < 5.0 + FROZEN_AFTER_S:
        assert health.observe(frame, t) is Problem.NONE
        t += 5
    assert health.observe(frame, t) is Problem.FROZEN
    assert health.observe(lobby(seed=1), t + 1) is Problem.NONE  # the noise of a live sensor again


def test_disconnected_after_a_few_missing_frames() -> None:
    health = CameraHealth()
    for i in range(4):
        assert health.observe(None, float(i)) is Problem.NONE
    assert health.observe(None, 4.0) is Problem.DISCONNECTED


def test_moved_camera_against_the_calibrated_view() -> None:
    health = CameraHealth()
    empty = LobbyRenderer(0).render(0, 0, 0)
    health.set_reference(empty)
    t = 0.0
    for i in range(MOVED_CHECKS + 2):  # people come and go: still the same view
        assert health.observe(lobby(12, seed=i), t) is Problem.NONE
        t += MOVED_EVERY_S
    problems = []
    for i in range(MOVED_CHECKS + 1):
        turned = np.ascontiguousarray(np.rot90(lobby(3, seed=100 + i), 2))  # pointing elsewhere
        problems.append(health.observe(turned, t))
        t += MOVED_EVERY_S
    assert problems[0] is Problem.NONE  # one odd check is not enough
    assert problems[-1] is Problem.MOVED


def test_a_camera_turned_a_little_is_seen_as_moved() -> None:
    health = CameraHealth()
    health.set_reference(LobbyRenderer(0).render(0, 0, 0))
    t = 0.0
    for i in range(MOVED_CHECKS + 1):
        shifted = np.ascontiguousarray(np.roll(lobby(3, seed=200 + i), 40, axis=0))
        health.observe(shifted, t)
        t += MOVED_EVERY_S
    assert health.problem is Problem.MOVED
