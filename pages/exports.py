"""Every export of the clinic as a worklist: what, whose, progress, cancel/retry and the file — newest first."""

import streamlit as st

from core.errors import StudioError
from ui.context import require_actor, show_error
from ui.export_worklist import export_worklist, worklist_filters

actor = require_actor()
st.title("Exports")

try:
    types, states, mine = worklist_filters()
    export_worklist(actor, types, states, mine)
except StudioError as exc:
    show_error(exc)
