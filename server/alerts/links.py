"""One-tap acknowledgement links: the alert, who, and until when, signed with the server's secret (HMAC-SHA256).
Whoever holds the link acknowledges as the person it was sent to; it stops working when it expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


class LinkError(ValueError):
    """A link that cannot be used; the message says why, for the person who tapped it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(alert_id: int, who: str, expires_at: float, secret: bytes) -> str:
    body = _b64(json.dumps([alert_id, who, int(expires_at)], ensure_ascii=False).encode())
    signature = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def verify(token: str, now: float, secret: bytes) -> tuple[int, str]:
    body, _, signature = token.partition(".")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature, expected):
        raise LinkError("this link is not valid")
    try:
        alert_id, who, expires_at = json.loads(_unb64(body))
    except (ValueError, TypeError):
        raise LinkError("this link is not valid") from None
    if now > expires_at:
        raise LinkError("this link has expired")
    return int(alert_id), str(who)
