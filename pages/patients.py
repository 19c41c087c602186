"""Patients of the clinic and their simulation series."""

import streamlit as st

from core.errors import StudioError
from ui.context import PATIENT_KEY, SIMULATION_KEY, require_actor, services, show_error
from ui.paging import cursor_controls, page_cursor
from ui.widgets import patient_picker, series_table

actor = require_actor()
st.title("Patients")

try:
    patient = patient_picker(actor)
    if patient is None:
        st.stop()
    archived = st.toggle("Show archived", key="show-archived")
    versions_key = f"patient-versions:{patient.id}:{archived}"  # a page of the patient's versions, newest first
    overview = services().patients.overview(actor, patient.id, include_archived=archived,
                                            cursor=page_cursor(versions_key))
except StudioError as exc:
    show_error(exc)
    st.stop()

left, right = st.columns([2, 1])
left.subheader(overview.patient.display_name)
left.caption(f"Chart {overview.patient.chartNumber} · born {overview.patient.dateOfBirth:%d %b %Y}")
for treatment in overview.treatments:
    right.markdown(f"**{treatment.name}** · {treatment.status.replace('_', ' ').lower()}")
    right.caption(f"{treatment.alignerCount or '–'} aligners · ~{treatment.estimatedMonths or '–'} months. "
                  f"{treatment.notes}")

if not overview.series:
    st.info("No simulations for this patient yet." if page_cursor(versions_key) is None else
            "No older versions.")
for series in overview.series:
    with st.container(border=True):
        chosen = series_table(series)
        if chosen and st.button("Open in viewer", key=f"open-{chosen}", icon=":material/play_circle:"):
            st.session_state[PATIENT_KEY] = patient.id
            st.session_state[SIMULATION_KEY] = chosen
            st.switch_page("pages/simulation.py")
cursor_controls(versions_key, overview.cursor, newer="Newer versions", older="Older versions")
