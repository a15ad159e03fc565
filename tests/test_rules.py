from datetime import UTC, date, datetime, time

import pytest

from server.rules.branch import BranchRules, ZoneRules
from server.rules.calls import CallTracker
from server.rules.presence import DeviceWatch
from server.rules.schedule import OpeningHours
from server.rules.state import BranchState, OpenAlert
from server.rules.threshold import ThresholdRule, ThresholdState, step
from server.rules.transitions import Change
from server.rules.waiting import projected_wait_min, windows_needed

RULE = ThresholdRule(fire_at=8, for_s=300, clear_at=5, clear_for_s=120)


def run(values: list[tuple[float, float | None]], state: ThresholdState | None = None) -> list[tuple[str, float]]:
    state = state or ThresholdState()
    out = []
    for at, value in values:
        moved = step(RULE, state, value, at)
        if moved:
            out.append((moved.change.value, at))
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


def test_unknown_values_neither_fire_nor_clear() -> None:
    assert run([(0, 9), (100, None), (300, None)]) == []
    assert run([(0, 9), (300, 9), (400, None), (1000, None)]) == [("fired", 300)]


def test_rule_refuses_clear_level_at_or_above_the_firing_level() -> None:
    with pytest.raises(ValueError, match="clearing level"):
        ThresholdRule(fire_at=5, for_s=0, clear_at=5, clear_for_s=0)


def test_projected_wait_and_windows_needed() -> None:
    assert projected_wait_min(0, 2) == 0.0
    assert projected_wait_min(9, 2, service_min=4.0) == 20.0  # (9 + 1) * 4 / 2
    assert windows_needed(9, target_min=15, service_min=4.0) == 3  # 40 / 15 -> 3 windows
    assert windows_needed(0, target_min=15) == 1
    with pytest.raises(ValueError, match="window"):
        projected_wait_min(3, 0)


ZONE = ZoneRules(queue=RULE, wait=ThresholdRule(15, 0, 12, 0), windows_open=2, service_min=4.0)


def test_engine_fires_wait_too_long_with_the_windows_to_open() -> None:
    engine = BranchRules(BranchState("b1"))
    # 9 waiting at 2 windows, 4 min each: 20 min projected, over the 15 min target at once (no duration)
    (fired,) = engine.occupancy("queue", ZONE, 9, 0.0, open_now=True)
    assert (fired.rule, fired.change) == ("wait_too_long", Change.FIRED)
    facts = fired.facts()
    assert (facts["windows_needed"], facts["more_windows"], facts["wait_min"]) == (3, 1, 20.0)
    # the queue rule needs 300 s at 8 or more
    (queue,) = engine.occupancy("queue", ZONE, 9, 300.0, open_now=True)
    assert (queue.rule, queue.change) == ("queue_too_long", Change.FIRED)


def test_closed_branch_fires_nothing() -> None:
    engine = BranchRules(BranchState("b1"))
    assert engine.occupancy("queue", ZONE, 30, 0.0, open_now=False) == []
    assert engine.occupancy("queue", ZONE, 30, 1000.0, open_now=False) == []


def test_calls_fire_at_their_deadline_and_measure_the_response() -> None:
    calls = CallTracker("b1")
    calls.press("ramp-bell", "accessibility", 0.0)
    calls.press("ramp-bell", "accessibility", 20.0)  # pressed again: same call
    calls.press("help-desk", "help", 10.0)
    assert calls.tick(59.0) == []
    (fired,) = calls.tick(60.0)
    assert (fired.subject, fired.change, fired.facts()["presses"]) == ("ramp-bell", Change.FIRED, 2)
    assert calls.tick(70.0) == []  # fires once
    answered, resolved = calls.answer("ramp-bell", 75.0)
    assert answered is not None
    assert answered.response_s == 75.0
    assert resolved is not None
    assert resolved.change is Change.RESOLVED
    answered, resolved = calls.answer("help-desk", 40.0)  # in time: measured, nothing to resolve
    assert answered is not None
    assert answered.response_s == 30.0
    assert resolved is None
    assert calls.answer("nobody-pressed", 50.0) == (None, None)


def test_devices_go_offline_by_last_will_or_silence_and_come_back() -> None:
    watch = DeviceWatch("b1", silence_s=90)
    watch.seen("cam", 0.0)
    watch.seen("btn", 0.0)
    assert watch.tick(89.0) == []
    watch.seen("btn", 80.0)
    (silent,) = watch.tick(90.0)
    assert (silent.subject, silent.facts()["why"]) == ("cam", "silent")
    assert watch.gone("btn", 100.0, "last will") is None  # a will waits for its grace: the device may be back
    assert watch.gone("btn", 101.0, "last will") is None
    (gone,) = watch.tick(160.0)
    assert (gone.subject, gone.change, gone.facts()["why"]) == ("btn", Change.FIRED, "last will")
    assert watch.tick(161.0) == []  # once
    back = watch.seen("cam", 120.0)
    assert back is not None
    assert back.change is Change.RESOLVED


def test_opening_hours_by_grade_and_calendar() -> None:
    hours = OpeningHours.for_grade(
        3, "Asia/Shanghai", exceptions={date(2026, 10, 1): None, date(2026, 10, 2): (time(10), time(15))}
    )
    assert hours.is_open(datetime(2026, 9, 30, 1, tzinfo=UTC))  # 09:00 in Shanghai, a Wednesday
    assert not hours.is_open(datetime(2026, 9, 30, 0, 59, tzinfo=UTC))  # 08:59
    assert not hours.is_open(datetime(2026, 9, 30, 9, tzinfo=UTC))  # 17:00: closed
    assert not hours.is_open(datetime(2026, 10, 1, 3, tzinfo=UTC))  # National Day: closed
    assert hours.is_open(datetime(2026, 10, 2, 3, tzinfo=UTC))  # 11:00, shortened day
    assert not hours.is_open(datetime(2026, 10, 2, 7, 30, tzinfo=UTC))  # 15:30
    grade4 = OpeningHours.for_grade(4, "Asia/Shanghai")
    sunday = datetime(2026, 9, 27, 3, tzinfo=UTC)
    assert not grade4.is_open(sunday)
    assert OpeningHours.for_grade(4, "Asia/Shanghai", savings=True).is_open(sunday)
    nxt = hours.opening_after(datetime(2026, 9, 30, 12, tzinfo=UTC))  # after closing: tomorrow is closed
    assert nxt == datetime(2026, 10, 2, 2, tzinfo=UTC)  # 10:00 on 2 October, Shanghai


def test_branch_state_moves_between_engines_as_plain_data() -> None:
    import json

    first = BranchRules(BranchState("b1"))
    first.occupancy("queue", ZONE, 9, 0.0, open_now=True)
    first.call("bell", "accessibility", False, 0.0, open_now=True)
    first.device_seen("cam", 0.0)
    data = json.loads(json.dumps(first.state.to_data()))  # survives a trip through a log
    moved = BranchRules(BranchState.from_data("b1", data))
    changes = moved.occupancy("queue", ZONE, 9, 300.0, open_now=True)
    assert "queue_too_long" in {t.rule for t in changes}
    assert {t.rule for t in moved.tick(60.0)} == {"call_unanswered"}
    assert {t.rule for t in moved.tick(100.0)} == {"device_offline"}


def test_a_broker_restart_is_not_an_alert_per_device() -> None:
    watch = DeviceWatch("b1", silence_s=90)
    for device in ("cam", "btn", "env"):
        watch.seen(device, 0.0)
    for device in ("cam", "btn", "env"):  # the broker stops: every will at once
        watch.gone(device, 10.0, "last will")
    watch.pause()  # ... and the server's own connection goes
    assert watch.tick(300.0) == []  # nothing judged while the server cannot hear
    watch.resume(310.0)  # back: every device has its grace from now
    watch.seen("cam", 315.0)
    watch.seen("btn", 320.0)
    assert watch.tick(369.0) == []
    (gone,) = watch.tick(370.0)  # only the one that did not come back
    assert gone.subject == "env"


def test_restored_firing_alert_can_clear() -> None:
    engine = BranchRules(BranchState("b1"))
    engine.state.reconcile([OpenAlert("queue_too_long", "b1", "queue", 12.0, 0.0, {})], now=0.0)
    quiet = ZoneRules(queue=RULE, wait=None, windows_open=2, service_min=4.0)
    assert engine.occupancy("queue", quiet, 3, 0.0, open_now=True) == []
    (change,) = engine.occupancy("queue", quiet, 3, 120.0, open_now=True)
    assert (change.change, change.peak) == (Change.RESOLVED, 12)


def test_a_branch_sets_its_own_call_deadlines() -> None:
    engine = BranchRules(BranchState("b1"))
    engine.call("bell", "accessibility", False, 0.0, open_now=True, deadlines_s={"accessibility": 30.0})
    assert [t.rule for t in engine.tick(30.0)] == ["call_unanswered"]


def test_closing_ends_the_lobby_alerts_and_keeps_those_meant_for_the_night() -> None:
    engine = BranchRules(BranchState("b1"))
    hours = OpeningHours.for_grade(1, "Asia/Shanghai")  # 08:00-20:00
    evening = datetime(2026, 11, 23, 11, 50, tzinfo=UTC).timestamp()  # 19:50
    assert engine.hours(hours, evening) == []
    fired = engine.occupancy("queue", ZoneRules(RULE, None, 2, 4.0), 12, evening, True, "cam")
    fired += engine.occupancy("queue", ZoneRules(RULE, None, 2, 4.0), 12, evening + 300, True, "cam")
    assert [t.rule for t in fired] == ["queue_too_long"]
    engine.facility("env", "door", "door", 1.0, True, None, evening, True)
    engine.facility("cam", "camera", "camera", 0.0, False, "covered", evening, True)
    engine.facility("cam", "camera", "camera", 0.0, False, "covered", evening + 300, True)
    engine.call("bell", "accessibility", False, evening + 500, open_now=True)
    closed = engine.hours(hours, evening + 600)  # 20:00
    assert [(t.rule, t.subject, t.facts()["reason"]) for t in closed] == [("queue_too_long", "queue", "closed")]
    assert engine.hours(hours, evening + 700) == []  # once
    # the camera's fault and the waiting call go on through the night
    assert [t.rule for t in engine.tick(evening + 700)] == ["call_unanswered"]
    door = engine.facility("env", "door", "door", 1.0, True, None, evening + 700, False)
    door += engine.facility("env", "door", "door", 1.0, True, None, evening + 900, False)
    assert [t.subject for t in door] == ["env/door"]  # a door open after hours fires at night


def test_every_rule_kind_is_in_the_catalog_with_its_messages_in_every_language() -> None:
    from lobbywatch.i18n import LOCALES, catalog
    from server.rules import calls, facility, opening, presence, queue, waiting
    from server.rules.catalog import KINDS

    modules = (queue, waiting, calls, presence, facility, opening)
    assert set(KINDS) == {m.RULE for m in modules}  # each module's rule is declared once, under its own name
    for locale in LOCALES:
        missing = [key for kind in KINDS.values() for key in kind.message_keys() if key not in catalog(locale)]
        assert missing == [], locale


def test_a_restart_takes_up_each_kind_of_open_alert_from_the_catalog() -> None:
    engine = BranchRules(BranchState("b1"))
    engine.state.reconcile(
        [
            OpenAlert("queue_too_long", "b1", "queue", 12.0, 0.0, {}),
            OpenAlert("facility", "b1", "env/temperature", 1.0, 0.0, {"kind": "temperature"}),
            OpenAlert("facility", "b1", "cam/camera", 1.0, 0.0, {"kind": "camera"}),
            OpenAlert("device_offline", "b1", "btn", 0.0, 0.0, {}),
            OpenAlert("call_unanswered", "b1", "bell", 70.0, 100.0, {"kind": "accessibility", "waited_s": 70}),
            OpenAlert("not_open_on_time", "b1", "lobby", 0.0, 0.0, {}),
        ],
        now=200.0,
    )
    state = engine.state
    assert state.thresholds["queue_too_long/queue"].firing
    assert state.lobby == {"queue_too_long/queue", "facility/env/temperature"}  # the camera's fault is not the lobby's
    assert state.devices.offline == {"btn"}
    assert (state.calls.open["bell"].pressed_at, state.calls.open["bell"].fired) == (30.0, True)
    assert state.opening.firing


def test_a_routing_for_a_rule_that_does_not_exist_is_refused() -> None:
    from server.registry.site import SiteSpec

    with pytest.raises(ValueError, match="no rule queue_too_lng "):
        SiteSpec.model_validate(
            {
                "regions": [{"id": "r", "name": "R"}],
                "branches": [
                    {"id": "b", "name": "B", "region": "r", "routing": {"queue_too_lng": {"role": "technician"}}}
                ],
            }
        )
