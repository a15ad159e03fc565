"""Rule state per branch. One worker owns a branch; `export_branch`/`load_branch` move it between workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from server.rules.queue_length import QueueRule, QueueState, Transition, step


@dataclass(slots=True)
class BranchState:
    queues: dict[str, QueueState] = field(default_factory=dict)


class RuleEngine:
    def __init__(self) -> None:
        self._branches: dict[str, BranchState] = {}

    def _branch(self, branch: str) -> BranchState:
        state = self._branches.get(branch)
        if state is None:
            state = self._branches[branch] = BranchState()
        return state

    def observe_occupancy(
        self, branch: str, zone: str, rule: QueueRule, value: int | None, at: float
    ) -> Transition | None:
        queues = self._branch(branch).queues
        state = queues.get(zone)
        if state is None:
            state = queues[zone] = QueueState()
        return step(rule, state, value, at)

    def mark_firing(self, branch: str, zone: str, peak: int) -> None:
        """Restore a firing alert found in storage after a restart, so it can clear."""
        self._branch(branch).queues[zone] = QueueState(firing=True, peak=peak)

    def export_branch(self, branch: str) -> dict[str, object]:
        state = self._branches.get(branch, BranchState())
        return {"queues": {zone: asdict(q) for zone, q in state.queues.items()}}

    def load_branch(self, branch: str, data: dict[str, object]) -> None:
        queues = data.get("queues", {})
        assert isinstance(queues, dict)
        self._branches[branch] = BranchState({zone: QueueState(**q) for zone, q in queues.items()})
