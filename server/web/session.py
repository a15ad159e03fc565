"""What every page shares: the signed session cookie and who it says is signed in, the form token, the page's
language, and rendering a template with the catalog."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from lobbywatch.i18n import LOCALES, normalize_locale, t
from server.api.deps import RuntimeDep
from server.registry import users
from server.registry.users import Person
from server.runtime import Runtime
from server.tokens import LinkError, unseal

COOKIE = "lobbywatch_session"
LANG_COOKIE = "lobbywatch_lang"
SESSION = "session"  # the purpose of the sign-in cookie's token
SESSION_H = 12  # a shift

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class SignedIn:
    def __init__(self, person: Person, csrf: str, locale: str) -> None:
        self.person, self.csrf, self.locale = person, csrf, locale


def page_locale(request: Request, fallback: str) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    return normalize_locale(chosen) if chosen else fallback


def signed_in(request: Request, runtime: RuntimeDep) -> SignedIn:
    token = request.cookies.get(COOKIE, "")
    try:
        sid, csrf = unseal(SESSION, token, runtime.clock.now().timestamp(), runtime.link_secret)
    except (LinkError, ValueError):
        sid = None
    person = None
    if sid:  # the session must still be open here: signing out or switching the person off ends it at once
        with runtime.sessions() as session:
            person = users.session_person(session, str(sid), runtime.clock.now())
    if person is None:  # not signed in, expired, or the account was switched off since
        target = quote(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": f"/login?next={target}"})
    return SignedIn(person, str(csrf), page_locale(request, person.locale))


Viewer = Annotated[SignedIn, Depends(signed_in)]


def render(
    request: Request,
    name: str,
    locale: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    def tr(key: str, **params: object) -> str:
        return t(locale, key, **params)

    nonce = getattr(request.state, "csp_nonce", "")  # scripts of our own pages run by this nonce only
    response = templates.TemplateResponse(
        request,
        name,
        {"tr": tr, "locale": locale, "locales": LOCALES, "csp_nonce": nonce, **context},
        status_code=status_code,
        headers=headers,
    )
    if request.query_params.get("lang"):
        response.set_cookie(LANG_COOKIE, locale, max_age=365 * 86400, samesite="lax", secure=https_only(request))
    return response


def https_only(request: Request) -> bool:
    """Cookies are Secure whenever the server is reached over https (its public URL says so)."""
    runtime: Runtime = request.app.state.runtime
    return runtime.settings.public_url.startswith("https://")


def check_form(viewer: SignedIn, csrf: str) -> None:
    if not secrets.compare_digest(csrf, viewer.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, t(viewer.locale, "page.error.form_expired"))
