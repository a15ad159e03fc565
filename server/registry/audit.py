"""The audit log: who changed what. Written in the same transaction as the change it records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.registry import models


def record(session: Session, at: datetime, who: str, action: str, target: str, detail: str = "") -> None:
    session.add(models.AuditEntry(at=at, who=who, action=action, target=target, detail=detail[:2000]))
