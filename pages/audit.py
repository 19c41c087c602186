"""Admin: who saw and did what — filter, export as CSV, verify the hash chain."""

import streamlit as st

from core.errors import StudioError
from ui.context import require_actor, services, show_error
from ui.paging import page_controls, page_cursor

ACTIONS = ["", "signin", "signout", "simulation.view", "simulation.import", "simulation.modified", "import.requested",
           "import.failed", "approval.granted", "approval.revoked", "approval.refused", "review.changes_requested",
           "export.requested", "export.completed", "export.failed", "download", "permission.denied", "user.invited",
           "user.updated", "integration.created", "clinic.updated", "audit.verified"]

actor = require_actor()
st.title("Audit trail")

try:
    users = {u.id: u for u in services().sessions.clinic_users(actor)}
    cols = st.columns(4)
    user_id = cols[0].selectbox("User", ["", *users], format_func=lambda i: users[i].email if i else "Anyone")
    with cols[1]:
        text = st.text_input("Patient", placeholder="Name or chart number", key="audit-patient-search")
        matches = {p.id: p for p in services().patients.search(actor, text, limit=20)} if text.strip() else {}
        patient_id = st.selectbox("Matching patients", ["", *matches], label_visibility="collapsed",
                                  format_func=lambda i: f"{matches[i].display_name} · {matches[i].chartNumber}"
                                  if i else ("Any patient" if not text.strip() else f"{len(matches)} match(es)"),
                                  disabled=not matches)
    action = cols[2].selectbox("Action", ACTIONS, format_func=lambda a: a or "Any action")
    days = cols[3].date_input("Dates", value=())
    day_from, day_to = (days[0], days[-1]) if days else (None, None)
    list_key = f"audit:{user_id}:{patient_id}:{action}:{day_from}:{day_to}"
    events = services().audit.search(actor, user_id=user_id or None, patient_id=patient_id or None,
                                     action=action or None, day_from=day_from, day_to=day_to,
                                     cursor=page_cursor(list_key))
    patients = services().patients.get_many(actor, list({e.patientId for e in events if e.patientId}))
    st.dataframe([{"#": e.seq, "When (UTC)": e.at.strftime("%Y-%m-%d %H:%M:%S"), "Action": e.action,
                   "Outcome": e.outcome,
                   "User": users[e.userId].email if e.userId in users else (e.userId or ""),
                   "Patient": patients[e.patientId].display_name if e.patientId in patients else "",
                   "Details": ", ".join(f"{k}: {v}" for k, v in sorted(e.details.items()))} for e in events],
                 hide_index=True, width="stretch")
    page_controls(list_key, events)
    st.download_button("Export this page as CSV", data=services().audit.to_csv(actor, list(events)),
                       file_name="audit-trail.csv", mime="text/csv", icon=":material/download:", on_click="ignore")
    if st.button("Verify the chain", icon=":material/verified_user:",
                 help="Checks the events written since the last verification and the chain head. "
                      "`python -m core.cli audit verify` on the server checks the whole trail."):
        report = services().audit.verify(actor)
        if report.problems:
            st.error("Tampering detected:\n\n" + "\n".join(f"- {p}" for p in report.problems))
        else:
            st.success(f"Intact: events {report.first_seq:,}–{report.last_seq:,} checked against their keyed "
                       f"hashes and the chain head.")
except StudioError as exc:
    show_error(exc)
