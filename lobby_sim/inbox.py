"""The demo's phones: an HTTP endpoint the demo contacts' notices are sent to (apprise `json://`), and a page
that shows each person's messages as their phone would, one-tap acknowledgement links included. In memory only;
for the demo, never for a branch."""

from __future__ import annotations

import html
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

from lobby_sim.broker import free_port
from lobbywatch.i18n import t

KEEP = 200  # messages kept per person
LINK = re.compile(r"https?://[^\s<>\"]+")


@dataclass(frozen=True, slots=True)
class Message:
    person: str
    title: str
    body: str
    at: datetime


class Inbox:
    def __init__(self, people: dict[str, str], locale: str) -> None:
        """`people`: the path each person's notices are posted to -> their name."""
        self.people, self.locale = people, locale
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="inbox", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def address(self, path: str) -> str:
        """The apprise URL that delivers to this person's phone."""
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def received(self, path: str, payload: dict[str, object]) -> None:
        message = Message(
            self.people.get(path, path),
            str(payload.get("title", "")),
            str(payload.get("message", "")),
            datetime.now(UTC),
        )
        with self._lock:
            self.messages.append(message)
            del self.messages[: max(0, len(self.messages) - KEEP * len(self.people))]

    def page(self) -> str:
        with self._lock:
            shown = list(reversed(self.messages))
        zone = ZoneInfo("Asia/Shanghai")
        items = (
            "".join(
                f'<article><p class="meta">{html.escape(m.person)} · {m.at.astimezone(zone):%H:%M:%S}</p>'
                f"<h2>{html.escape(m.title)}</h2><p>{_linked(m.body)}</p></article>"
                for m in shown
            )
            or f'<p class="meta">{html.escape(t(self.locale, "demo.inbox.empty"))}</p>'
        )
        title = html.escape(t(self.locale, "demo.inbox.title"))
        return (
            f'<!doctype html><html lang="{self.locale}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta http-equiv="refresh" content="5">'
            f"<title>{title}</title><style>body{{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:26rem;"
            "padding:1rem;background:#f6f8fa}article{background:#fff;border:1px solid #d9dee3;border-radius:12px;"
            "padding:.6rem .9rem;margin:0 0 .8rem;overflow-wrap:anywhere}h2{font-size:1rem;margin:.2rem 0}"
            "p{white-space:pre-line;margin:.2rem 0}.meta{color:#5c6670;font-size:.85rem}"
            "a{display:inline-block;min-height:44px;line-height:44px}</style></head>"
            f"<body><h1>{title}</h1>{items}</body></html>"
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_error(400, "not JSON")
                    return
                inbox.received(self.path.strip("/"), payload if isinstance(payload, dict) else {})
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                body = inbox.page().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # the demo's terminal shows its table, not request lines

        return Handler


def _linked(text: str) -> str:
    """The message escaped, its links clickable (the one-tap acknowledgement)."""
    parts, last = [], 0
    for found in LINK.finditer(text):
        parts.append(html.escape(text[last : found.start()]))
        url = html.escape(found.group(0))
        parts.append(f'<a href="{url}">{url}</a>')
        last = found.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)
