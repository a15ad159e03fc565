"""A webhook for the benchmarks: every alert notice the server delivers, kept with the time it arrived.

It runs in a process of its own (`python -m bench.webhook`), writing each notice as a line to a file: in the
benchmark's process it answered late whenever the publishers' threads held the GIL, and the notices' latency
measured the harness, not the server (seen at 1,000 reports/s: p50 12 s, each POST 25-300 ms).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from bench.processes import tied


class Notices:
    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="lobbywatch-notices-")
        self._file = Path(self._folder.name) / "notices.jsonl"
        self._process = subprocess.Popen(
            tied([sys.executable, "-m", "bench.webhook", "--out", str(self._file)]),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())  # the child says its port once it listens
        self.url = f"http://127.0.0.1:{port}/notices"
        self._kept: list[tuple[float, dict[str, Any]]] | None = None  # what had come when it stopped

    @property
    def received(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrived, unix time; the notice), in the order they arrived."""
        if self._kept is not None:
            return self._kept
        if not self._file.exists():
            return []
        rows = []
        for line in self._file.read_text(encoding="utf-8").splitlines():
            if line.endswith("}]"):  # a line still being written has no end yet
                arrived, notice = json.loads(line)
                rows.append((float(arrived), notice))
        return rows

    def notices(self) -> list[dict[str, Any]]:
        return [notice for _, notice in self.received]

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._kept = self.received
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._folder.cleanup()


def serve(out: IO[str]) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            notice = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                out.write(json.dumps([time.time(), notice], ensure_ascii=False) + "\n")
                out.flush()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def main() -> int:
    parser = argparse.ArgumentParser(description="the benchmarks' webhook: notices to a file, a line each")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with args.out.open("a", encoding="utf-8") as out:
        server = serve(out)
        print(server.server_address[1], flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
