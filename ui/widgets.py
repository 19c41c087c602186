"""Widget groups shared by pages."""

from __future__ import annotations

import streamlit as st

from core.domain import Patient
from core.permissions import Actor
from core.services.patients import SimulationSeries
from ui.context import PATIENT_KEY, services


def patient_picker(actor: Actor) -> Patient | None:
    """Search box + patient select; remembers the choice across pages."""
    text = st.text_input("Search patients", placeholder="Last name, first name or chart number",
                         key="patient_search")
    patients = services().patients.search(actor, text)
    if not patients:
        st.info("No patient matches that search." if text else "No patients in your clinic yet.")
        return None
    ids = [p.id for p in patients]
    by_id = {p.id: p for p in patients}
    current = st.session_state.get(PATIENT_KEY)
    chosen = st.selectbox(
        "Patient", ids, index=ids.index(current) if current in ids else 0,
        format_func=lambda pid: f"{by_id[pid].display_name} · {by_id[pid].chartNumber}",
    )
    st.session_state[PATIENT_KEY] = chosen
    return by_id[chosen]


def series_table(series: SimulationSeries) -> str | None:
    """A series' versions as a table; returns the version chosen to open (default: the active one)."""
    st.markdown(f"**{series.title}** · {series.simulationType.value.replace('_', ' ').title()}"
                + (f" · {series.treatment.name}" if series.treatment else ""))
    rows = [
        {
            "Version": f"v{v.version}",
            "Status": v.status.value.title(),
            "Approval": "Approved" if v.isApproved else "Draft",
            "Source": v.sourceSystem or "–",
            "Frames": v.frameCount,
            "Created": v.createdAt.strftime("%Y-%m-%d %H:%M"),
            "Updated": v.updatedAt.strftime("%Y-%m-%d %H:%M"),
        }
        for v in series.versions
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    ids = [v.id for v in series.versions]
    default = series.active or series.latest
    labels = {v.id: f"v{v.version} ({v.status.value.lower()})" for v in series.versions}
    if len(ids) == 1:
        return ids[0]
    return st.selectbox("Version", ids, index=ids.index(default.id), format_func=labels.__getitem__,
                        key=f"version-{default.id}")
