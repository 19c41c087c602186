"""Widget groups of the import page: live status, the frame preview editor, recent imports."""

from __future__ import annotations

import streamlit as st

from core.domain import ImportState, SimulationImport
from core.permissions import Actor
from ui.context import services
from ui.paging import page_controls, page_cursor

BUSY = (ImportState.QUEUED, ImportState.ANALYZING, ImportState.IMPORTING)
STATE_TEXT = {
    ImportState.QUEUED: "Waiting for a worker…",
    ImportState.ANALYZING: "Analysing the files",
    ImportState.PREVIEW: "Ready: check the frames below",
    ImportState.UNMATCHED: "Waiting for a patient to be assigned",
    ImportState.IMPORTING: "Importing",
    ImportState.DONE: "Imported",
    ImportState.FAILED: "Import failed",
    ImportState.CANCELLED: "Cancelled",
}


def import_status(actor: Actor, import_id: str) -> SimulationImport:
    """Current state; refreshes itself every second while a job works on the import."""
    record = services().imports.get(actor, import_id)

    @st.fragment(run_every=1.0 if record.state in BUSY else None)
    def status() -> None:
        now = services().imports.get(actor, import_id)
        if now.state is not record.state:
            st.rerun()  # the page below the status depends on the state
        if now.state in BUSY:
            st.progress(now.progress, text=f"{STATE_TEXT[now.state]} — {now.step} ({now.progress}%)")
        elif now.state is ImportState.FAILED:
            st.error(f"{STATE_TEXT[now.state]}: {now.error}", icon=":material/error:")
        elif now.state is ImportState.DONE:
            st.success(f"Imported as a new version ({sum(c.include for c in now.candidates)} frames).",
                       icon=":material/check_circle:")
        else:
            st.info(STATE_TEXT[now.state])

    status()
    return record


def candidate_editor(actor: Actor, record: SimulationImport) -> None:
    """Reorder or drop proposed frames, then import (or cancel)."""
    if record.metadata.get("manifestPatient"):
        matches = record.metadata.get("patientMatch") or []
        st.info(f"Export for **{record.metadata['manifestPatient']}**: "
                + ("matches the chosen patient." if record.patientId in matches
                   else f"{len(matches)} matching patient(s) in your clinic — check the patient before importing."))
    rows = [{"Import": True, "Order": n + 1, "Stage": c.stage, "View": c.view, "Frame": c.label, "key": c.key}
            for n, c in enumerate(record.candidates)]
    thumbs = st.columns(min(8, len(rows)) or 1)
    for n, candidate in enumerate(record.candidates[:16]):
        thumbs[n % len(thumbs)].image(services().imports.candidate_image(actor, record.id, candidate.key),
                                      caption=f"{n + 1}. {candidate.label}", width="stretch")
    if len(record.candidates) > 16:
        st.caption(f"… and {len(record.candidates) - 16} more frames (all listed below).")
    edited = st.data_editor(rows, hide_index=True, width="stretch", key=f"editor-{record.id}",
                            disabled=["Stage", "View", "Frame", "key"], column_order=["Import", "Order", "Stage",
                                                                                     "View", "Frame"])
    keep = sorted((r for r in edited if r["Import"]), key=lambda r: (r["Order"], r["Stage"]))
    name = st.text_input("Simulation name", value=record.name, key=f"name-{record.id}")
    patient_id = record.patientId
    if patient_id is None:  # a watch-folder or iTero import: confirm or choose the patient
        proposed = record.metadata.get("patientMatch") or []
        patients = services().patients.search(actor, st.text_input("Find the patient", key=f"find-{record.id}"))
        ids = list(dict.fromkeys([*proposed, *(p.id for p in patients)]))
        names = {p.id: f"{p.display_name} · {p.chartNumber} · born {p.dateOfBirth}" for p in patients}
        patient_id = st.selectbox("Patient", ids, key=f"patient-{record.id}",
                                  format_func=lambda i: names.get(i) or services().patients.get(actor, i).display_name)
    cols = st.columns(2)
    if cols[0].button(f"Import {len(keep)} frames", type="primary", icon=":material/download_done:",
                      disabled=not keep or not patient_id):
        services().imports.confirm(actor, record.id, order=[r["key"] for r in keep], name=name,
                                   patient_id=patient_id)
        st.rerun()
    if cols[1].button("Cancel import", icon=":material/cancel:"):
        services().imports.cancel(actor, record.id)
        st.rerun()


def recent_imports(actor: Actor, patient_id: str) -> None:
    records = services().imports.recent(actor, patient_id=patient_id, cursor=page_cursor(f"imports:{patient_id}"))
    if records:
        st.subheader("Recent imports")
        st.dataframe([{"When": r.createdAt.strftime("%Y-%m-%d %H:%M"), "Source": r.source.value,
                       "Name": r.name, "State": r.state.value.title(), "Problem": r.error or ""} for r in records],
                     hide_index=True, width="stretch")
        page_controls(f"imports:{patient_id}", records)


def unmatched_imports(actor: Actor) -> None:
    """Watch-folder imports that name no unique patient: open one to assign the patient and import."""
    waiting = services().integrations.unmatched(actor, cursor=page_cursor("unmatched"))
    if not waiting:
        return
    st.subheader(f"Unmatched imports ({len(waiting)}{'+' if waiting.more else ''})")
    for record in waiting:
        cols = st.columns([4, 1])
        cols[0].markdown(f"**{record.name}** · {record.source.value} · {record.createdAt:%Y-%m-%d %H:%M}")
        if cols[1].button("Assign patient", key=f"assign-{record.id}"):
            st.session_state["import_id"] = record.id
            st.rerun()
    page_controls("unmatched", waiting)
