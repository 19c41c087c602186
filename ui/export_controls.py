"""Widget groups for export settings and results (sizes, formats, overlays, downloads)."""

from __future__ import annotations

import streamlit as st

from core.domain import PatientNames
from core.imaging.sizes import PRINT_SIZES, SCREEN_SIZES
from core.permissions import Actor
from core.services.visuals import PATIENT_TEXT, ExportResult, OutputSpec, Overlays
from ui.context import current_actor, services
from ui.downloads import file_link
from ui.text import md

SIZE_LABELS = {**{k: s.label for k, s in SCREEN_SIZES.items()},
               **{k: f"{s.label} · 300 DPI print" for k, s in PRINT_SIZES.items()}}


def output_controls(key: str, *, default: str = "1080p") -> OutputSpec:
    cols = st.columns(3)
    size = cols[0].selectbox("Output size", list(SIZE_LABELS), index=list(SIZE_LABELS).index(default),
                             format_func=SIZE_LABELS.__getitem__, key=f"{key}-size")
    orientation = cols[1].radio("Orientation", ["landscape", "portrait"], horizontal=True, key=f"{key}-orient",
                                disabled=size in SCREEN_SIZES)
    fmt = cols[2].radio("Format", ["png", "jpeg"], horizontal=True, key=f"{key}-fmt",
                        format_func=str.upper)
    return OutputSpec(size=size, orientation=orientation, fmt=fmt)


def overlay_controls(key: str, *, approved: bool) -> Overlays:
    """Caption toggles of an export; the patient caption offers only what the clinic's policy allows."""
    cols = st.columns(4)
    stage = cols[0].toggle("Stage label", value=True, key=f"{key}-stage")
    date = cols[1].toggle("Date", value=True, key=f"{key}-date")
    clinic = cols[2].toggle("Clinic name", value=True, key=f"{key}-clinic")
    actor = current_actor(touch=False)
    ceiling = services().sessions.clinic(actor).patientNames if actor else PatientNames.NONE
    choices = PATIENT_TEXT[:PATIENT_TEXT.index(ceiling.value) + 1]
    patient = cols[3].selectbox("Patient caption", choices, key=f"{key}-patient",
                                format_func={"none": "None", "initials": "Initials", "full": "Full name"}.__getitem__,
                                help="Your clinic's setting decides how much of a name exports may show.")
    st.caption("Patient-facing images always carry “Simulated outcome — not a guarantee of results”."
               + ("" if approved else " This version is not approved: exports carry a **DRAFT — not approved** "
                                     "watermark."))
    return Overlays(stage_label=stage, date=date, clinic=clinic, patient=patient)


def export_result(actor: Actor, result: ExportResult) -> None:
    """Say what was saved and offer the file (the download itself is audited when clicked)."""
    if result.reused:
        st.info("An identical export already exists; here it is.", icon=":material/content_copy:")
    else:
        st.success(f"Saved to the patient's gallery: {md(result.export.name)}", icon=":material/check_circle:")
    asset = result.asset
    file_link(actor, asset)
    size = f"{asset.width} × {asset.height} px · " if asset.width and asset.height else ""
    st.caption(f"{size}{asset.size / 1e6:.1f} MB · SHA-256 {asset.sha256[:16]}…")
