"""Admin: who saw and did what — filter, export as CSV, verify the hash chain."""

import streamlit as st

from core.errors import StudioError
from ui.context import require_actor, services, show_error

ACTIONS = ["", "signin", "signout", "simulation.view", "simulation.import", "simulation.modified", "import.requested",
           "import.failed", "approval.granted", "approval.revoked", "approval.refused", "review.changes_requested",
           "export.requested", "export.completed", "export.failed", "download", "permission.denied", "user.invited",
           "user.updated", "integration.created"]

actor = require_actor()
st.title("Audit trail")

try:
    users = {u.id: u for u in services().sessions.clinic_users(actor)}
    cols = st.columns(4)
    user_id = cols[0].selectbox("User", ["", *users], format_func=lambda i: users[i].email if i else "Anyone")
    patients = {p.id: p for p in services().patients.search(actor)}
    patient_id = cols[1].selectbox("Patient", ["", *patients],
                                   format_func=lambda i: patients[i].display_name if i else "Any patient")
    action = cols[2].selectbox("Action", ACTIONS, format_func=lambda a: a or "Any action")
    days = cols[3].date_input("Dates", value=())
    day_from, day_to = (days[0], days[-1]) if days else (None, None)
    events = services().audit.search(actor, user_id=user_id or None, patient_id=patient_id or None,
                                     action=action or None, day_from=day_from, day_to=day_to)
    st.dataframe([{"When (UTC)": e.at.strftime("%Y-%m-%d %H:%M:%S"), "Action": e.action, "Outcome": e.outcome,
                   "User": users[e.userId].email if e.userId in users else (e.userId or ""),
                   "Patient": patients[e.patientId].display_name if e.patientId in patients else "",
                   "Details": ", ".join(f"{k}: {v}" for k, v in sorted(e.details.items()))} for e in events],
                 hide_index=True, width="stretch")
    st.download_button("Export CSV", data=services().audit.to_csv(actor, events), file_name="audit-trail.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")
    if st.button("Verify the chain", icon=":material/verified_user:"):
        problems = services().audit.verify(actor)
        if problems:
            st.error("Tampering detected:\n\n" + "\n".join(f"- {p}" for p in problems))
        else:
            st.success("Every event is intact and in sequence.")
except StudioError as exc:
    show_error(exc)
