"""Admin: the clinic's users — invite, change role, disable — and the API tokens that act for them."""

import streamlit as st

from core.domain import Role
from core.errors import StudioError
from core.permissions import ROLE_PERMISSIONS
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

    st.subheader("API tokens")
    st.caption("For systems that call the HTTP API (/api/docs) as one of these users. A token has a subset of "
               "the user's permissions and an expiry; it is shown once, then only its id is kept. Revoking "
               "applies on the token's next request.")
    new_token = st.session_state.pop("new_api_token", None)
    if new_token:
        st.success("Copy the token now: it is not shown again.")
        st.code(new_token, language=None)
    tokens = services().api_tokens.list(actor)
    st.dataframe([{"Id": t.id, "Name": t.name, "User": by_id[t.userId].name if t.userId in by_id else "?",
                   "Permissions": ", ".join(sorted(p.value for p in t.permissions)),
                   "Expires": f"{t.expiresAt:%Y-%m-%d}", "Last used": f"{t.lastUsedAt:%Y-%m-%d %H:%M}"
                   if t.lastUsedAt else "never", "Revoked": f"{t.revokedAt:%Y-%m-%d}" if t.revokedAt else ""}
                  for t in tokens], hide_index=True, width="stretch")
    owner = st.selectbox("New token acts as", list(by_id), key="token-user",
                         format_func=lambda i: f"{by_id[i].name} · {by_id[i].role.value}")
    with st.form("new-token"):
        token_name = st.text_input("Used by", placeholder="Case Presentation Builder")
        allowed = sorted(ROLE_PERMISSIONS[by_id[owner].role], key=lambda p: p.value)
        chosen_permissions = st.multiselect("Permissions (at most the user's)", allowed, default=allowed,
                                            format_func=lambda p: p.value, key=f"token-perms-{owner}")
        days = st.number_input("Days until it expires", min_value=1, max_value=366, value=90)
        if st.form_submit_button("Create token", type="primary"):
            secret, _ = services().api_tokens.create(actor, user_id=owner, name=token_name,
                                                     permissions=set(chosen_permissions), days=int(days))
            st.session_state["new_api_token"] = secret
            st.rerun()
    live = [t for t in tokens if t.revokedAt is None]
    if live:
        revoke = st.selectbox("Revoke a token", [t.id for t in live],
                              format_func=lambda i: next(f"{t.name} · {t.id[-6:]}" for t in live if t.id == i))
        if st.button("Revoke"):
            services().api_tokens.revoke(actor, revoke)
            st.toast("Revoked. The token is refused from its next request on.")
            st.rerun()
except StudioError as exc:
    show_error(exc)
