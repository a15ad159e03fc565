"""The one-tap acknowledgement links: whoever holds one acknowledges as the person it was sent to, until it
expires."""

from __future__ import annotations

from server.tokens import LinkError, seal, unseal

ACK = "ack"

__all__ = ["LinkError", "sign", "verify"]


def sign(alert_id: int, who: str, expires_at: float, secret: bytes) -> str:
    return seal(ACK, [alert_id, who], expires_at, secret)


def verify(token: str, now: float, secret: bytes) -> tuple[int, str]:
    claims = unseal(ACK, token, now, secret)
    try:
        alert_id, who = claims
        return int(alert_id), str(who)
    except (ValueError, TypeError):
        raise LinkError("this link is not valid") from None
