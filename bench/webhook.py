"""A webhook for the benchmarks: every alert notice the server delivers, kept with the time it arrived."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Notices:
    def __init__(self) -> None:
        received: list[tuple[float, dict[str, Any]]] = []  # (arrived, unix time; the notice)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                notice = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    received.append((time.time(), notice))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notices"
        threading.Thread(target=self._server.serve_forever, name="notices", daemon=True).start()

    def notices(self) -> list[dict[str, Any]]:
        return [notice for _, notice in list(self.received)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
