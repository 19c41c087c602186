"""Service wiring and the signed-in actor for pages. Session state holds ids, never clients."""

from __future__ import annotations

import contextlib
import time

import streamlit as st

from core.config import load_settings
from core.errors import PermissionDeniedError, StudioError
from core.permissions import Actor
from core.services import Services, build_services
from ui.text import md

USER_KEY = "user_id"
PATIENT_KEY = "patient_id"
SIMULATION_KEY = "simulation_id"
ACTIVITY_KEY = "last_activity"
NOTICE_KEY = "signin_notice"


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
    user_id = st.session_state.get(USER_KEY)
    if not user_id:
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


def sign_out(reason: str = "user") -> None:
    """Forget everything about the session (ids, selections, cached UI state)."""
    user_id = st.session_state.get(USER_KEY)
    if user_id:
        # A deleted/disabled account has nobody to attribute the sign-out to.
        with contextlib.suppress(PermissionDeniedError):
            services().sessions.signed_out(services().sessions.load_actor(user_id), reason)
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
