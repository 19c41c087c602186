"""Admin: drop-folder integrations (iTero, 3Shape, ClinCheck captures) and how each is doing."""

import streamlit as st

from core.domain import IntegrationKind, Permission, Role
from core.errors import StudioError
from core.services.webhooks import EVENTS as WEBHOOK_EVENTS
from ui.context import require_actor, services, show_error
from ui.text import md

KIND_LABELS = {IntegrationKind.ITERO: "iTero / OrthoCAD exports", IntegrationKind.THREE_SHAPE: "3Shape staged models",
               IntegrationKind.CLINCHECK: "ClinCheck captures (recordings or screenshots)"}



def webhook_section() -> None:
    st.subheader("Webhooks")
    st.caption("Signed notifications to your systems (Patient Communication, the presentation builder) when an "
               "export is done or failed, or a simulation is approved. The README shows how a receiver checks them.")
    secret = st.session_state.pop("new_webhook_secret", None)
    if secret:
        st.success("Copy the signing secret now: it is not shown again.")
        st.code(secret, language=None)
    hooks = services().webhooks.list(actor)
    for hook in hooks:
        delivered = services().webhooks.deliveries(actor, hook.id)
        st.markdown(f"**{md(hook.name)}** · {md(hook.url)} · {', '.join(hook.events)} · "
                    f"{sum(d.state == 'DELIVERED' for d in delivered)} delivered, "
                    f"{sum(d.state == 'FAILED' for d in delivered)} failed in 30 days")
        if st.toggle("Sending", value=hook.enabled, key=f"hook-on-{hook.id}") != hook.enabled:
            services().webhooks.set_enabled(actor, hook.id, not hook.enabled)
            st.rerun()
    with st.form("new-webhook", clear_on_submit=True):
        name = st.text_input("Integration", placeholder="Patient Communication")
        url = st.text_input("HTTPS URL", placeholder="https://crm.example.com/hooks/tss")
        events = st.multiselect("Events", list(WEBHOOK_EVENTS), default=list(WEBHOOK_EVENTS))
        if st.form_submit_button("Register webhook"):
            hook = services().webhooks.register(actor, name=name, url=url, events=events)
            st.session_state["new_webhook_secret"] = hook.secret
            st.rerun()


actor = require_actor()
st.title("Integrations")
st.caption("Scanner and planner software export into a drop folder on the server; new exports are imported every "
           "minute. Exports without a unique patient match wait under Import → Unmatched imports.")

try:
    integrations = services().integrations.list(actor)
    if integrations:
        st.dataframe([{"Name": i.name, "Kind": KIND_LABELS[i.kind], "Folder": i.folder,
                       "Enabled": i.enabled,
                       "Last sync": i.lastSyncAt.strftime("%Y-%m-%d %H:%M") if i.lastSyncAt else "never",
                       "Imported": i.imported, "Unmatched": i.unmatched, "Failed": i.failed,
                       "Problem": i.lastError or ""} for i in integrations], hide_index=True, width="stretch")
    else:
        st.info("No integrations yet.")
    if actor.can(Permission.ADMIN):
        for integration in integrations:
            if st.toggle(f"{integration.name} enabled", value=integration.enabled, key=f"on-{integration.id}") \
                    != integration.enabled:
                services().integrations.set_enabled(actor, integration.id, not integration.enabled)
                st.rerun()
        with st.form("new-integration", clear_on_submit=True):
            st.subheader("Add an integration")
            kind = st.selectbox("Kind", list(IntegrationKind), format_func=KIND_LABELS.__getitem__)
            name = st.text_input("Name", placeholder="iTero scanner, room 2")
            folder = st.text_input("Drop folder (absolute path on the server)", placeholder="/srv/exports/itero")
            users = [u for u in services().sessions.clinic_users(actor) if u.role in (Role.COORDINATOR, Role.DOCTOR)]
            import_as = st.selectbox("Import as", [u.id for u in users],
                                     format_func=lambda uid: next(u.email for u in users if u.id == uid))
            if st.form_submit_button("Add", type="primary"):
                services().integrations.create(actor, kind=kind, name=name, folder=folder, import_as=import_as)
                st.rerun()
        webhook_section()
except StudioError as exc:
    show_error(exc)
