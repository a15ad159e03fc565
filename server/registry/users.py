"""People who sign in: their role, the branches they may see, argon2id password hashes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lobbywatch.clock import as_utc
from lobbywatch.validation import Refused
from server.registry import audit, models

Role = Literal["administrator", "technician", "branch_manager", "duty_supervisor", "read_only"]
ROLES: tuple[Role, ...] = ("administrator", "technician", "branch_manager", "duty_supervisor", "read_only")
SEE_ALL: frozenset[str] = frozenset({"administrator", "technician"})  # the whole network, wherever they are sent
ACT: frozenset[str] = frozenset({"administrator", "technician", "branch_manager", "duty_supervisor"})
MIN_PASSWORD = 10
TOKEN_DAYS = 90  # a person's API token expires after this unless asked otherwise
MAX_TOKEN_DAYS = 400

_hasher = PasswordHasher()  # argon2id with the library's current parameters


class UserError(Refused):
    """A user that cannot be made as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Person:
    login: str
    name: str
    role: str
    locale: str
    regions: frozenset[str]
    branches: frozenset[str]

    @property
    def can_act(self) -> bool:
        return self.role in ACT

    def sees(self, branch_id: str, region_lineage: Iterable[str]) -> bool:
        """`region_lineage`: the branch's region and the regions it is in (regions nest)."""
        if self.role in SEE_ALL:
            return True
        return branch_id in self.branches or any(region in self.regions for region in region_lineage)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError("user.error.short_password", length=MIN_PASSWORD)
    return _hasher.hash(password)


def add_user(
    session: Session,
    login: str,
    name: str,
    role: str,
    password: str,
    now: datetime,
    *,
    locale: str = "zh-CN",
    regions: Iterable[str] = (),
    branches: Iterable[str] = (),
) -> models.User:
    if role not in ROLES:
        raise UserError("user.error.unknown_role", role=role, roles=", ".join(ROLES))
    regions, branches = sorted(set(regions)), sorted(set(branches))
    for region in regions:
        if session.get(models.Region, region) is None:
            raise UserError("user.error.no_region", region=region)
    for branch in branches:
        if session.get(models.Branch, branch) is None:
            raise UserError("user.error.no_branch", branch=branch)
    if role not in SEE_ALL and role != "read_only" and not (regions or branches):
        raise UserError("user.error.needs_scope", role=role)
    user = session.get(models.User, login)
    if user is None:
        user = models.User(login=login, created_at=now)
        session.add(user)
    user.name, user.role, user.locale = name, role, locale
    user.password_hash = hash_password(password)
    user.regions, user.branches, user.active = regions, branches, True
    audit.record(
        session,
        now,
        "lobbywatch user",
        "user.save",
        login,
        f"{role}; regions {', '.join(regions) or '-'}; branches {', '.join(branches) or '-'}",
    )
    session.commit()
    return user


def authenticate(session: Session, login: str, password: str) -> Person | None:
    user = session.get(models.User, login)
    if user is None or not user.active:
        _hasher.hash(password)  # as slow as a real check: the answer's timing does not tell who exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.commit()
    return person(user)


def issue_token(
    session: Session, login: str, name: str, now: datetime, days: float = TOKEN_DAYS, by: str | None = None
) -> str:
    """A new API token for the person, valid `days` (shown once; only its hash is kept)."""
    user = session.get(models.User, login)
    if user is None or not user.active:
        raise UserError("user.error.no_active_user", login=login)
    if not 0 < days <= MAX_TOKEN_DAYS:
        raise UserError("user.error.token_days", most=MAX_TOKEN_DAYS, days=f"{days:g}")
    token = "lwt_" + secrets.token_urlsafe(32)
    expires = now + timedelta(days=days)
    session.add(models.ApiToken(token_hash=_digest(token), login=login, name=name, created_at=now, expires_at=expires))
    audit.record(
        session,
        now,
        by or login,
        "api_token.create",
        login,
        f"{name}; {token_id(_digest(token))}; expires {expires:%Y-%m-%d}",
    )
    session.commit()
    return token


def token_id(digest: str) -> str:
    """How a token is named in lists and revocations: the start of its hash (the token itself is never kept)."""
    return digest[:12]


def tokens(session: Session, login: str | None = None) -> list[models.ApiToken]:
    query = select(models.ApiToken).order_by(models.ApiToken.created_at)
    if login is not None:
        query = query.where(models.ApiToken.login == login)
    return list(session.scalars(query))


def revoke_token(session: Session, ident: str, by: str, now: datetime, login: str | None = None) -> models.ApiToken:
    """Revoke a token by its id; `login`: only if it is that person's."""
    if len(ident) < 8:
        raise UserError("user.error.token_id_short")
    found = [t for t in tokens(session, login) if t.token_hash.startswith(ident)]
    if len(found) != 1:
        if not found:
            raise UserError("user.error.no_token", ident=ident)
        raise UserError("user.error.tokens_ambiguous", ident=ident, count=len(found))
    row = found[0]
    if row.revoked_at is None:
        row.revoked_at = now
        audit.record(session, now, by, "api_token.revoke", row.login, f"{row.name}; {token_id(row.token_hash)}")
        session.commit()
    return row


def person_for_token(session: Session, token: str, now: datetime) -> Person | None:
    row = session.get(models.ApiToken, _digest(token))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return None
    return load(session, row.login)


def deactivate(session: Session, login: str, by: str, now: datetime) -> None:
    """Switch a person off: their sessions and tokens end now (the pages and the API check on every request)."""
    user = session.get(models.User, login)
    if user is None:
        raise UserError("user.error.no_user", login=login)
    user.active = False
    session.execute(
        update(models.WebSession)
        .where(models.WebSession.login == login, models.WebSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    session.execute(
        update(models.ApiToken)
        .where(models.ApiToken.login == login, models.ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    audit.record(session, now, by, "user.deactivate", login, "sessions ended, tokens revoked")
    session.commit()


def start_session(session: Session, login: str, now: datetime, hours: float) -> str:
    """A signed-in session; returns its id for the cookie (only its hash is kept)."""
    sid = secrets.token_urlsafe(24)
    session.add(
        models.WebSession(id_hash=_digest(sid), login=login, created_at=now, expires_at=now + timedelta(hours=hours))
    )
    session.commit()
    return sid


def session_person(session: Session, sid: str, now: datetime) -> Person | None:
    row = session.get(models.WebSession, _digest(sid))
    if row is None or row.ended_at is not None or as_utc(row.expires_at) <= now:
        return None
    return load(session, row.login)


def end_session(session: Session, sid: str, now: datetime) -> None:
    row = session.get(models.WebSession, _digest(sid))
    if row is not None and row.ended_at is None:
        row.ended_at = now
        session.commit()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(session: Session, login: str) -> Person | None:
    user = session.get(models.User, login)
    return person(user) if user is not None and user.active else None


def person(user: models.User) -> Person:
    return Person(
        user.login, user.name, user.role, user.locale, frozenset(user.regions or ()), frozenset(user.branches or ())
    )
