"""Admin: clinic settings — branding for decks and exports, whether patient names may appear, and the hosts
vendor web viewers may be embedded from."""

import streamlit as st

from core.domain import PatientNames
from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.viewer_links import viewer_hosts_editor

NAME_POLICY_LABELS = {PatientNames.NONE: "Never", PatientNames.INITIALS: "Initials at most",
                      PatientNames.FULL: "Full names allowed"}

actor = require_actor()
st.title("Clinic settings")

try:
    clinic = services().sessions.clinic(actor)
    with st.form("clinic"):
        names = st.radio("Patient names on images, videos, PDFs and decks", list(PatientNames),
                         index=list(PatientNames).index(clinic.patientNames), horizontal=True,
                         format_func=NAME_POLICY_LABELS.__getitem__,
                         help="The most any export may show; each export's caption choice applies below it. "
                              "Names never appear in file names or file metadata.")
        color = st.color_picker("Primary colour", value=clinic.primaryColor)
        footer = st.text_input("Footer text", value=clinic.footerText, placeholder="Brightside Orthodontics · 555-0100")
        logo = st.file_uploader("Logo (PNG or JPEG)", type=["png", "jpg", "jpeg"], max_upload_size=5)
        if st.form_submit_button("Save", type="primary"):
            services().sessions.update_clinic(actor, patient_names=names, primary_color=color,
                                              footer_text=footer, logo=logo.getvalue() if logo else None)
            st.toast("Saved.")
            st.rerun()
    if (current := services().sessions.clinic_logo(actor)) is not None:
        st.image(current, caption="Current logo", width=240)
    viewer_hosts_editor(actor)
except StudioError as exc:
    show_error(exc)
