"""Can the durability tests fail? Plants each bug below in a copy of the code and runs the tests that must catch
it; a bug no test catches is a hole in the tests.

    python -m bench.planted_bugs [--only NAME]

Each bug is one exact text replacement (the run stops if the text is no longer there: update the bug with the
code). Prints a line per bug, then a JSON object on its last line: `{"bugs": [{"name", "caught", "failed"}]}`,
`failed` the tests that failed with the bug in. Exit status 1 when a bug went uncaught. Mutation testing
(`mutmut`, configured in pyproject.toml) does the same for every small change of the outbox and sequence code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bug:
    name: str
    why: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = (
    Bug(
        "duplicates-kept",
        "a message already seen is taken for a new one",
        "server/processing/sequence.py",
        "            self.duplicates += 1\n            return Verdict.DUPLICATE\n",
        "            self.duplicates += 1\n            return Verdict.NEW\n",
        ("tests/test_replay.py", "tests/test_sequence.py", "tests/test_ingest.py"),
    ),
    Bug(
        "ack-on-receipt",
        "the broker is told a message is done when it arrives, before it is stored",
        "server/ingest/mqtt_source.py",
        "        self._handoff(Received(message.topic, bytes(message.payload), time.time(), message.mid, "
        "message.qos))\n",
        "        self._handoff(Received(message.topic, bytes(message.payload), time.time(), message.mid, "
        "message.qos))\n        self._client.ack(message.mid, message.qos)\n",
        ("tests/test_durability.py",),
    ),
    Bug(
        "spool-in-memory",
        "the InfluxDB spool kept in memory, not on disk",
        "server/storage/influx_store.py",
        "        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)\n"
        '        self._db.execute("PRAGMA journal_mode=WAL")\n',
        '        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)\n'
        '        self._db.execute("PRAGMA journal_mode=WAL")\n',
        ("tests/test_influx.py",),
    ),
    Bug(
        "sequence-saved-late",
        "the device sequence windows saved every few seconds, not with each batch",
        "server/ingest/pipeline.py",
        "        if self.save_every_batch:\n            self.save_state()\n",
        "",
        ("tests/test_durability.py",),
    ),
    Bug(
        "outbox-error-ends-uplink",
        "a storage error while marking messages delivered ends the uplink's session",
        "edge_agent/transport/link.py",
        "        except sqlite3.Error as exc:  # kept, and marked at the next turn; meanwhile nothing is lost\n",
        "        except KeyError as exc:\n",
        ("tests/test_agent.py",),
    ),
    Bug(
        "outbox-drop-uncounted",
        "messages dropped at the outbox's bound are not counted",
        "edge_agent/transport/outbox.py",
        "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'dropped'",
        "UPDATE meta SET value = CAST(value AS INTEGER) + 0 * ? WHERE key = 'dropped'",
        ("tests/test_outbox.py",),
    ),
)


def copy_tree(target: Path) -> None:
    """The working tree as it is (what git tracks or would track), without the virtual environment."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def plant(bug: Bug, tree: Path) -> dict[str, Any]:
    path = tree / bug.path
    text = path.read_text(encoding="utf-8")
    if text.count(bug.old) != 1:
        raise SystemExit(f"{bug.name}: the text to change is not (once) in {bug.path}; update the bug")
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")
    # the copy first on the path: its modules, not the installed project's, in the tests and the processes
    # they start
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *bug.tests],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    path.write_text(text, encoding="utf-8")
    failed = sorted(set(re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)))
    return {"name": bug.name, "why": bug.why, "caught": done.returncode != 0 and bool(failed), "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=[b.name for b in BUGS], action="append")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="lobbywatch-bugs-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        for bug in BUGS:
            if args.only and bug.name not in args.only:
                continue
            result = plant(bug, tree)
            results.append(result)
            print(
                f"{bug.name:<28} {'caught' if result['caught'] else 'NOT CAUGHT':<11} {', '.join(result['failed'])}",
                flush=True,
            )
    print(json.dumps({"bugs": results}, ensure_ascii=False))
    return 0 if all(r["caught"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
