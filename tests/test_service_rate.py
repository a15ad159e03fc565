"""Learning the service time from occupancy: on a simulated lobby, through the rules, and over a restart."""

import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.service_rate import run as simulate
from lobby_sim.lobby import SERVICE_MIX
from server.registry.directory import BranchEntry
from server.rules.branch import BranchRules, ZoneRules
from server.rules.service_rate import FLICKER_S, MIN_BUSY_MIN, ServiceLearner
from server.rules.state import BranchState
from server.rules.threshold import ThresholdRule
from server.rules.transitions import Transition

TRUE_MIN = sum(share * minutes for share, minutes in SERVICE_MIX)  # 3.8


@pytest.mark.parametrize("miscount_every_s", [None, 120])
def test_learns_the_service_time_of_a_simulated_lobby(miscount_every_s: float | None) -> None:
    learnt = simulate(hours=6, seed=1, miscount_every_s=miscount_every_s)
    # within 20% of the truth, with or without a miscount every two minutes (bench/service_rate.py measures)
    assert TRUE_MIN * 0.8 < learnt < TRUE_MIN * 1.2


def test_a_miscount_that_comes_back_is_not_a_service() -> None:
    learner = ServiceLearner()
    for second, count in [(0, 5), (10, 4), (13, 5), (20, 6), (24, 5), (40, 5)]:
        learner.observe(count, second, windows_open=2)
    assert learner.served == 0  # a dip and a blip, each undone within seconds
    learner.observe(4, 50, 2)
    learner.observe(4, 60, 2)  # lasted: one served
    assert learner.served == 1
    assert learner.busy_min == pytest.approx(2 * 60 / 60, rel=0.01)  # two windows, 60 s (faded a little)


def test_gaps_and_closed_hours_are_not_busy_time() -> None:
    learner = ServiceLearner()
    learner.observe(5, 0, 2)
    learner.observe(5, 1000, 2)  # a 1000 s gap: the device was away
    learner.observe(None, 1010, 2)  # closed
    learner.observe(3, 1020, 2)
    assert learner.busy_min == 0
    assert learner.served == 0


def test_the_standard_holds_until_there_is_evidence_and_the_learnt_value_is_bounded() -> None:
    learner = ServiceLearner(busy_min=MIN_BUSY_MIN - 1, served=100)
    assert learner.service_min(4.0) == 4.0
    hidden = FLICKER_S / 60 * 100 / 600  # services per minute × the window in which a pair looks like a miscount
    assert ServiceLearner(busy_min=600, served=100).service_min(4.0) == pytest.approx(6.0 * (1 - hidden))
    assert ServiceLearner(busy_min=6000, served=100).service_min(4.0) == 8.0  # at most twice the standard
    assert ServiceLearner(busy_min=60, served=100).service_min(4.0) == 2.0  # at least half


ZONE = ZoneRules(
    queue=ThresholdRule(50, 300, 40, 120), wait=ThresholdRule(15, 60, 12, 60), windows_open=2, service_min=3.8
)
LEARNING = ZoneRules(queue=ZONE.queue, wait=None, windows_open=2, service_min=3.8)  # the wait rule not yet on


def feed_lobby(engine: BranchRules, service_min: float, hours: float, seed: int = 0) -> float:
    """A queue served at two windows at `service_min` minutes each, arrivals keeping it busy; counted each second."""
    rng = random.Random(seed)
    waiting, at, last = 6, 0.0, None
    busy = [rng.expovariate(1 / service_min) * 60, rng.expovariate(1 / service_min) * 60]
    while at < hours * 3600:
        at += 1
        if rng.random() < 2 / (service_min * 60):  # arrivals as fast as services: the queue stays
            waiting += 1
        for i in range(2):
            busy[i] -= 1
            if busy[i] <= 0 and waiting > 0:
                waiting -= 1
                busy[i] = rng.expovariate(1 / service_min) * 60
        if waiting != last or int(at) % 10 == 0:
            engine.occupancy("queue", LEARNING, waiting, at, open_now=True)
            last = waiting
    return at


def test_the_wait_rule_uses_the_learnt_service_time() -> None:
    engine = BranchRules(BranchState("b1"))
    at = feed_lobby(engine, service_min=6.0, hours=5)
    learner = engine.service("queue")
    assert learner is not None
    assert learner.learnt()
    assert 5.0 < learner.service_min(3.8) < 7.0
    changes = engine.occupancy("queue", ZONE, 9, at + 120, open_now=True)
    changes += engine.occupancy("queue", ZONE, 9, at + 200, open_now=True)
    (fired,) = [c for c in changes if c.rule == "wait_too_long"]
    facts = fired.facts()
    assert facts["service_learnt"] is True
    # (9 + 1) × learnt ÷ 2 windows: with the standard's 3.8 min it would be 19 min
    assert facts["wait_min"] == pytest.approx(10 * facts["service_min"] / 2, abs=0.1)  # type: ignore[operator]
    assert facts["wait_min"] > 25  # type: ignore[operator]


def test_what_was_learnt_moves_with_the_branch_and_survives_a_restart(tmp_path: Path) -> None:
    engine = BranchRules(BranchState("b1"))
    feed_lobby(engine, service_min=6.0, hours=2)
    moved = BranchRules(BranchState.from_data("b1", json.loads(json.dumps(engine.state.to_data()))))
    assert moved.state.service == engine.state.service  # all of it, to the count in flight

    from lobbywatch.clock import FakeClock
    from server.ingest.pipeline import Pipeline
    from server.ingest.rejects import Rejects
    from server.live import LiveState
    from server.processing.branch import BranchProcessor
    from server.registry.database import make_engine, make_sessions
    from server.registry.directory import Directory
    from server.registry.site import SiteSpec, import_site
    from server.storage.sqlite_store import SqliteStore
    from tests.helpers import site

    sessions = make_sessions(make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}"))
    with sessions() as session:
        import_site(session, SiteSpec.model_validate(site()))

    def pipeline() -> Pipeline:
        return Pipeline(
            directory=Directory(sessions),
            store=SqliteStore(tmp_path / "ts.sqlite3"),
            alerts=_NoAlerts(),
            live=LiveState(),
            rejects=Rejects(),
            sessions=sessions,
            clock=FakeClock(datetime(2026, 11, 23, 2, tzinfo=UTC)),
        )

    first = pipeline()
    first.branches.add(BranchProcessor(engine.state))
    first.flush_learnt()
    ((key, learnt),) = pipeline().branches.service_evidence().items()  # restarted
    before = engine.state.service[key[1]]
    assert key == ("b1", "queue")
    assert (learnt.busy_min, learnt.served, learnt.arrived) == pytest.approx(
        (before.busy_min, before.served, before.arrived)
    )
    assert learnt.service_min(3.8) == pytest.approx(before.service_min(3.8))


class _NoAlerts:
    def apply(self, change: Transition, branch: BranchEntry, subject_name: str) -> None:
        raise AssertionError(f"no alert expected: {change}")

    def tick(self, branches: Mapping[str, BranchEntry], offline: Callable[[str, str], bool]) -> None:
        raise AssertionError("no alert expected")
