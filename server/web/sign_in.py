"""Signing in and out: a password checked against the registry (throttled per name and address), then a signed
session cookie for one shift; `next` only ever leads to a page of ours."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lobbywatch.i18n import normalize_locale, t
from server.api.deps import RuntimeDep
from server.registry import rate_limits, users
from server.tokens import seal, unseal
from server.web import throttle
from server.web.session import COOKIE, SESSION, SESSION_H, Viewer, check_form, https_only, page_locale, render

sign_in = APIRouter(include_in_schema=False)


@sign_in.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/lobby") -> HTMLResponse:
    locale = page_locale(request, normalize_locale(request.headers.get("accept-language")))
    return render(request, "login.html", locale, next=_safe_next(next), error=None)


@sign_in.post("/login")
def login(
    request: Request,
    runtime: RuntimeDep,
    login: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/lobby",
) -> Response:
    locale = page_locale(request, normalize_locale(request.headers.get("accept-language")))
    address = request.client.host if request.client else "?"
    login = login.strip()
    now = runtime.clock.now().timestamp()
    held = throttle.limits(login, address)
    with runtime.sessions() as session:
        wait = throttle.wait_s(rate_limits.load(session, held), now)
    if wait > 0:  # checked before the password: a guess made now is not even tried
        return render(
            request,
            "login.html",
            locale,
            status_code=429,
            next=_safe_next(next),
            error=t(locale, "page.login.throttled", minutes=max(1, round(wait / 60))),
            headers={"Retry-After": str(round(wait))},
        )
    with runtime.sessions() as session:
        person = users.authenticate(session, login, password)
        if person is not None:
            sid = users.start_session(session, person.login, runtime.clock.now(), SESSION_H)
    if person is None:
        with runtime.sessions() as session:
            records = rate_limits.load(session, held, lock=True)
            rate_limits.save(session, {k: throttle.failed(records.get(k), n, now) for k, n in held.items()}, now)
            session.commit()
        return render(
            request, "login.html", locale, status_code=401, next=_safe_next(next), error=t(locale, "page.login.failed")
        )
    with runtime.sessions() as session:
        rate_limits.forget(session, throttle.account(login))
        session.commit()
    expires = runtime.clock.now().timestamp() + SESSION_H * 3600
    token = seal(SESSION, [sid, secrets.token_urlsafe(16)], expires, runtime.link_secret)
    response = RedirectResponse(_safe_next(next), status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE, token, max_age=SESSION_H * 3600, httponly=True, samesite="lax", secure=https_only(request)
    )
    return response


@sign_in.post("/logout")
def logout(request: Request, runtime: RuntimeDep, viewer: Viewer, csrf: Annotated[str, Form()]) -> Response:
    check_form(viewer, csrf)
    sid, _ = unseal(SESSION, request.cookies.get(COOKIE, ""), runtime.clock.now().timestamp(), runtime.link_secret)
    with runtime.sessions() as session:
        users.end_session(session, str(sid), runtime.clock.now())
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, httponly=True, samesite="lax", secure=https_only(request))
    return response


def _safe_next(target: str) -> str:
    # only a path of ours: never an open redirect to another site
    return target if target.startswith("/") and not target.startswith("//") else "/lobby"
