"""The 3D stage viewer (Plotly Mesh3d: orbit, zoom, pan in the browser) with the frame viewer's stage
controls, clinical camera presets, movement map and final-stage ghost; movement-map images and versions."""

from __future__ import annotations

import streamlit as st

from core.domain import (
    CLINICAL_VIEWS,
    VIEW_LABELS,
    ExportType,
    MeshSet,
    Permission,
    RenditionState,
    TreatmentSimulation,
)
from core.errors import StudioError
from core.permissions import Actor
from core.services.exports import RenderRequest
from core.services.mesh3d import ModelView
from ui.context import SIMULATION_KEY, services, show_error
from ui.export_controls import output_controls, overlay_controls
from ui.render_widgets import follow
from ui.viewer import advance, stage_controls

MODES = {"frames": "Frames", "3d": "3D model"}
#: Plotly's own "download as PNG" would skip the stamps and the DRAFT watermark: exports go through ours.
PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["toImage"]}


def viewer_mode(sim: TreatmentSimulation) -> str:
    """"frames" or "3d" (offered only for versions made from 3D models or with an iTero scan)."""
    if not services().meshes.offers_models(sim):
        return "frames"
    return st.segmented_control("Show", list(MODES), default="frames", format_func=MODES.__getitem__,
                                key=f"mode-{sim.id}") or "frames"


def _preparing(actor: Actor, sim: TreatmentSimulation) -> None:
    @st.fragment(run_every=1.0)
    def poll() -> None:
        record = services().meshes.status(actor, sim.id)
        if record is None or record.state in (RenditionState.READY, RenditionState.FAILED):
            st.rerun()
        waiting = {RenditionState.PENDING: "waiting for the job queue", RenditionState.QUEUED: "waiting for a worker"}
        st.progress(record.progress, text=f"Preparing the 3D view… {waiting.get(record.state, record.step)} "
                                          f"({record.progress}%)")

    poll()


def mesh_viewer(actor: Actor, sim: TreatmentSimulation) -> MeshSet | None:
    """The 3D view of the version (or what keeps it from showing); the model set when it is shown."""
    record = services().meshes.status(actor, sim.id)
    if record is None:
        st.info("This version has no 3D models: only staged STL/PLY/OBJ imports and iTero scans have them.",
                icon=":material/view_in_ar:")
        return None
    if record.state is RenditionState.FAILED:
        st.error(f"The 3D view could not be prepared: {record.error}", icon=":material/error:")
        if st.button("Try again", icon=":material/refresh:", key=f"mesh-retry-{sim.id}"):
            services().meshes.retry(actor, sim.id)
            st.rerun()
        return None
    if record.state is not RenditionState.READY:
        _preparing(actor, sim)
        return None
    key, play_key = f"stage3d-{sim.id}", f"playing3d-{sim.id}"
    last = len(record.stages) - 1
    every = stage_controls(key, play_key, f"speed3d-{sim.id}", last)
    moving = record.maxMovement > 0

    @st.fragment(run_every=every)
    def stage() -> None:
        position = advance(key, play_key, last)
        st.slider("Stage", 0, last, key=key, format="%d", disabled=last == 0)
        view = st.segmented_control("Camera", CLINICAL_VIEWS, default="front", key=f"camera-{sim.id}",
                                    format_func=VIEW_LABELS.__getitem__) or "front"
        cols = st.columns(2)
        movement = cols[0].toggle("Movement map", key=f"movement-{sim.id}", disabled=not moving,
                                  help="Colour each point by how far it moved since the first stage (mm).")
        ghost = cols[1].toggle("Final stage ghost", key=f"ghost-{sim.id}", disabled=last == 0,
                               help="Show the final stage as a translucent overlay.")
        figure, shown = services().meshes.figure(actor, sim.id, ModelView(position, view, movement, ghost))
        st.markdown(f"### {shown.label}")
        st.plotly_chart(figure, width="stretch", config=PLOTLY_CONFIG, key=f"mesh3d-{sim.id}")
        st.caption(f"Drag to orbit, scroll to zoom, right-drag to pan · v{sim.version} · up to "
                   f"{max(record.triangles.values()):,} triangles per arch (from "
                   f"{max(record.sourceTriangles.values(), default=0):,})"
                   + (f" · largest movement {record.maxMovement:.2f} mm" if moving else ""))

    stage()
    return record


def mesh_exports(actor: Actor, sim: TreatmentSimulation, record: MeshSet) -> None:
    """Movement-map images (rendered by the export job, with the usual stamps) and a movement-map version."""
    if not actor.can(Permission.IMAGING_EXPORT) or record.maxMovement <= 0:
        return
    if st.toggle("Movement-map image", key=f"mesh-export-open-{sim.id}"):
        stages = list(record.stage_numbers)
        cols = st.columns(3)
        kind = cols[0].radio("Layout", [ExportType.SNAPSHOT, ExportType.COMPARISON], horizontal=True,
                             key=f"mesh-export-kind-{sim.id}",
                             format_func={ExportType.SNAPSHOT: "Movement map",
                                          ExportType.COMPARISON: "First stage beside it"}.__getitem__)
        view = cols[1].selectbox("View", CLINICAL_VIEWS, format_func=VIEW_LABELS.__getitem__,
                                 key=f"mesh-export-view-{sim.id}")
        stage = cols[2].select_slider("Stage", stages, value=stages[-1], key=f"mesh-export-stage-{sim.id}")
        output = output_controls(f"mesh-export-{sim.id}")
        overlays = overlay_controls(f"mesh-export-{sim.id}", approved=sim.isApproved)
        if st.button("Render image", type="primary", icon=":material/view_in_ar:", key=f"mesh-export-go-{sim.id}"):
            follow(services().exports.request(actor, sim.id, RenderRequest(
                kind, mesh_view=view, last_stage=stage, image_size=output.size,
                image_orientation=output.orientation, image_format=output.fmt, overlays=overlays)))
            st.toast("Rendering; follow it below or on the Exports page.")
    if actor.can(Permission.IMAGING_CAPTURE) and record.id == sim.id and len(record.stages) > 1:
        superimposition(actor, sim)


def superimposition(actor: Actor, sim: TreatmentSimulation) -> None:
    record = services().meshes.superimposition_status(actor, sim.id)
    state = record.superimposition if record else None
    if state in (RenditionState.QUEUED, RenditionState.RUNNING):
        @st.fragment(run_every=1.5)
        def poll() -> None:
            now = services().meshes.superimposition_status(actor, sim.id)
            if now is None or now.superimposition not in (RenditionState.QUEUED, RenditionState.RUNNING):
                st.rerun()
            st.progress(50 if now.superimposition is RenditionState.RUNNING else 5,
                        text="Making the movement-map version (every stage and view)…")

        poll()
        return
    if state is RenditionState.READY and record and record.superimpositionId:
        st.success("A movement-map version (SUPERIMPOSITION) was made from this version.",
                   icon=":material/check_circle:")
        if st.button("Open it", key=f"open-superimposition-{sim.id}", icon=":material/open_in_new:"):
            st.session_state[SIMULATION_KEY] = record.superimpositionId
            st.rerun()
    elif state is RenditionState.FAILED and record:
        st.error(f"The movement-map version was not made: {record.superimpositionError}", icon=":material/error:")
    if st.button("Make a movement-map version", key=f"superimpose-{sim.id}", icon=":material/layers:",
                 help="A new SUPERIMPOSITION version: every stage coloured by movement over the first stage, "
                      "ready for review, approval and exports like any version."):
        try:
            services().meshes.request_superimposition(actor, sim.id)
        except StudioError as exc:
            show_error(exc)
        else:
            st.rerun()
