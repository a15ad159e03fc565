"""/api/v1 for people: API tokens (issued, listed, revoked; they expire) and switching a person off. Every
change is audited; a person manages their own tokens, an administrator everyone's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from server.api.deps import Authorized, CallerDep, RuntimeDep, roles
from server.registry import users

people = APIRouter(prefix="/api/v1")
ADMINISTRATORS = roles("administrator")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="what it is for")
    days: float = Field(users.TOKEN_DAYS, gt=0, le=users.MAX_TOKEN_DAYS, description="how long it works")
    login: str | None = Field(None, description="for whom (administrators only; default: yourself)")


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": users.token_id(row.token_hash),
        "login": row.login,
        "name": row.name,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


@people.get("/tokens", dependencies=[Authorized], summary="API tokens: yours, or (administrators) anyone's")
def token_list(
    runtime: RuntimeDep, caller: CallerDep, login: Annotated[str | None, Query()] = None
) -> list[dict[str, Any]]:
    whose = _whose(caller, login)
    with runtime.sessions() as session:
        return [_public(row) for row in users.tokens(session, whose)]


@people.post("/tokens", dependencies=[Authorized], summary="A new API token (shown once)")
def token_issue(body: TokenIn, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    whose = _whose(caller, body.login)
    if whose is None:
        raise HTTPException(422, "say for whom: login")
    try:
        with runtime.sessions() as session:
            token = users.issue_token(session, whose, body.name, runtime.clock.now(), body.days, by=caller.name)
    except users.UserError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"token": token, "login": whose, "days": body.days}


@people.delete("/tokens/{ident}", dependencies=[Authorized], summary="Revoke a token at once")
def token_revoke(ident: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    try:
        with runtime.sessions() as session:
            row = users.revoke_token(
                session,
                ident,
                caller.name,
                runtime.clock.now(),
                login=None if caller.role == "administrator" else _whose(caller, None),
            )
            return _public(row)
    except users.UserError as exc:
        raise HTTPException(404, str(exc)) from None


@people.post(
    "/users/{login}/deactivate",
    dependencies=[ADMINISTRATORS],
    summary="Switch a person off: their sessions and tokens end at once",
)
def deactivate(login: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    try:
        with runtime.sessions() as session:
            users.deactivate(session, login, caller.name, runtime.clock.now())
    except users.UserError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"login": login, "active": False}


def _whose(caller: CallerDep, login: str | None) -> str | None:
    """The login whose tokens the caller may handle: their own, or anyone's for an administrator."""
    if caller.person is not None and caller.role != "administrator":
        if login not in (None, caller.person.login):
            raise HTTPException(403, "you can only handle your own tokens")
        return caller.person.login
    return login
