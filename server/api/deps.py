"""Dependencies of the API routes, as Annotated aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request, status

from lobbywatch.i18n import normalize_locale
from server.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_token(runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = runtime.settings.api_token
    if expected is None and runtime.settings.mode == "dev":
        return
    scheme, _, given = (authorization or "").partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not secrets.compare_digest(given.encode(), expected.get_secret_value().encode())
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a valid 'Authorization: Bearer <token>' header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_token)


def get_locale(
    lang: Annotated[str | None, Query(description="zh-CN or en; default from Accept-Language")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> str:
    return normalize_locale(lang or accept_language)


LocaleDep = Annotated[str, Depends(get_locale)]
