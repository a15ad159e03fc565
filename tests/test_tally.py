"""The fault suite's tally reads VictoriaMetrics' export again when one comes back failed or cut off under load, and
counts what is stamped ahead of now."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.tally import ExportError, Sent, settle_victoria, stored_victoria
from server.storage.points import OCCUPANCY
from tests.helpers import serving
from tests.services import VictoriaMetrics

SERIES = json.dumps({"metric": {"__name__": "occupancy_occupancy", "device": "d1"}, "timestamps": [1000, 2000]})
CUT_OFF = SERIES + "\n" + '{"metric":{"__name__":"occupancy_occupancy","device":"d2"},"timest'  # a body cut short


class _Exports(BaseHTTPRequestHandler):
    """Answers each export with the next (status, body) of the server's `answers`; the last one repeats."""

    def do_GET(self) -> None:
        answers: list[tuple[int, str]] = self.server.answers  # type: ignore[attr-defined]
        status, body = (200, "") if self.path.startswith("/internal/force_flush") else answers[0]
        if self.path.startswith("/api/v1/export") and len(answers) > 1:
            answers.pop(0)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def exports() -> Iterator[ThreadingHTTPServer]:
    with serving(_Exports, answers=[]) as server:
        yield server


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_cut_off_or_failed_export_is_read_again(exports: ThreadingHTTPServer) -> None:
    exports.answers[:] = [(200, CUT_OFF), (503, "too busy"), (200, SERIES + "\n")]  # type: ignore[attr-defined]
    rows = stored_victoria(url(exports), attempts=3)
    assert rows == {(OCCUPANCY, "d1", 1_000_000_000): 1, (OCCUPANCY, "d1", 2_000_000_000): 1}


def test_an_export_that_keeps_failing_is_named(exports: ThreadingHTTPServer) -> None:
    exports.answers[:] = [(200, CUT_OFF)]  # type: ignore[attr-defined]
    with pytest.raises(ExportError, match=r"failed 2 times; last: line 2 of the export is not a series"):
        stored_victoria(url(exports), attempts=2)


def test_the_tally_stops_waiting_once_nothing_is_on_its_way(exports: ThreadingHTTPServer) -> None:
    exports.answers[:] = [(200, SERIES + "\n")]  # type: ignore[attr-defined]
    sent = Sent(times={("d1", 1): 1_000_000_000, ("d1", 2): 2_000_000_000, ("d1", 3): 3_000_000_000})
    started = time.monotonic()
    counts = settle_victoria(sent, url(exports), timeout=60, empty=lambda: True, still_s=1.0)
    assert (counts["stored"], counts["lost"]) == (2, 1)
    assert time.monotonic() - started < 10  # not the 60 s timeout
    waiting = settle_victoria(sent, url(exports), timeout=3, empty=lambda: False, still_s=1.0)
    assert waiting["lost"] == 1  # something still on its way: waits to the timeout


def test_reports_stamped_ahead_of_now_are_counted(victoria: VictoriaMetrics) -> None:
    """A preload stamps its reports a millisecond apart from now on, so a large one reaches minutes ahead: the
    export must include those (it stops at now unless told), or the tally calls them lost."""
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 1000, now_ms + 120_000, now_ms + 3_600_000]
    lines = "\n".join(f"occupancy,device=d1 occupancy=1i {ms * 1_000_000}" for ms in stamps)
    httpx.post(f"{victoria.url}/write", content=lines, timeout=10).raise_for_status()
    rows = stored_victoria(victoria.url)
    assert sorted(ns for (_m, device, ns) in rows if device == "d1") == [ms * 1_000_000 for ms in stamps]
