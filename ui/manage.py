"""Editing a simulation series: rename, trim/reorder frames (a new version), archive, and its history."""

from __future__ import annotations

import streamlit as st

from core.domain import Permission, SimulationStatus, TreatmentSimulation, view_label
from core.permissions import Actor
from core.stages import stage_name
from ui.context import SIMULATION_KEY, services
from ui.text import md


def history(actor: Actor, sim: TreatmentSimulation) -> None:
    entries = services().simulations.history(actor, sim.id)
    if not entries:
        st.caption("No history yet.")
    for entry in entries:
        st.caption(f"{entry.at:%Y-%m-%d %H:%M} · v{entry.version} · {md(entry.who)}: {md(entry.what)}")


def manage(actor: Actor, sim: TreatmentSimulation) -> None:
    if not actor.can(Permission.IMAGING_CAPTURE):
        return
    name = st.text_input("Name", value=sim.name, key=f"rename-{sim.id}")
    if name != sim.name and st.button("Rename", key=f"rename-btn-{sim.id}"):
        services().simulations.rename(actor, sim.id, name)
        st.rerun()
    view = sim.views[0]
    frames = sim.frames_for_view(view) if len(sim.views) == 1 else sim.frames
    labels = {f.index: f"{f.label or stage_name(f.stage)} · {view_label(f.view)}" for f in frames}
    keep = st.multiselect("Frames to keep, in order", list(labels), default=list(labels),
                          format_func=labels.__getitem__, key=f"keep-{sim.id}")
    if keep != list(labels):
        note = " The approved version stays as the doctor approved it." if sim.isApproved else ""
        st.caption(f"Saving creates version {sim.version + 1} with {len(keep)} frames.{note}")
        if st.button("Save as new version", type="primary", key=f"edit-{sim.id}", disabled=not keep):
            new = services().simulations.edit_frames(actor, sim.id, keep)
            st.session_state[SIMULATION_KEY] = new.id
            st.rerun()
    if sim.status is SimulationStatus.ARCHIVED:
        if st.button("Restore series", icon=":material/unarchive:", key=f"restore-{sim.id}"):
            services().simulations.set_archived(actor, sim.id, archived=False)
            st.rerun()
    elif st.button("Archive series", icon=":material/archive:", key=f"archive-{sim.id}"):
        services().simulations.set_archived(actor, sim.id, archived=True)
        st.rerun()
