"""Browser sessions over HTTP: the cookie, the ticket exchange, sign-out, and guarded file routes.

- `GET /auth/session?ticket=…&next=/path` trades the one-time ticket a signed-in page handed the
  browser for an HttpOnly session cookie, then returns to `next` (a reload keeps the user signed in).
- `GET /auth/signout?next=/` clears the cookie (the page revoked the session first).
- `GET /files/{asset_id}?e=…&k=…&s=…` streams one stored file to the session the link was made for:
  the signed link and the cookie must agree, the user must still be allowed; every download is audited.
  Links the API hands out are bound to the caller's API token instead: send it as `Authorization: Bearer`.
- `MediaGuard`: Streamlit's own media URLs (images on screen) answer only with a live session cookie.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import NotFoundError, PermissionDeniedError, StudioError
from web.runtime import services

COOKIE = "tss_session"
#: Where an OpenID Connect sign-in started (a page and its query): the provider returns to the app's root.
NEXT_COOKIE = "tss_next"
#: Headers on every response these routes make: nothing cached, nothing leaked to other sites.
PRIVATE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff"}


def safe_next(value: str | None) -> str:
    """Only a path of this site (never `//host` or `https://…`): no open redirects."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def _denied(message: str, status: int = 401) -> Response:
    return PlainTextResponse(message, status_code=status, headers=PRIVATE)


def start_session(request: Request) -> Response:
    ticket = request.query_params.get("ticket", "")
    try:
        secret, session = services().sessions.start_web_session(ticket)
    except StudioError as exc:
        return _denied(str(exc), 403)
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303, headers=PRIVATE)
    lifetime = int((session.expiresAt - session.createdAt).total_seconds())
    response.set_cookie(COOKIE, secret, max_age=lifetime, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    response.delete_cookie(NEXT_COOKIE, path="/")  # the sign-in it remembered is over
    return response


def start_signin(request: Request) -> Response:
    """The OpenID Connect "Sign in" button: remember the page the user asked for (`next`, 10 minutes, this
    browser only), then go on to the provider's login (`then`, the path `st.login` would send the browser to;
    app.py builds it)."""
    response = RedirectResponse(safe_next(request.query_params.get("then")), status_code=303, headers=PRIVATE)
    response.set_cookie(NEXT_COOKIE, safe_next(request.query_params.get("next")), max_age=600, path="/",
                        httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


def end_session(request: Request) -> Response:
    secret = request.cookies.get(COOKIE, "")
    resumed = services().sessions.resume(secret) if secret else None
    if resumed is not None:  # signing out from another tab: end it here too
        services().sessions.signed_out(resumed.actor, "user", session_id=resumed.session.id)
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303, headers=PRIVATE)
    response.delete_cookie(COOKIE, path="/")
    return response


def download(request: Request) -> Response:
    asset_id = request.path_params["asset_id"]
    params = request.query_params
    link = {"expires": params.get("e", ""), "key_id": params.get("k", ""), "signature": params.get("s", "")}
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() == "bearer":  # an API client: the link is bound to its token, not a cookie
            actor = services().api_tokens.authenticate(bearer.strip())
            grant = services().sessions.check_token_download(actor, asset_id, **link)
        else:
            grant = services().sessions.check_download(request.cookies.get(COOKIE, ""), asset_id, **link)
        data, name, content_type = services().visuals.download(grant.actor, grant.asset_id)
    except PermissionDeniedError as exc:
        return _denied(str(exc), 401 if "Sign in" in str(exc) or "valid API token" in str(exc) else 403)
    except NotFoundError as exc:
        return _denied(str(exc), 404)
    headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{name}"',
               "Content-Security-Policy": "sandbox; default-src 'none'"}
    return Response(data, media_type=content_type, headers=headers)


class MediaGuard:
    """Streamlit's media store URLs (`/media/…`) answer only with a live session cookie.

    Streamlit serves them to anyone who has the URL; pictures of patients must not outlive the
    session that showed them. A cookie's verdict is cached for a few seconds (a revoked session is
    refused at most that much later) so a page of thumbnails does not cost a query per picture.
    """

    TTL = 5.0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._verdicts: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/media/"):
            request = Request(scope)
            secret = request.cookies.get(COOKIE, "")
            if not secret or not await self._allowed(secret):
                await _denied("Sign in to see this file.")(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _allowed(self, secret: str) -> bool:
        from starlette.concurrency import run_in_threadpool

        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(secret)
        if cached and now - cached[0] < self.TTL:
            return cached[1]
        allowed = await run_in_threadpool(lambda: services().sessions.resume(secret) is not None)
        with self._lock:
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            self._verdicts[secret] = (now, allowed)
        return allowed


ROUTES = [
    Route("/auth/session", start_session, methods=["GET"]),
    Route("/auth/start", start_signin, methods=["GET"]),
    Route("/auth/signout", end_session, methods=["GET"]),
    Route("/files/{asset_id}", download, methods=["GET"]),
]
