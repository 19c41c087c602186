"""Build before/predicted comparisons and outcome cards; export them to the patient's record."""

import streamlit as st

from core.domain import Permission, SimulationType
from core.errors import StudioError
from core.services.visuals import BeforeRef, ComparisonRequest, Guides
from ui.comparison_controls import alignment_controls, before_picker, layout_controls, stage_picker
from ui.context import require_actor, services, show_error
from ui.deep_links import copy_link
from ui.export_controls import export_result, output_controls, overlay_controls
from ui.widgets import patient_picker, simulation_picker

actor = require_actor()
st.title("Compare")

try:
    with st.container(key="cmp-pickers"):
        patient = patient_picker(actor)
        sim = simulation_picker(actor, patient) if patient else None
    if sim is None:
        st.stop()
    copy_link("compare")
    comparison, outcome = st.tabs(["Before / predicted", "Outcome card"])
    with comparison:
        controls, preview = st.columns([2, 3])
        with controls:
            before: BeforeRef = before_picker(actor, sim, patient.id)
            layout = layout_controls(sim)
            predicted = stage_picker(sim, grid=layout.layout == "grid")
            alignment = alignment_controls(actor, sim, before, predicted[-1])
            guides = Guides()
            if sim.simulationType is SimulationType.SMILE_DESIGN:
                cols = st.columns(3)
                guides = Guides(midline=cols[0].checkbox("Facial midline"), smile_line=cols[1].checkbox("Smile line"),
                                incisal_plane=cols[2].checkbox("Incisal plane"))
            output = output_controls("cmp")
            overlays = overlay_controls("cmp", approved=sim.isApproved)
        request = ComparisonRequest(before=before, predicted=predicted, layout=layout, alignment=alignment,
                                    guides=guides, output=output, overlays=overlays)
        with preview, st.container(key="cmp-preview"):
            st.image(services().visuals.render_comparison(actor, sim.id, request, preview=True), width="stretch")
            if actor.can(Permission.IMAGING_EXPORT) and st.button("Save comparison", type="primary",
                                                                  icon=":material/save:", key="save-cmp"):
                export_result(actor, services().visuals.export_comparison(actor, sim.id, request))
    with outcome:
        if len(sim.views) < 2:
            st.info("An outcome card shows the final stage from the clinical views; this version has one view "
                    "only. Pick a version rendered from several views.")
            st.stop()
        output = output_controls("card", default="a4")
        overlays = overlay_controls("card", approved=sim.isApproved)
        card = services().visuals.outcome_card_request(actor, sim.id, output, overlays)
        st.image(services().visuals.render_comparison(actor, sim.id, card, preview=True), width="stretch")
        if actor.can(Permission.IMAGING_EXPORT) and st.button("Save outcome card", type="primary",
                                                              icon=":material/save:", key="save-card"):
            export_result(actor, services().visuals.export_outcome_card(actor, sim.id, output, overlays))
except StudioError as exc:
    show_error(exc)
