"""Admin: clinic settings — branding for decks and exports, whether patient names may appear, and the hosts
vendor web viewers may be embedded from."""

import streamlit as st

from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.viewer_links import viewer_hosts_editor

actor = require_actor()
st.title("Clinic settings")

try:
    clinic = services().sessions.clinic(actor)
    with st.form("clinic"):
        show_names = st.toggle("Allow full patient names in exports, decks and file names of consult packs",
                               value=clinic.showPatientNames,
                               help="Off: initials only. Names never appear in file metadata either way.")
        color = st.color_picker("Primary colour", value=clinic.primaryColor)
        footer = st.text_input("Footer text", value=clinic.footerText, placeholder="Brightside Orthodontics · 555-0100")
        logo = st.file_uploader("Logo (PNG or JPEG)", type=["png", "jpg", "jpeg"])
        if st.form_submit_button("Save", type="primary"):
            services().sessions.update_clinic(actor, show_patient_names=show_names, primary_color=color,
                                              footer_text=footer, logo=logo.getvalue() if logo else None)
            st.toast("Saved.")
            st.rerun()
    if (current := services().sessions.clinic_logo(actor)) is not None:
        st.image(current, caption="Current logo", width=240)
    viewer_hosts_editor(actor)
except StudioError as exc:
    show_error(exc)
