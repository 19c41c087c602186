"""Case presentations: build a consult deck from approved material; download PPTX, PDF or a pack."""

import streamlit as st

from core.domain import PatientNames, Permission
from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.deck_widgets import deck_preview, slide_editor
from ui.render_widgets import FOLLOW_KEY, export_progress, follow
from ui.text import md
from ui.widgets import patient_picker

CAPTIONS = {PatientNames.NONE: "Not at all", PatientNames.INITIALS: "Initials", PatientNames.FULL: "Full name"}

actor = require_actor()
st.title("Presentations")

try:
    patient = patient_picker(actor)
    if patient is None:
        st.stop()
    decks = {d.id: d for d in services().decks.for_patient(actor, patient.id)}
    can_edit = actor.can(Permission.IMAGING_CAPTURE)
    if can_edit:
        templates = services().decks.templates()
        cols = st.columns([3, 1])
        template = cols[0].selectbox("New presentation from template", list(templates), format_func=templates.get)
        if cols[1].button("Create", type="primary", icon=":material/add:"):
            deck = services().decks.create(actor, patient.id, template)
            st.session_state["deck_id"] = deck.id
            st.rerun()
    if not decks:
        st.info("No presentations for this patient yet. "
                + ("Create one from a template above." if can_edit else
                   "A treatment coordinator or doctor creates them; ask one to prepare one for this patient."))
        st.stop()
    ids = list(decks)
    current = st.session_state.get("deck_id")
    deck_id = st.selectbox("Presentation", ids, index=ids.index(current) if current in ids else 0,
                           format_func=lambda i: decks[i].name)
    st.session_state["deck_id"] = deck_id
    deck = services().decks.get(actor, deck_id)
    warnings = services().decks.warnings(actor, deck)
    for warning in warnings:
        if warning.blocking:
            st.error(md(warning.text), icon=":material/block:")
        else:
            st.warning(md(warning.text), icon=":material/update:")
    blocked = any(w.blocking for w in warnings)
    st.caption("Shows: " + ", ".join(f"v{v}" for v in deck.usedVersions.values()) + " (approved versions only)")
    if can_edit:
        slide_editor(actor, deck)
    deck_preview(actor, deck)
    st.subheader("Download")
    allowed = services().sessions.clinic(actor).patientNames
    levels = [level for level in PatientNames if list(PatientNames).index(level) <= list(PatientNames).index(allowed)]
    caption = st.segmented_control("Name the patient on the title slide", levels, default=PatientNames.NONE,
                                   format_func=CAPTIONS.__getitem__, key="deck-caption") or PatientNames.NONE
    cols = st.columns(4)
    for col, (output, label) in zip(cols, (("pptx", "PowerPoint"), ("pdf", "PDF"), ("handout", "Handout PDF"),
                                          ("pack", "Consult pack (ZIP)")), strict=True):
        if actor.can(Permission.IMAGING_EXPORT) and col.button(label, key=f"build-{output}", width="stretch",
                                                               disabled=blocked):
            follow(services().exports.request_deck(actor, deck.id, output, caption=caption))
    for export_id in st.session_state.get(FOLLOW_KEY, [])[:4]:
        export_progress(actor, export_id)
except StudioError as exc:
    show_error(exc)
