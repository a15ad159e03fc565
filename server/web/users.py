"""People who sign in: their role, the branches they may see, argon2id password hashes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy.orm import Session

from server.registry import audit, models

Role = Literal["administrator", "technician", "branch_manager", "duty_supervisor", "read_only"]
ROLES: tuple[Role, ...] = ("administrator", "technician", "branch_manager", "duty_supervisor", "read_only")
SEE_ALL: frozenset[str] = frozenset({"administrator", "technician"})  # the whole network, wherever they are sent
ACT: frozenset[str] = frozenset({"administrator", "technician", "branch_manager", "duty_supervisor"})
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id with the library's current parameters


class UserError(ValueError):
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
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def add_user(session: Session, login: str, name: str, role: str, password: str, now: datetime, *,
             locale: str = "zh-CN", regions: Iterable[str] = (), branches: Iterable[str] = ()) -> models.User:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    regions, branches = sorted(set(regions)), sorted(set(branches))
    for region in regions:
        if session.get(models.Region, region) is None:
            raise UserError(f"no region {region!r}")
    for branch in branches:
        if session.get(models.Branch, branch) is None:
            raise UserError(f"no branch {branch!r}")
    if role not in SEE_ALL and role != "read_only" and not (regions or branches):
        raise UserError(f"a {role} needs --branch or --region: the branches they look after")
    user = session.get(models.User, login)
    if user is None:
        user = models.User(login=login, created_at=now)
        session.add(user)
    user.name, user.role, user.locale = name, role, locale
    user.password_hash = hash_password(password)
    user.regions, user.branches, user.active = regions, branches, True
    audit.record(session, now, "lobbywatch user", "user.save", login,
                 f"{role}; regions {', '.join(regions) or '-'}; branches {', '.join(branches) or '-'}")
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


def issue_token(session: Session, login: str, name: str, now: datetime) -> str:
    """A new API token for the person (shown once; only its hash is kept)."""
    if session.get(models.User, login) is None:
        raise UserError(f"no user {login!r}")
    token = "lwt_" + secrets.token_urlsafe(32)
    session.add(models.ApiToken(token_hash=_digest(token), login=login, name=name, created_at=now))
    audit.record(session, now, login, "api_token.create", login, name)
    session.commit()
    return token


def person_for_token(session: Session, token: str) -> Person | None:
    row = session.get(models.ApiToken, _digest(token))
    if row is None or row.revoked_at is not None:
        return None
    return load(session, row.login)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(session: Session, login: str) -> Person | None:
    user = session.get(models.User, login)
    return person(user) if user is not None and user.active else None


def person(user: models.User) -> Person:
    return Person(user.login, user.name, user.role, user.locale, frozenset(user.regions or ()),
                  frozenset(user.branches or ()))
