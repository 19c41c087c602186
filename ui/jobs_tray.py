"""The jobs tray in the sidebar of every page: the user's own recent renders and deck builds (progress,
cancel, download) and imports (progress, or a link to confirm the preview). Read from the database, so
it survives navigation and reloads."""

from __future__ import annotations

import streamlit as st

from core.domain import ExportState, ImportSource, ImportState, Permission
from core.errors import StudioError
from core.permissions import Actor
from ui.context import services
from ui.downloads import file_link
from ui.text import md

SHOWN = 4
IMPORT_LABELS = {ImportSource.FILES: "Screenshots", ImportSource.RECORDING: "Screen recording",
                 ImportSource.ITERO: "iTero export", ImportSource.STAGED_3D: "3D models"}


def jobs_tray(actor: Actor) -> None:
    if not actor.can(Permission.IMAGING_VIEW):
        return
    def read() -> tuple:
        return services().worklist.rows(actor, mine=True, limit=SHOWN), services().imports.in_progress(actor)

    try:
        first = [read()]
    except StudioError as exc:
        st.caption(md(str(exc)))
        return
    was_busy = _busy(*first[0])

    @st.fragment(run_every=2.0 if was_busy else None)
    def tray() -> None:
        # The full run draws what it just read; the fragment's own runs read again.
        rows, imports = first.pop() if first else read()
        busy = _busy(rows, imports)
        if busy != was_busy:
            st.rerun(scope="app")  # start or stop refreshing
        if not rows.items and not imports:
            return
        with st.expander("Your jobs", icon=":material/pending_actions:", expanded=busy):
            for record in imports:
                title = f"Import · {IMPORT_LABELS.get(record.source, 'files')}"
                if record.state is ImportState.PREVIEW:
                    st.caption(f"{title}: ready for you to check")
                else:
                    st.progress(record.progress, text=f"{title}: {md(record.step or 'waiting')} ({record.progress}%)")
                st.page_link("pages/imports.py", label="Open the import", icon=":material/upload_file:",
                             query_params={"import": record.id})
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


def _busy(rows, imports) -> bool:
    return any(r.busy for r in rows) or any(i.state is not ImportState.PREVIEW for i in imports)


def _cancel(actor: Actor, export_id: str) -> None:
    try:
        services().exports.cancel(actor, export_id)
    except StudioError as exc:
        st.toast(md(str(exc)), icon=":material/error:")
