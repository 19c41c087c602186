"""Every export of the clinic: status, who, when, and the file — newest first, a page at a time."""

import streamlit as st

from core.domain import ExportState
from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.paging import page_controls, page_cursor
from ui.render_widgets import download_button
from ui.text import md

actor = require_actor()
st.title("Exports")

try:
    exports = services().exports.recent(actor, cursor=page_cursor("exports"))
    if not exports:
        st.info("No exports yet. Make them from a simulation's page or the Compare page.")
    files = services().exports.files(actor, exports.items)
    users = {u.id: u.name for u in services().sessions.clinic_users(actor)}
    for export in exports:
        with st.container(border=True):
            cols = st.columns([3, 2, 2, 2])
            cols[0].markdown(f"**{md(export.name or export.exportType.value)}**  \n{export.exportType.value.title()}")
            cols[1].markdown(f"{export.state.value.title()}"
                             + (f" · {export.progress}%" if export.state is ExportState.RUNNING else ""))
            cols[2].caption(f"{users.get(export.createdBy, 'a colleague')}  \n{export.createdAt:%Y-%m-%d %H:%M} UTC")
            with cols[3]:
                if export.state is ExportState.DONE and export.id in files:
                    download_button(actor, export, files[export.id])
                elif export.state is ExportState.FAILED:
                    st.caption(md(export.error or "failed"))
    page_controls("exports", exports)
except StudioError as exc:
    show_error(exc)
