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


def test_each_camera_problem_is_told_in_its_own_words() -> None:
    """The alert says which problem the camera has (its reading's detail begins with the code), and a moved one
    asks for its zones and calibration again, in both languages; an unknown code falls back to the general."""
    from edge_agent.camera_loop import camera_reading
    from server.alerts.catalog import problem_text

    health = CameraHealth()
    health.problem = Problem.MOVED
    detail = camera_reading(health).detail  # what the device sends
    assert problem_text("zh-CN", "camera", detail) == "摄像头视角已改变：请把它调回原位，或重新画区域并重新标定"
    assert "calibrate it again" in problem_text("en", "camera", detail)
    for problem in Problem:
        if problem is not Problem.NONE:
            worded = problem_text("zh-CN", "camera", f"{problem.value}: ...")
            assert worded != problem_text("zh-CN", "camera", None), problem
    assert problem_text("zh-CN", "camera", "melted: ...") == "摄像头无法看到大厅"
    assert problem_text("en", "temperature", "moved: ...") == "temperature out of range"
