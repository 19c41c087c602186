"""Vendor web viewers: the embedded viewer beside our frames, the link editor and the admin's allow-list."""

from __future__ import annotations

import streamlit as st

from core.domain import Permission, TreatmentSimulation
from core.errors import StudioError
from core.permissions import Actor
from core.services.viewers import ViewerEmbed
from ui.context import services, show_error

HEIGHT = 560


def vendor_viewer(embed: ViewerEmbed) -> None:
    """The vendor's viewer in a sandboxed, no-referrer iframe, or why it is not shown."""
    st.markdown(f"**Vendor viewer** · `{embed.link.host}`")
    if embed.html is None:
        st.warning(embed.refused or "This viewer link cannot be embedded.", icon=":material/block:")
        return
    st.iframe(embed.html, height=HEIGHT, alt=f"Vendor web viewer at {embed.link.host}")


def viewer_link_editor(actor: Actor, sim: TreatmentSimulation) -> None:
    """Attach, replace or remove the version's vendor viewer link (coordinators and doctors)."""
    if not actor.can(Permission.IMAGING_CAPTURE):
        return
    link = services().viewers.link(actor, sim.id)
    with st.form(f"viewer-link-{sim.id}", clear_on_submit=True):
        url = st.text_input("Vendor viewer link", placeholder="https://…",
                            help="A ClinCheck share link, or a 3Shape / iTero web viewer. Embedded beside the "
                                 "frames when its host is on your clinic's allow-list (Clinic page).")
        if st.form_submit_button("Replace link" if link else "Attach link", icon=":material/link:"):
            try:
                services().viewers.set_link(actor, sim.id, url)
            except StudioError as exc:
                show_error(exc)
            else:
                st.rerun()
    if link is not None:
        st.caption(f"Attached: {link.host} · {link.setAt:%Y-%m-%d %H:%M} UTC")
        if st.button("Remove link", icon=":material/link_off:", key=f"viewer-link-remove-{sim.id}"):
            services().viewers.remove_link(actor, sim.id)
            st.rerun()


def viewer_hosts_editor(actor: Actor) -> None:
    """The clinic's allow-list of hosts vendor viewers may be embedded from (admins)."""
    st.subheader("Web viewer hosts")
    st.caption("Vendor viewers (ClinCheck share links, 3Shape and iTero web viewers) are embedded only from these "
               "hosts, only over https, in a sandboxed frame that sends no referrer. `*.example.com` allows every "
               "subdomain of example.com.")
    for host in services().viewers.hosts(actor):
        cols = st.columns([4, 3, 1])
        cols[0].markdown(f"`{host.host}`")
        cols[1].text(host.label or "–")
        if cols[2].button("Remove", key=f"viewer-host-remove-{host.id}", icon=":material/delete:"):
            services().viewers.remove_host(actor, host.id)
            st.rerun()
    with st.form("viewer-host", clear_on_submit=True):
        cols = st.columns([4, 3])
        host = cols[0].text_input("Host", placeholder="clincheck.invisalign.com or *.invisalign.com")
        label = cols[1].text_input("Label", placeholder="ClinCheck")
        if st.form_submit_button("Allow host", icon=":material/add:"):
            try:
                services().viewers.add_host(actor, host, label)
            except StudioError as exc:
                show_error(exc)
            else:
                st.rerun()
