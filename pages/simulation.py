"""Scrub through a simulation version's frames or its 3D models, beside the vendor's web viewer; export images."""

import streamlit as st

from core.domain import Permission
from core.errors import StudioError
from core.services.visuals import SnapshotSpec
from ui.context import require_actor, services, show_error
from ui.deep_links import copy_link, from_url, to_url
from ui.export_controls import export_result, output_controls, overlay_controls
from ui.manage import history, manage
from ui.mesh_viewer import mesh_exports, mesh_viewer, viewer_mode
from ui.render_widgets import FOLLOW_KEY, export_progress, follow, render_request_form
from ui.viewer import current_frame_index, frame_viewer
from ui.viewer_links import vendor_viewer, viewer_link_editor
from ui.widgets import patient_picker, simulation_picker, simulation_summary

actor = require_actor()
st.title("Simulation")

try:
    with st.container(key="sim-pickers"):
        patient = patient_picker(actor)
        sim = simulation_picker(actor, patient) if patient else None
    if sim is None:
        st.stop()
    main, side = st.columns([4, 1])
    with side:
        copy_link("simulation")
        simulation_summary(actor, sim)
        # Toggles, not popovers: a popover's body runs on every rerun even while it is closed.
        if st.toggle("Edit", key="edit-open"):
            manage(actor, sim)
            viewer_link_editor(actor, sim)
        if st.toggle("History", key="history-open"):
            history(actor, sim)
    with main, st.container(key="viewer-main"):
        mode = viewer_mode(sim)
        vendor = services().viewers.embed(actor, sim.id)
        ours, theirs = st.columns([3, 2]) if vendor else (st.container(), None)
        with ours:
            models = mesh_viewer(actor, sim) if mode == "3d" else frame_viewer(actor, sim)
        if theirs is not None and vendor is not None:
            with theirs:
                vendor_viewer(vendor)
        if models is not None:
            mesh_exports(actor, sim, models)
        # A toggle, not an expander: an expander's body runs (and renders a preview) even when closed.
        elif mode == "frames" and st.toggle("Snapshot of this frame", key="snapshot-open"):
            spec = SnapshotSpec(frame_index=current_frame_index(sim), output=output_controls("snap"),
                                overlays=overlay_controls("snap", approved=sim.isApproved))
            st.image(services().visuals.render_snapshot(actor, sim.id, spec, preview=True), width="stretch")
            if actor.can(Permission.IMAGING_EXPORT) and st.button("Save snapshot", type="primary",
                                                                  icon=":material/save:"):
                export_result(actor, services().visuals.export_snapshot(actor, sim.id, spec))
        # Streamlit forgets a widget's value once another page ran, and a reload starts a new session: the
        # panel's state is kept in the session and in the address (?render=1).
        if from_url("render") == "1":
            st.session_state["keep-render-open"] = True
        render_open = actor.can(Permission.IMAGING_EXPORT) and st.toggle(
            "Video, GIF, PDF or frames", key="render-open", value=st.session_state.get("keep-render-open", False))
        st.session_state["keep-render-open"] = render_open
        to_url(render=1 if render_open else None)
        if render_open:
            request = render_request_form(actor, sim)
            if request is not None:
                follow(services().exports.request(actor, sim.id, request))
        if FOLLOW_KEY not in st.session_state:  # a new session (a reload): follow my renders still running here
            st.session_state[FOLLOW_KEY] = services().exports.running_for(actor, sim.id)
        for export_id in st.session_state.get(FOLLOW_KEY, [])[:5]:
            export_progress(actor, export_id)
except StudioError as exc:
    show_error(exc)
