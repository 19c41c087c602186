"""Download links for patient files: served by the app's own route, for this browser session only.

Never `st.download_button` for patient files: Streamlit serves its media URLs to anyone who has them.
"""

from __future__ import annotations

import streamlit as st

from core.domain import ImagingAsset
from core.permissions import Actor
from ui.context import WEB_SESSION_KEY, services


def file_link(actor: Actor, asset: ImagingAsset, *, label: str = "Download", width: str = "content") -> None:
    """A button that downloads `asset` (audited when used; the link expires and works for no one else)."""
    session_id = st.session_state.get(WEB_SESSION_KEY)
    if not session_id:
        st.caption("Downloads start once your browser session is set up; reload the page if this stays.")
        return
    url = services().sessions.download_link(actor, session_id, asset.id)
    st.link_button(label, url, icon=":material/download:", width=width)  # type: ignore[arg-type]
