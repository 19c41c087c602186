"""Admin: the clinic's users — invite, change role, disable."""

import streamlit as st

from core.domain import Role
from core.errors import StudioError
from ui.context import require_actor, services, show_error

actor = require_actor()
st.title("Users")

try:
    users = services().sessions.clinic_users(actor)
    st.dataframe([{"Name": u.name, "E-mail": u.email, "Role": u.role.value, "Active": u.active,
                   "Signed in with": "OpenID Connect" if u.subject else "not yet"} for u in users],
                 hide_index=True, width="stretch")
    st.subheader("Change a user")
    by_id = {u.id: u for u in users}
    chosen = st.selectbox("User", list(by_id), format_func=lambda i: f"{by_id[i].name} · {by_id[i].email}")
    user = by_id[chosen]
    cols = st.columns(2)
    role = cols[0].selectbox("Role", list(Role), index=list(Role).index(user.role), key=f"role-{user.id}",
                             format_func=lambda r: r.value)
    active = cols[1].toggle("Active", value=user.active, key=f"active-{user.id}")
    if (role, active) != (user.role, user.active) and st.button("Save", type="primary"):
        services().sessions.update_user(actor, user.id, role=role, active=active)
        st.toast("Saved. The change applies on the user's next interaction, in every open tab.")
        st.rerun()
    with st.form("invite", clear_on_submit=True):
        st.subheader("Invite")
        st.caption("The person signs in with your identity provider; the first sign-in with this verified e-mail "
                   "binds their account, and from then on only that identity signs in as them.")
        email = st.text_input("E-mail")
        name = st.text_input("Name")
        new_role = st.selectbox("Role", list(Role), format_func=lambda r: r.value)
        if st.form_submit_button("Invite", type="primary"):
            services().sessions.invite(actor, email=email, name=name, role=new_role)
            st.rerun()
except StudioError as exc:
    show_error(exc)
