"""The branch processor: one branch's state, moved between owners as plain data."""

import json
from datetime import UTC, datetime

from lobbywatch.protocol import QueueReport, ZoneCount
from server.processing.branch import BranchProcessor
from server.processing.output import Output
from server.registry.directory import BranchEntry, DeviceEntry, Escalation, ZoneEntry
from server.rules.branch import ZoneRules
from server.rules.schedule import OpeningHours
from server.rules.state import BranchState
from server.rules.threshold import ThresholdRule

QUEUE = ZoneRules(ThresholdRule(8, 0, 5, 0), None, 2, 4.0)
BRANCH = BranchEntry(
    "b1",
    "B1",
    "r1",
    "Asia/Shanghai",
    "en",
    OpeningHours.for_grade(1, "Asia/Shanghai"),
    {},
    Escalation(("duty_supervisor",), 300.0, 120.0),
)
CAMERA = DeviceEntry("cam", "b1", {"queue": ZoneEntry("b1", "queue", "Queue", QUEUE)})
NOON = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Beijing: open


def report(seq: int, waiting: int) -> QueueReport:
    return QueueReport(
        stream="00000000000000a1",
        seq=seq,
        ts=NOON,
        uptime_s=float(seq),
        zones=[ZoneCount(zone="queue", occupancy=waiting)],
    )


def test_a_branch_moves_to_another_owner_as_plain_data_and_goes_on_where_it_was() -> None:
    first = BranchProcessor(BranchState("b1"))
    out = Output()
    first.message(BRANCH, CAMERA, report(1, 9), NOON.timestamp(), out)
    first.message(BRANCH, CAMERA, report(3, 9), NOON.timestamp(), out)  # 2 is missing
    assert [t.rule for t in out.transitions] == ["queue_too_long"]  # fired at once (for_s 0)

    moved = BranchProcessor.load("b1", json.loads(json.dumps(first.export())))
    assert moved.devices["cam"].sequence.gaps == [[2, 2]]  # the gap goes along: no false gap, no lost resend
    out = Output()
    moved.message(BRANCH, CAMERA, report(3, 9), NOON.timestamp(), out)
    assert (out.duplicates, out.transitions) == (1, [])  # a redelivered message stays a duplicate
    moved.message(BRANCH, CAMERA, report(4, 2), NOON.timestamp(), out)
    assert [(t.rule, t.change.value) for t in out.transitions] == [("queue_too_long", "resolved")]  # not fired twice
