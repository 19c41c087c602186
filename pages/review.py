"""Doctors review active versions and approve the one patients may see; revoke or ask for changes."""

import streamlit as st

from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.deep_links import from_url, to_url
from ui.paging import page_controls, page_cursor
from ui.review_widgets import approved_actions, review_actions, undo_bar, version_comparison
from ui.viewer import frame_viewer
from ui.widgets import patient_picker, simulation_picker

MODES = {"waiting": "Waiting for approval", "approved": "Approved versions"}

actor = require_actor()
st.title("Review")

try:
    undo_bar(actor)
    mode = st.segmented_control("Show", list(MODES), default="waiting", format_func=MODES.__getitem__,
                                key="review-mode") or "waiting"
    if mode == "approved":
        patient = patient_picker(actor)
        sim = simulation_picker(actor, patient, label="Version") if patient else None
        if sim is not None:
            approved_actions(actor, sim)
        st.stop()
    queue = services().review.queue(actor, cursor=page_cursor("review"))
    st.metric("Awaiting approval", f"{len(queue)}{'+' if queue.more else ''}",
              help="Shown 50 at a time, the versions waiting longest first.")
    if not queue:
        st.success("Nothing is waiting for approval in your clinic.")
        st.stop()
    labels = {item.simulation.id: f"{item.patient.display_name} · {item.simulation.name} · v{item.simulation.version}"
              f" · waiting since {(item.simulation.pendingSince or item.simulation.createdAt):%d %b %Y}"
              for item in queue}
    if (linked := from_url("sim")) in labels:
        st.session_state["review-choice"] = linked
    chosen = st.selectbox("Version to review (waiting longest first)", list(labels), format_func=labels.__getitem__,
                          key="review-choice")
    to_url(sim=chosen)
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
