"""Signed tokens (HMAC-SHA256 with the server's secret, a key per purpose, so that a token made for one purpose
is never taken for another): the one-tap acknowledgement links, the pages' sign-in cookie. Every token stops
working when it expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


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
