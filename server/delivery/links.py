"""Signed tokens (HMAC-SHA256 with the server's secret, a key per purpose): the one-tap acknowledgement links,
and the pages' sign-in cookie. Whoever holds an acknowledgement link acknowledges as the person it was sent to;
every token stops working when it expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

ACK = "ack"
SESSION = "session"


class LinkError(ValueError):
    """A token that cannot be used; the message says why, for the person who tapped it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, body: str) -> str:
    key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()  # a link is never a cookie, nor back
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def seal(purpose: str, claims: list[Any], expires_at: float, secret: bytes) -> str:
    body = _b64(json.dumps([*claims, int(expires_at)], ensure_ascii=False).encode())
    return f"{body}.{_mac(secret, purpose, body)}"


def unseal(purpose: str, token: str, now: float, secret: bytes) -> list[Any]:
    body, _, signature = token.partition(".")
    if not signature or not hmac.compare_digest(signature, _mac(secret, purpose, body)):
        raise LinkError("this link is not valid")
    try:
        *claims, expires_at = json.loads(_unb64(body))
    except (ValueError, TypeError):
        raise LinkError("this link is not valid") from None
    if now > expires_at:
        raise LinkError("this link has expired")
    return list(claims)


def sign(alert_id: int, who: str, expires_at: float, secret: bytes) -> str:
    return seal(ACK, [alert_id, who], expires_at, secret)


def verify(token: str, now: float, secret: bytes) -> tuple[int, str]:
    claims = unseal(ACK, token, now, secret)
    try:
        alert_id, who = claims
        return int(alert_id), str(who)
    except (ValueError, TypeError):
        raise LinkError("this link is not valid") from None
