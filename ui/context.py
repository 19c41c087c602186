"""Service wiring and the signed-in actor for pages. Session state holds ids, never clients."""

from __future__ import annotations

import contextlib
import json
import time
from urllib.parse import quote, urlencode, urlsplit

import streamlit as st

from core.config import load_settings
from core.errors import PermissionDeniedError, StudioError
from core.permissions import Actor
from core.services import Services, build_services
from ui.navigation import all_url_paths
from ui.text import md

USER_KEY = "user_id"
PATIENT_KEY = "patient_id"
SIMULATION_KEY = "simulation_id"
ACTIVITY_KEY = "last_activity"
NOTICE_KEY = "signin_notice"
#: The browser session (the hash of its HttpOnly cookie), once the browser holds the cookie.
WEB_SESSION_KEY = "web_session_id"
COOKIE = "tss_session"


@st.cache_resource(show_spinner=False)
def services() -> Services:
    """One set of clients per Streamlit server process."""
    return build_services(load_settings())


def idle_expired() -> bool:
    limit = services().infra.settings.idle_timeout_minutes * 60
    last = st.session_state.get(ACTIVITY_KEY)
    return last is not None and time.time() - last > limit


def current_actor(*, touch: bool = True) -> Actor | None:
    """The signed-in user, reloaded from the database on every rerun (revocations apply at once).

    A session idle for longer than the configured timeout is signed out first.
    """
    user_id = st.session_state.get(USER_KEY) or resume_from_cookie()
    if not user_id:
        return None
    web_session = st.session_state.get(WEB_SESSION_KEY)
    if web_session and not services().sessions.session_valid(web_session):
        sign_out("ended elsewhere")  # signed out in another tab, timed out or revoked
        st.session_state[NOTICE_KEY] = "Your session ended; sign in again."
        return None
    if idle_expired():
        sign_out("idle")
        st.session_state[NOTICE_KEY] = "You were signed out after a period without activity."
        return None
    try:
        actor = services().sessions.load_actor(user_id)
    except PermissionDeniedError as exc:
        sign_out("revoked")
        st.session_state[NOTICE_KEY] = str(exc)
        return None
    if touch:
        st.session_state[ACTIVITY_KEY] = time.time()
    return actor


def _cookie() -> str:
    with contextlib.suppress(Exception):  # no browser request behind this run (e.g. AppTest)
        value = st.context.cookies.get(COOKIE)
        return value if isinstance(value, str) else ""
    return ""


def resume_from_cookie() -> str | None:
    """Sign the page in from the browser's session cookie (a reload, a new tab, a shared link)."""
    secret = _cookie()
    if not secret:
        return None
    resumed = services().sessions.resume(secret)
    if resumed is None:
        return None
    st.session_state[USER_KEY] = resumed.actor.id
    st.session_state[WEB_SESSION_KEY] = resumed.session.id
    st.session_state[ACTIVITY_KEY] = time.time()
    return resumed.actor.id


def current_path(url_path: str = "") -> str:
    """This page's path and query (for returning to it after signing in).

    `st.context.url` has no query and may or may not end in a page's own path: the page path is
    replaced by `url_path` and the query added here.
    """
    segments: list[str] = []
    with contextlib.suppress(Exception):
        segments = [s for s in urlsplit(st.context.url or "/").path.split("/") if s]
    if segments and segments[-1] in all_url_paths():
        segments.pop()  # the page's own address: the app may be served under a base path before it
    path = "/" + "/".join([*segments, *([url_path.strip("/")] if url_path.strip("/") else [])])
    query = urlencode([(k, v) for k in st.query_params for v in st.query_params.get_all(k)])
    return path + (f"?{query}" if query else "")


def navigate(path: str) -> None:
    """Send the browser to a path of this site (the app's own routes: sign-in cookie, sign-out)."""
    target = json.dumps(path)
    st.html(f"<script>window.location.replace({target});</script>", unsafe_allow_javascript=True)
    st.caption(f"Continuing… [click here if nothing happens]({path})")


def hand_over_session(actor: Actor, *, method: str, url_path: str = "") -> None:
    """After a sign-in on this page, give the browser its session cookie (and come back here: the same
    page and query, so a link opened before signing in lands where it pointed)."""
    ticket = services().sessions.sign_in_ticket(actor, method=method)
    target = current_path(url_path)
    if method == "oidc":  # the provider returned to the root: go where the sign-in started (web/auth.py)
        remembered = ""
        with contextlib.suppress(Exception):
            remembered = st.context.cookies.get("tss_next") or ""
        if remembered.startswith("/") and not remembered.startswith("//"):
            target = remembered
    navigate(f"/auth/session?ticket={quote(ticket)}&next={quote(target, safe='')}")


def sign_out(reason: str = "user") -> None:
    """Forget everything about the session (ids, selections, cached UI state); end the browser session."""
    user_id = st.session_state.get(USER_KEY)
    if user_id:
        # A deleted/disabled account has nobody to attribute the sign-out to.
        with contextlib.suppress(PermissionDeniedError):
            services().sessions.signed_out(services().sessions.load_actor(user_id), reason,
                                           session_id=st.session_state.get(WEB_SESSION_KEY))
    notice = st.session_state.get(NOTICE_KEY)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if notice:
        st.session_state[NOTICE_KEY] = notice


def require_actor() -> Actor:
    """For pages: the actor, or stop the script (app.py only routes signed-in users here)."""
    actor = current_actor(touch=False)
    if actor is None:
        st.warning(st.session_state.get(NOTICE_KEY) or "Please sign in.", icon=":material/lock:")
        st.link_button("Go to sign-in", "/", icon=":material/login:")
        st.stop()
    return actor


def show_error(error: StudioError) -> None:
    st.error(md(str(error)), icon=":material/error:")
