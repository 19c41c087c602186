"""Scrub through a simulation version's frames."""

import streamlit as st

from core.errors import StudioError
from ui.context import SIMULATION_KEY, require_actor, services, show_error
from ui.viewer import frame_viewer
from ui.widgets import patient_picker

actor = require_actor()
st.title("Simulation")

try:
    patient = patient_picker(actor)
    if patient is None:
        st.stop()
    overview = services().patients.overview(actor, patient.id)
    versions = {v.id: v for series in overview.series for v in series.versions}
    if not versions:
        st.info("This patient has no simulations yet.")
        st.stop()
    ids = list(versions)
    current = st.session_state.get(SIMULATION_KEY)
    chosen = st.selectbox(
        "Simulation", ids, index=ids.index(current) if current in ids else 0,
        format_func=lambda i: f"{versions[i].name} · v{versions[i].version} · "
                              f"{versions[i].status.value.lower()}"
                              f"{' · approved' if versions[i].isApproved else ' · draft'}",
    )
    st.session_state[SIMULATION_KEY] = chosen
    sim = services().simulations.get(actor, chosen)
    main, side = st.columns([4, 1])
    with side:
        st.metric("Version", f"v{sim.version}")
        st.markdown(f"**Status:** {sim.status.value.title()}  \n"
                    f"**Approval:** {'Approved' if sim.isApproved else 'Draft — not approved'}  \n"
                    f"**Source:** {sim.sourceSystem or '–'}  \n"
                    f"**Stages:** {sim.stage_count} · **Frames:** {sim.frameCount}  \n"
                    f"**Created:** {sim.createdAt:%Y-%m-%d %H:%M} UTC")
    with main:
        frame_viewer(actor, sim)
except StudioError as exc:
    show_error(exc)
