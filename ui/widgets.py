"""Widget groups shared by pages."""

from __future__ import annotations

import contextlib

import streamlit as st

from core.domain import Patient, Permission, TreatmentSimulation
from core.errors import StudioError
from core.permissions import Actor
from core.services.patients import SimulationSeries
from core.stages import stage_count_text
from ui.context import PATIENT_KEY, SIMULATION_KEY, services
from ui.deep_links import from_url, link_not_found, to_url
from ui.paging import page_controls, page_cursor
from ui.text import md


def patient_picker(actor: Actor) -> Patient | None:
    """Search box + patient select; remembers the choice across pages.

    Shows at most 50 patients: a search narrows them, "Previous"/"Next" page through all of them (the
    patient chosen before stays selected while no search is typed).
    """
    _open_linked(actor)
    text = st.text_input("Search patients", placeholder="Last name, first name or chart number",
                         key="patient_search")
    list_key = "patients"
    patients = services().patients.search(actor, text) if text.strip() \
        else services().patients.page(actor, cursor=page_cursor(list_key))
    by_id = {p.id: p for p in patients}
    current = st.session_state.get(PATIENT_KEY)
    if current and current not in by_id and not text.strip():  # e.g. chosen on another page of the list
        with contextlib.suppress(StudioError):
            by_id = {current: services().patients.get(actor, current), **by_id}
    if not by_id:
        st.info("No patient matches that search." if text else "No patients in your clinic yet.")
        return None
    ids = list(by_id)
    chosen = st.selectbox(
        "Patient", ids, index=ids.index(current) if current in ids else 0,
        format_func=lambda pid: f"{by_id[pid].display_name} · {by_id[pid].chartNumber}",
    )
    if not text.strip():
        page_controls(list_key, patients, newer="Previous", older="Next")
    elif patients.truncated:
        st.caption("Showing the first 50 matches; type more of the name to narrow them.")
    st.session_state[PATIENT_KEY] = chosen
    to_url(patient=chosen)
    return by_id[chosen]


def _open_linked(actor: Actor) -> None:
    """Select the patient / simulation version a link names (a version's link brings its patient along)."""
    sim_id, patient_id = from_url("sim"), from_url("patient")
    if sim_id:
        try:
            sim = services().simulations.get(actor, sim_id)
        except StudioError:  # unknown, another clinic's, or (for presenters) not approved: all alike
            link_not_found()
            to_url(sim=None, view=None, stage=None)
        else:
            st.session_state[PATIENT_KEY] = sim.patientId
            st.session_state[SIMULATION_KEY] = sim.id
            return
    if patient_id:
        try:
            services().patients.get(actor, patient_id)
        except StudioError:
            link_not_found()
            to_url(patient=None)
        else:
            if st.session_state.get(PATIENT_KEY) != patient_id:
                st.session_state[PATIENT_KEY] = patient_id
                st.session_state.pop(SIMULATION_KEY, None)


def series_table(series: SimulationSeries) -> str | None:
    """A series' versions as a table; returns the version chosen to open (default: the active one)."""
    st.markdown(f"**{md(series.title)}** · {series.simulationType.value.replace('_', ' ').title()}"
                + (f" · {md(series.treatment.name)}" if series.treatment else ""))
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


def simulation_picker(actor: Actor, patient: Patient, *, label: str = "Simulation") -> TreatmentSimulation | None:
    """Select one of the patient's simulation versions (remembered across pages; archived ones on request)."""
    overview = services().patients.overview(actor, patient.id,
                                            include_archived=st.session_state.get("show-archived", False))
    versions = {v.id: v for series in overview.series for v in series.versions}
    if not versions:
        st.info("This patient has no simulations yet. "
                + ("Import one on the Import page." if actor.can(Permission.IMAGING_CAPTURE) else
                   "A treatment coordinator imports them; ask one to add this patient's simulation."))
        to_url(sim=None, view=None, stage=None)
        return None
    current = st.session_state.get(SIMULATION_KEY)
    loaded: TreatmentSimulation | None = None  # the whole record, when a link needed it already
    if current and current not in versions:  # a link to a version older than the newest page (or not theirs)
        with contextlib.suppress(StudioError):
            linked = services().simulations.get(actor, current)
            if linked.patientId == patient.id:
                versions[linked.id] = loaded = linked
    ids = list(versions)
    chosen = st.selectbox(
        label, ids, index=ids.index(current) if current in ids else 0,
        format_func=lambda i: f"{versions[i].name} · v{versions[i].version} · {versions[i].status.value.lower()}"
                              f"{' · approved' if versions[i].isApproved else ' · draft'}",
    )
    st.session_state[SIMULATION_KEY] = chosen
    to_url(sim=chosen)
    sim = loaded if loaded is not None and loaded.id == chosen else services().simulations.get(actor, chosen)
    if st.session_state.get("viewed_simulation") != chosen:  # one audit event per opened version, not per rerun
        services().simulations.record_view(actor, chosen)
        st.session_state["viewed_simulation"] = chosen
    return sim


def simulation_summary(actor: Actor, sim: TreatmentSimulation) -> None:
    """Side panel: version, status, approval, source, treatment, scan and the series' versions."""
    context = services().simulations.context(actor, sim)
    # A vendor's case id helps; our own import's id ("import-6b0f…") means nothing to a clinician.
    source_id = sim.sourceId if sim.sourceId and not sim.sourceId.startswith("import-") else None
    st.metric("Version", f"v{sim.version}", help="Versions of one series share patient, treatment and type.")
    approval = (f"Approved {sim.approvedAt:%d %b %Y}" if sim.isApproved and sim.approvedAt
                else "Approved" if sim.isApproved else "Draft — not approved")
    st.markdown(
        f"**Status:** {sim.status.value.title()}  \n**Approval:** {approval}  \n"
        f"**Source:** {md(sim.sourceSystem or '–')}{f' · {md(source_id)}' if source_id else ''}  \n"
        f"**Treatment:** {md(context.treatment.name) if context.treatment else '–'}  \n"
        f"**Scan:** {sim.scanId or 'not linked'}  \n"
        f"**Stages:** {stage_count_text(f.stage for f in sim.frames) if sim.frames else sim.stage_count}"
        f" · **Frames:** {sim.frameCount}  \n"
        f"**Created:** {sim.createdAt:%Y-%m-%d %H:%M} UTC"
    )
    for when, who, comment in services().review.change_requests(actor, sim.id):
        st.warning(f"Changes requested by {md(who)} ({md(when)}): {md(comment)}", icon=":material/edit_note:")
    st.markdown("**Versions**")
    for version in context.versions:
        marker = "▶ " if version.id == sim.id else ""
        st.caption(f"{marker}v{version.version} · {version.status.value.lower()} · "
                   f"{'approved' if version.isApproved else 'draft'} · {version.createdAt:%Y-%m-%d}")
