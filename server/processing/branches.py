"""The branch processors one owner holds (one server: all of them; scaled out, a worker's partitions), and which
of them holds each device. A device re-registered to another branch takes its state along."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from server.processing.branch import BranchProcessor
from server.processing.devices import DeviceRuntime
from server.rules.service_rate import ServiceLearner
from server.rules.state import BranchState


class Devices(Mapping[str, DeviceRuntime]):
    """Every device's state, read across the processors (for the fleet view, the gap repair, the tests)."""

    def __init__(self, branches: Branches) -> None:
        self._branches = branches

    def __getitem__(self, device: str) -> DeviceRuntime:
        branch = self._branches.holder.get(device)
        if branch is None:
            raise KeyError(device)
        return self._branches.processors[branch].devices[device]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._branches.holder))

    def __len__(self) -> int:
        return len(self._branches.holder)


class Branches:
    def __init__(self, hearing: bool = True) -> None:
        self.processors: dict[str, BranchProcessor] = {}
        self.holder: dict[str, str] = {}  # device: the branch whose processor holds its state
        self.hearing = hearing  # as the last `presence` said: a branch taken meanwhile starts so
        self.devices = Devices(self)

    def __iter__(self) -> Iterator[BranchProcessor]:
        return iter(list(self.processors.values()))

    def get(self, branch: str) -> BranchProcessor:
        processor = self.processors.get(branch)
        if processor is None:
            processor = self.processors[branch] = BranchProcessor(BranchState(branch), self.hearing)
        return processor

    def add(self, processor: BranchProcessor) -> None:
        self.processors[processor.branch] = processor
        for device in processor.devices:
            self.holder[device] = processor.branch

    def drop(self, branches: Collection[str]) -> None:
        """Forget these branches (their partition moved to another worker, which loads them as saved)."""
        for branch in branches:
            processor = self.processors.pop(branch, None)
            if processor is not None:
                for device in processor.devices:
                    if self.holder.get(device) == branch:
                        del self.holder[device]

    def of_device(self, device: str, branch: str) -> BranchProcessor:
        """The processor of `branch`, holding `device`'s state (moved from its former branch's, if it moved)."""
        processor = self.get(branch)
        held = self.holder.get(device)
        if held != branch:
            if held is not None and device in self.processors[held].devices:
                processor.devices[device] = self.processors[held].devices.pop(device)
            self.holder[device] = branch
        return processor

    def presence(self, hearing: bool, now: float) -> None:
        self.hearing = hearing
        for processor in self.processors.values():
            processor.presence(hearing, now)

    def offline_devices(self) -> frozenset[tuple[str, str]]:
        """Every (branch, device) offline now."""
        return frozenset((p.branch, d) for p in self.processors.values() for d in p.offline_devices())

    def service_evidence(self) -> dict[tuple[str, str], ServiceLearner]:
        """What has been learnt of every zone's service time, to keep over a restart."""
        return {(p.branch, z): learnt for p in self.processors.values() for z, learnt in p.service_evidence().items()}
