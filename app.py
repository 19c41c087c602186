"""Navigation and the sign-in gate only. Pages live in pages/; logic lives in core/."""

from urllib.parse import quote

import streamlit as st

from core.errors import PermissionDeniedError, StudioError, service_problem
from ui.context import (
    NOTICE_KEY,
    USER_KEY,
    current_actor,
    current_path,
    hand_over_session,
    idle_expired,
    navigate,
    resume_from_cookie,
    services,
    show_error,
    sign_out,
)
from ui.jobs_tray import jobs_tray
from ui.layout import fold_sidebar_after_navigation, responsive
from ui.navigation import all_url_paths, pages_for
from ui.text import md

st.set_page_config(page_title="Treatment Simulation Studio", page_icon=":material/dentistry:", layout="wide")
SETTINGS = services().infra.settings
#: Set by a sign-in on this page: the browser still has to fetch its session cookie.
HANDOVER_KEY = "session_handover"
#: The address (page and query) the signed-out user asked for.
SIGNIN_RETURN_KEY = "signin_return"
LEAVE_KEY = "leave_to"


def sign_in_page() -> None:
    st.title("Treatment Simulation Studio")
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.info(notice)
    if SETTINGS.oidc_configured:
        if st.user.is_logged_in:  # signed in at the provider, but no user here
            st.error("You have no access to Treatment Simulation Studio yet; ask your clinic admin to invite you.")
            st.button("Sign out", on_click=st.logout)
        else:
            # Through the app's own route, which remembers this page (and its query) for after the provider.
            here = quote(st.session_state.get(SIGNIN_RETURN_KEY, "/"), safe="")
            if st.button("Sign in", type="primary", icon=":material/login:"):
                from streamlit.user_info import generate_login_redirect_url  # what st.login sends the browser to

                navigate(f"/auth/start?next={here}&then={quote(generate_login_redirect_url('default'), safe='')}")
        return
    choices = services().sessions.dev_signin_choices()
    if not choices:
        st.info("Sign-in is not configured on this server. Ask your administrator to set up "
                "the `[auth]` section of `.streamlit/secrets.toml`.")
        return
    st.warning("Development sign-in: pick a demo user. This is enabled by `make run` for the demo "
               "and is never offered once OpenID Connect sign-in is configured.",
               icon=":material/science:")
    labels = {c.user.id: f"{c.user.name} · {c.user.email}" for c in choices}
    with st.form("dev_signin"):
        user_id = st.selectbox("Demo user", list(labels), format_func=labels.__getitem__)
        if st.form_submit_button("Sign in", type="primary"):
            try:
                services().sessions.dev_signin(user_id)
            except StudioError as exc:
                show_error(exc)
            else:
                st.session_state[USER_KEY] = user_id
                st.session_state[HANDOVER_KEY] = "development"
                st.rerun()


def oidc_session() -> None:
    """Map the provider's identity to a user once per session (by issuer + subject)."""
    if not SETTINGS.oidc_configured or not st.user.is_logged_in:
        if SETTINGS.oidc_configured and st.session_state.get(USER_KEY):
            sign_out("provider session ended")
        return
    if st.session_state.get(USER_KEY) or resume_from_cookie():
        return  # already mapped in this page, or the browser's session cookie says who it is
    try:
        actor = services().sessions.oidc_signin(
            issuer=str(st.user.get("iss", "")), subject=str(st.user.get("sub", "")),
            email=st.user.get("email"),
            # Some providers send the claim as a string, and bool("false") is True.
            email_verified=st.user.get("email_verified") in (True, "true"))
    except PermissionDeniedError:
        return  # sign_in_page explains
    st.session_state[USER_KEY] = actor.id
    st.session_state[HANDOVER_KEY] = "oidc"


def end_session() -> None:
    sign_out("user")
    st.session_state[LEAVE_KEY] = "/auth/signout?next=/"  # the browser drops its session cookie
    if SETTINGS.oidc_configured and st.user.is_logged_in:
        st.logout()


def main() -> None:
    oidc_session()
    if leave := st.session_state.pop(LEAVE_KEY, None):
        navigate(leave)
    actor = current_actor()
    if actor is None:
        if SETTINGS.oidc_configured and st.user.is_logged_in and not st.session_state.get(USER_KEY) \
                and st.session_state.get(NOTICE_KEY):
            st.logout()  # idle timeout or revoked account: end the provider cookie too
        # Every page's address answers with the sign-in form (no "page not found"), and the address with its
        # query stays in the browser: after signing in, the same page opens on the same patient and stage.
        signin = [st.Page(sign_in_page, title="Sign in", icon=":material/login:", default=True),
                  *(st.Page(sign_in_page, title="Sign in", url_path=url_path) for url_path in all_url_paths())]
        page = st.navigation(signin, position="hidden")
        st.session_state[SIGNIN_RETURN_KEY] = current_path(page.url_path)
        page.run()
        return
    clinic = services().sessions.clinic(actor)
    with st.sidebar:
        st.markdown(f"**{md(actor.user.name)}**  \n{md(clinic.name)}  \nRole: `{actor.role.value}`")
        if SETTINGS.dev_signin_allowed:
            st.caption(":material/science: Development sign-in (demo)")
        st.button("Sign out", icon=":material/logout:", on_click=end_session)

    @st.fragment(run_every=60)
    def idle_watch() -> None:
        if idle_expired():
            st.rerun(scope="app")  # the full rerun signs the session out and hides the page

    idle_watch()
    pages = [st.Page(p.path, title=p.title, icon=p.icon, default=n == 0) for n, p in enumerate(pages_for(actor))]
    if not pages:
        st.error("Your role has no pages yet; ask your clinic admin.")
        st.stop()
    page = st.navigation(pages)
    responsive()
    fold_sidebar_after_navigation(page.url_path)
    with st.sidebar:
        jobs_tray(actor)  # every page: the user's renders and deck builds, refreshing while they run
    if method := st.session_state.pop(HANDOVER_KEY, None):
        with st.sidebar:  # a reload from here on keeps the user signed in, and comes back to this address
            hand_over_session(actor, method=method, url_path=page.url_path)
    page.run()


try:
    main()
except Exception as exc:  # only a failed backing service is shown as a message; anything else is raised
    problem = service_problem(exc)
    if problem is None:
        raise
    show_error(problem)
