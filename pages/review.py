"""Doctors review active versions and approve the one patients may see."""

import streamlit as st

from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.paging import page_controls, page_cursor
from ui.review_widgets import review_actions, version_comparison
from ui.viewer import frame_viewer

actor = require_actor()
st.title("Review")

try:
    queue = services().review.queue(actor, cursor=page_cursor("review"))
    st.metric("Awaiting approval", f"{len(queue)}{'+' if queue.more else ''}",
              help="Shown 50 at a time, the versions waiting longest first.")
    if not queue:
        st.success("Nothing is waiting for approval in your clinic.")
        st.stop()
    labels = {item.simulation.id: f"{item.patient.display_name} · {item.simulation.name} · v{item.simulation.version}"
              f" · waiting since {(item.simulation.pendingSince or item.simulation.createdAt):%d %b %Y}"
              for item in queue}
    chosen = st.selectbox("Version to review (waiting longest first)", list(labels), format_func=labels.__getitem__,
                          key="review-choice")
    page_controls("review", queue, newer="Waiting longer", older="Waiting less")
    sim = services().simulations.get(actor, chosen)
    viewer, compare = st.tabs(["This version", "Compared with the previous version"])
    with viewer:
        frame_viewer(actor, sim)
    with compare:
        version_comparison(actor, sim)
    review_actions(actor, sim)
except StudioError as exc:
    show_error(exc)
