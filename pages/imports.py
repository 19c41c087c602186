"""Import a simulation: upload, watch the analysis, reorder/trim the proposed frames, import."""

import streamlit as st

from core.domain import CLINICAL_VIEWS, VIEW_LABELS, ImportSource, ImportState, SimulationType
from core.errors import NotFoundError, StudioError
from core.services.imports import Upload
from ui.context import PATIENT_KEY, SIMULATION_KEY, require_actor, services, show_error
from ui.deep_links import from_url, link_not_found
from ui.import_widgets import candidate_editor, import_status, recent_imports, unassigned_imports, unmatched_imports
from ui.widgets import patient_picker

IMPORT_KEY = "import_id"
SOURCES = {
    ImportSource.FILES: ("Screenshots (PNG/JPEG/WebP or one ZIP)", ["png", "jpg", "jpeg", "webp", "zip"]),
    ImportSource.RECORDING: ("Screen recording (MP4/MOV/WebM)", ["mp4", "mov", "m4v", "webm"]),
    ImportSource.ITERO: ("iTero / OrthoCAD export (the folder, its files, or its ZIP)", None),
    ImportSource.STAGED_3D: ("Staged 3D models (STL/PLY/OBJ per arch per stage, or ZIP)", ["stl", "ply", "obj", "zip"]),
}

actor = require_actor()
st.title("Import simulation")

try:
    if requested := from_url("import"):  # e.g. from the jobs tray
        st.session_state[IMPORT_KEY] = requested
    current = st.session_state.get(IMPORT_KEY)
    if current:
        try:
            record = import_status(actor, current)
        except NotFoundError:  # an unknown id, or another clinic's: the same answer
            st.session_state.pop(IMPORT_KEY)
            link_not_found()
            st.stop()
        if record.state in (ImportState.PREVIEW, ImportState.UNMATCHED):
            candidate_editor(actor, record)
        if record.state is ImportState.DONE and st.button(
            "Open in viewer", type="primary", icon=":material/play_circle:"
        ):
            st.session_state[PATIENT_KEY] = record.patientId
            st.session_state[SIMULATION_KEY] = record.simulationId
            st.session_state.pop(IMPORT_KEY)
            st.switch_page("pages/simulation.py")
        if st.button("Start another import", icon=":material/add:"):
            st.session_state.pop(IMPORT_KEY)
            st.rerun()
        st.stop()

    patient = patient_picker(actor)
    if patient is None:
        unmatched_imports(actor)  # exports waiting for a patient need no patient chosen first
        st.stop()
    overview = services().patients.overview(actor, patient.id)
    source = st.radio("Source", list(SOURCES), format_func=lambda s: SOURCES[s][0], key="import-source")
    cols = st.columns(3)
    series = {s.latest.id: s for s in overview.series}
    series_of = cols[0].selectbox(
        "Add as",
        [None, *series],
        key="import-series",
        format_func=lambda i: (
            "A new simulation" if i is None else f"New version of {series[i].title} (v{series[i].latest.version + 1})"
        ),
    )
    treatments = {t.id: t for t in overview.treatments}
    treatment_id = cols[1].selectbox(
        "Treatment plan",
        [None, *treatments],
        index=1 if len(treatments) == 1 else 0,  # the patient's only plan: preselected
        key="import-treatment",
        format_func=lambda i: "No treatment plan" if i is None else treatments[i].name,
        disabled=series_of is not None,
    )
    sim_type = cols[2].selectbox(
        "Type",
        list(SimulationType),
        key="import-type",
        format_func=lambda t: t.value.replace("_", " ").title(),
        disabled=series_of is not None,
    )
    name = st.text_input("Name", placeholder="e.g. ClinCheck v3 (upper and lower)", key="import-name")
    options: dict = {}
    if source is ImportSource.RECORDING and st.checkbox("Crop to a region (hide vendor UI or burned-in names)"):
        c = st.columns(4)
        options["crop"] = {
            "x": c[0].number_input("x", 0, 7680, 0),
            "y": c[1].number_input("y", 0, 4320, 0),
            "w": c[2].number_input("width", 16, 7680, 1280),
            "h": c[3].number_input("height", 16, 4320, 720),
        }
    if source is ImportSource.STAGED_3D:
        options["views"] = st.multiselect(
            "Views to render",
            list(CLINICAL_VIEWS),
            default=list(CLINICAL_VIEWS),
            format_func=VIEW_LABELS.__getitem__,
            key="import-views",
        )
    several = source is not ImportSource.RECORDING
    if source is ImportSource.ITERO and st.toggle("Choose the export folder", value=True, key="import-itero-folder"):
        several = "directory"  # the whole OrthoCAD_Export_… folder, as the scanner software wrote it
    files = st.file_uploader(
        "Files",
        type=SOURCES[source][1],
        accept_multiple_files=several,
        key=f"import-files-{source.value}",
    )
    if st.button("Upload and analyse", type="primary", icon=":material/upload:", disabled=not files):
        uploads = [Upload(f.name, f.getvalue()) for f in (files if isinstance(files, list) else [files])]
        record = services().imports.start(
            actor,
            source=source,
            uploads=uploads,
            patient_id=patient.id,
            treatment_id=treatment_id,
            simulation_type=sim_type,
            name=name,
            series_of=series_of,
            options=options,
        )
        st.session_state[IMPORT_KEY] = record.id
        st.rerun()
    recent_imports(actor, patient.id)
    unmatched_imports(actor)
    unassigned_imports(actor)
except StudioError as exc:
    show_error(exc)
