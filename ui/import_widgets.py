"""Widget groups of the import page: live status, the frame preview editor, recent imports.

Everything taken from the upload (file names in errors, manifest fields, the export's patient)
is shown through `md`, so it renders as text, never as Markdown.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.domain import ImportState, SimulationImport, view_label
from core.permissions import Actor
from core.stages import stage_name
from core.text import printable
from ui.context import services
from ui.paging import page_controls, page_cursor
from ui.text import md

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
            st.progress(now.progress, text=f"{STATE_TEXT[now.state]} — {md(now.step)} ({now.progress}%)")
        elif now.state is ImportState.FAILED:
            st.error(f"{STATE_TEXT[now.state]}: {md(now.error or '')}", icon=":material/error:")
        elif now.state is ImportState.DONE:
            st.success(f"Imported as a new version ({sum(c.include for c in now.candidates)} frames).",
                       icon=":material/check_circle:")
        else:
            st.info(STATE_TEXT[now.state])

    status()
    return record


def export_summary(record: SimulationImport) -> None:
    """What a scanner export holds (order, dates, doctor, views, jaw scans) and its warnings."""
    itero: dict[str, Any] | None = record.metadata.get("itero")
    if itero:
        facts = [f"order {itero['orderId']}"]
        if itero.get("scanDate"):
            facts.append(f"scanned {itero['scanDate']}")
        if itero.get("exportTime"):
            facts.append(f"exported {itero['exportTime'].replace('T', ' ')}")
        if itero.get("doctor"):
            facts.append(itero["doctor"])
        unlisted = len(itero.get("unlistedViews") or ())
        facts.append(f"{len(itero.get('views') or {})} scanner views"
                     + (f" ({unlisted} found in the folder, not in the manifest)" if unlisted else ""))
        for jaw in itero.get("jaws") or ():
            facts.append(f"{jaw['arch']} jaw: {jaw['triangles']:,} triangles" if jaw["status"] == "ok"
                         else f"{jaw['arch']} jaw {jaw['status']}")
        st.markdown("**iTero export** · " + " · ".join(md(fact) for fact in facts))
    for warning in record.metadata.get("warnings") or ():
        st.warning(md(warning), icon=":material/warning:")


def patient_match(record: SimulationImport) -> None:
    """Who the export names, which patient it matches and why."""
    who = record.metadata.get("exportPatient")
    if not who:
        return
    matches = record.metadata.get("patientMatch") or []
    reason = md(record.metadata.get("matchReason", ""))
    named = f"Export for **{md(who['name'])}**" + (f" (chart {md(who['chartNumber'])})" if who.get("chartNumber")
                                                      else "")
    if record.patientId is not None:
        if record.patientId in matches:
            st.success(f"{named}: matches the chosen patient. {reason}", icon=":material/how_to_reg:")
        else:
            st.warning(f"{named}: does not match the chosen patient. {reason} Check the patient before importing.",
                       icon=":material/person_alert:")
    elif len(matches) == 1:
        st.info(f"{named}: the patient below is proposed. {reason}", icon=":material/how_to_reg:")
    else:
        st.warning(f"{named}: {reason}", icon=":material/person_search:")


def candidate_editor(actor: Actor, record: SimulationImport) -> None:
    """Reorder or drop proposed frames, confirm the patient, then import (or cancel)."""
    export_summary(record)
    patient_match(record)
    rows = [{"Import": True, "Order": n + 1, "Becomes": stage_name(c.stage), "View": view_label(c.view),
             "From file": printable(c.label),
             "key": c.key} for n, c in enumerate(record.candidates)]
    thumbs = st.columns(min(8, len(rows)) or 1)
    for n, candidate in enumerate(record.candidates[:16]):
        thumbs[n % len(thumbs)].image(services().imports.candidate_image(actor, record.id, candidate.key),
                                      caption=f"{n + 1}\\. {md(candidate.label)}", width="stretch")
    if len(record.candidates) > 16:
        st.caption(f"… and {len(record.candidates) - 16} more frames (all listed below).")
    edited = st.data_editor(rows, hide_index=True, width="stretch", key=f"editor-{record.id}",
                            disabled=["Becomes", "View", "From file", "key"],
                            column_order=["Import", "Order", "Becomes", "View", "From file"])
    keep = sorted((r for r in edited if r["Import"]), key=lambda r: r["Order"])
    name = st.text_input("Simulation name", value=record.name, key=f"name-{record.id}")
    patient_id = record.patientId
    proposed = record.metadata.get("patientMatch") or []
    if patient_id is None or (proposed and patient_id not in proposed):
        # A watch-folder, CLI or iTero import: confirm the proposed patient or choose another.
        found = services().patients.search(actor, st.text_input("Find the patient", key=f"find-{record.id}"))
        ids = list(dict.fromkeys([*([patient_id] if patient_id else []), *proposed, *(p.id for p in found)]))
        names = {p.id: f"{p.display_name} · {p.chartNumber} · born {p.dateOfBirth}" for p in found}

        def label(pid: str) -> str:
            if pid not in names:
                patient = services().patients.get(actor, pid)
                names[pid] = f"{patient.display_name} · {patient.chartNumber} · born {patient.dateOfBirth}"
            return printable(names[pid] + (" · proposed" if pid in proposed else ""))

        patient_id = st.selectbox("Patient", ids, key=f"patient-{record.id}", format_func=label)
    cols = st.columns(2)
    if cols[0].button(f"Import {len(keep)} frames", type="primary", icon=":material/download_done:",
                      disabled=not keep or not patient_id):
        services().imports.confirm(actor, record.id, order=[r["key"] for r in keep], name=name,
                                   patient_id=patient_id)
        st.rerun()
    if cols[1].button("Cancel import", icon=":material/cancel:"):
        services().imports.cancel(actor, record.id)
        st.rerun()


def unassigned_imports(actor: Actor) -> None:
    """Recent imports that have no patient yet (waiting for one, or failed before one was chosen):
    they belong to no patient's recent imports, so they are listed on their own."""
    records = services().imports.unassigned(actor)
    if records:
        st.subheader("Recent imports without a patient")
        st.dataframe([{"When": r.createdAt.strftime("%Y-%m-%d %H:%M"), "Source": r.source.value,
                       "Name": printable(r.name), "State": r.state.value.title(),
                       "Problem": printable(r.error or "")} for r in records], hide_index=True, width="stretch")


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
        # CLI and drop-folder imports: named after the export folder, or (iTero) after the order.
        order = record.metadata.get("sourceId")
        title = record.name or (f"order {order}" if order else record.source.value)
        reason = record.metadata.get("matchReason")
        cols[0].markdown(f"**{md(title)}** · {record.source.value} · {record.createdAt:%Y-%m-%d %H:%M}"
                         + (f"  \n{md(reason)}" if reason else ""))
        if cols[1].button("Assign patient", key=f"assign-{record.id}"):
            st.session_state["import_id"] = record.id
            st.rerun()
    page_controls("unmatched", waiting)
