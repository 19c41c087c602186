"""The jobs tray in the sidebar of every page: the user's own recent renders and deck builds, with
progress, cancel and download. Read from the database, so it survives navigation and reloads."""

from __future__ import annotations

import streamlit as st

from core.domain import ExportState, Permission
from core.errors import StudioError
from core.permissions import Actor
from ui.context import services
from ui.downloads import file_link
from ui.text import md

SHOWN = 4


def jobs_tray(actor: Actor) -> None:
    if not actor.can(Permission.IMAGING_VIEW):
        return
    try:
        first = [services().worklist.rows(actor, mine=True, limit=SHOWN)]
    except StudioError as exc:
        st.caption(md(str(exc)))
        return
    was_busy = any(r.busy for r in first[0])

    @st.fragment(run_every=2.0 if was_busy else None)
    def tray() -> None:
        # The full run draws what it just read; the fragment's own runs read again.
        rows = first.pop() if first else services().worklist.rows(actor, mine=True, limit=SHOWN)
        busy = any(r.busy for r in rows)
        if busy != was_busy:
            st.rerun(scope="app")  # start or stop refreshing
        if not rows.items:
            return
        with st.expander("Your jobs", icon=":material/pending_actions:", expanded=busy):
            for row in rows:
                export = row.export
                title = f"{md(export.name or row.type_label)} · {md(row.patient)}"
                if row.busy:
                    st.progress(export.progress, text=f"{title}: {export.progress}%")
                    if actor.can(Permission.IMAGING_EXPORT):
                        st.button("Cancel", key=f"tray-cancel-{export.id}", icon=":material/cancel:",
                                  on_click=_cancel, args=(actor, export.id))
                else:
                    st.caption(f"{title}: {row.state_label.lower()}")
                    if row.file is not None and export.state is ExportState.DONE:
                        file_link(actor, row.file, width="stretch")
            st.page_link("pages/exports.py", label="All exports", icon=":material/movie:")

    tray()


def _cancel(actor: Actor, export_id: str) -> None:
    try:
        services().exports.cancel(actor, export_id)
    except StudioError as exc:
        st.toast(md(str(exc)), icon=":material/error:")
