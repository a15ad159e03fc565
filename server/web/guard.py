"""What every HTTP answer gets, whoever asked: a bound on request bodies, security headers (a content security
policy with a nonce per page for its own scripts), and access logs that never carry a one-tap link's token."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# The largest body a person or a device sends is a bulk CSV of enrollments or a camera config: far below this.
MAX_BODY_BYTES = 1024 * 1024
# FastAPI's own documentation pages load their scripts from a CDN; every other page uses only its own.
_DOCS = ("/docs", "/redoc")


class BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: refuses bodies over `max_body` with 413 (by Content-Length, or while reading one
    that did not say), and adds the security headers. `request.state.csp_nonce` is the page's script nonce."""

    def __init__(self, app: App, max_body: int = MAX_BODY_BYTES, https: bool = False) -> None:
        self.app = app
        self.max_body = max_body
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _too_large(send, self.max_body)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not refused:
                    # answer now; to the app the client has gone, and whatever it answers is dropped
                    refused = True
                    await _too_large(send, self.max_body)
                if refused:
                    return {"type": "http.disconnect"}
            return message

        async def with_headers(message: Message) -> None:
            if refused:
                return
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers(scope["path"], nonce)]
            await send(message)

        await self.app(scope, counted, with_headers)

    def _headers(self, path: str, nonce: str) -> list[tuple[bytes, bytes]]:
        docs = path.startswith(_DOCS)
        # the API docs page starts Swagger UI with an inline script of FastAPI's, which carries no nonce
        scripts = "'self' 'unsafe-inline'" if docs else f"'self' 'nonce-{nonce}'"
        policy = (
            f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
        )
        found = [
            (b"content-security-policy", policy.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if self.https:
            found.append((b"strict-transport-security", b"max-age=31536000"))
        return found


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SECRET_PATHS = re.compile(r"(/ack/)[^\s/?\"]+")


class RedactTokens(logging.Filter):
    """Hides the token of a one-tap acknowledgement link (whoever holds it acts as the person it was sent to)
    in every log record that mentions one: uvicorn's access log names the path of each request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_SECRET_PATHS.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET_PATHS.sub(r"\1<redacted>", record.msg)
        return True


def redact_access_logs() -> None:
    """Install the filter on the loggers that name request paths (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
