"""Navigation and the sign-in gate only. Pages live in pages/; logic lives in core/."""

import streamlit as st

from core.errors import StudioError
from ui.context import USER_KEY, current_actor, services, show_error, sign_out
from ui.navigation import pages_for

st.set_page_config(page_title="Treatment Simulation Studio", page_icon=":material/dentistry:", layout="wide")


def sign_in_page() -> None:
    st.title("Treatment Simulation Studio")
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
                st.rerun()


actor = current_actor()
if actor is None:
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:")]).run()
else:
    clinic = services().sessions.clinic(actor)
    with st.sidebar:
        st.markdown(f"**{actor.user.name}**  \n{clinic.name}  \nRole: `{actor.role.value}`")
        if st.button("Sign out", icon=":material/logout:"):
            sign_out()
            st.rerun()
    pages = [st.Page(p.path, title=p.title, icon=p.icon, default=n == 0) for n, p in enumerate(pages_for(actor))]
    if not pages:
        st.error("Your role has no pages yet; ask your clinic admin.")
        st.stop()
    st.navigation(pages).run()
