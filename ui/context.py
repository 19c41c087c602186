"""Service wiring and the signed-in actor for pages. Session state holds ids, never clients."""

from __future__ import annotations

import streamlit as st

from core.config import load_settings
from core.errors import PermissionDeniedError, StudioError
from core.permissions import Actor
from core.services import Services, build_services

USER_KEY = "user_id"
PATIENT_KEY = "patient_id"
SIMULATION_KEY = "simulation_id"


@st.cache_resource(show_spinner=False)
def services() -> Services:
    """One set of clients per Streamlit server process."""
    return build_services(load_settings())


def current_actor() -> Actor | None:
    """The signed-in user, reloaded from the database on every rerun (revocations apply at once)."""
    user_id = st.session_state.get(USER_KEY)
    if not user_id:
        return None
    try:
        return services().sessions.load_actor(user_id)
    except PermissionDeniedError as exc:
        sign_out()
        st.error(str(exc))
        return None


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def require_actor() -> Actor:
    """For pages: the actor, or stop the script (app.py only routes signed-in users here)."""
    actor = current_actor()
    if actor is None:
        st.warning("Please sign in.")
        st.stop()
    return actor


def show_error(error: StudioError) -> None:
    st.error(str(error), icon=":material/error:")
