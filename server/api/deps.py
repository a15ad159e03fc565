"""Dependencies of the API routes, as Annotated aliases."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Query, Request, status

from lobbywatch.i18n import normalize_locale
from server.alerts.views import AlertViews
from server.fleet import Fleet
from server.registry import users
from server.registry.users import Person
from server.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_alert_views(runtime: RuntimeDep) -> AlertViews:
    return runtime.alert_views


AlertViewsDep = Annotated[AlertViews, Depends(get_alert_views)]


def get_fleet(runtime: RuntimeDep) -> Fleet:
    return runtime.fleet


FleetDep = Annotated[Fleet, Depends(get_fleet)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls the API: a person by their API token, or the deployment's own token (an administrator)."""

    name: str
    role: str
    person: Person | None = None

    def sees(self, runtime: Runtime, branch: str) -> bool:
        return self.person is None or self.person.sees(branch, runtime.directory.lineage(branch))

    def check_branch(self, runtime: Runtime, branch: str) -> None:
        if not self.sees(runtime, branch):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"branch {branch!r} is not one of yours")

    def check_act(self, runtime: Runtime, branch: str) -> None:
        self.check_branch(runtime, branch)
        if self.person is not None and not self.person.can_act:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {self.role} can look, not act")

    def acting_as(self, given: str) -> str:
        """A person acts as themselves; only the deployment's token names someone."""
        return self.person.name if self.person is not None else given


ADMIN = Caller("api-token", "administrator")


def get_caller(runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> Caller:
    expected = runtime.settings.api_token
    if not authorization and expected is None and runtime.settings.mode == "dev":
        return Caller("dev", "administrator")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and given:
        if expected is not None and secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
            return ADMIN
        with runtime.sessions() as session:
            person = users.person_for_token(session, given, runtime.clock.now())
        if person is not None:
            return Caller(person.name, person.role, person)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "a valid 'Authorization: Bearer <token>' header is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


CallerDep = Annotated[Caller, Depends(get_caller)]
Authorized = Depends(get_caller)


def roles(*allowed: str) -> Any:
    """A dependency: only these roles (the deployment's token counts as an administrator)."""

    def check(caller: CallerDep) -> Caller:
        if caller.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"only {' or '.join(allowed)} may do this")
        return caller

    return Depends(check)


def get_locale(
    lang: Annotated[str | None, Query(description="zh-CN or en; default from Accept-Language")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> str:
    return normalize_locale(lang or accept_language)


LocaleDep = Annotated[str, Depends(get_locale)]
