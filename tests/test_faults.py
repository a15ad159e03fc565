"""A reduced run of the fault suite (`python -m bench.faults`): real processes, each fault injected and healed,
every message counted in the store by device and sequence. The full run's figures are in the README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_every_fault_loses_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.faults", "--devices", "5", "--rate", "50", "--seconds", "4",
                           "--down", "2"], capture_output=True, text=True, check=False, timeout=600,
                          cwd=Path(__file__).parent.parent)
    faults = json.loads(done.stdout.strip().splitlines()[-1])["faults"]
    assert [f["name"] for f in faults] == ["server-kill", "store-down", "broker-restart"]
    for fault in faults:
        assert fault["sent"] >= 150, fault
        assert (fault["stored"], fault["lost"], fault["duplicated"]) == (fault["sent"], 0, 0), fault
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
