"""Deep links: the page state that matters lives in the URL, so a reload, a bookmark or a pasted link
opens the same patient, simulation version, view, stage and comparison.

Each widget group reads its value from `st.query_params` once (`from_url`: only when the URL says
something this session has not applied yet, e.g. a pasted link or a reload) and writes the shown value
back (`to_url`). Records are looked up through the services with the viewer's clinic scope: another
clinic's id, a deleted record and a typo all show the same "not found".
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlencode

import streamlit as st

#: What each URL parameter holds. `stage` is the clinician's stage number (0 = Start), not a position.
PARAMS = ("patient", "sim", "view", "stage", "before", "layout")
NOT_FOUND = ("This link points to something that does not exist or that you cannot open "
             "(it may belong to another clinic, or have been removed). Choose below instead.")
_SEEN_KEY = "url-seen"


def _seen() -> dict[str, str]:
    return st.session_state.setdefault(_SEEN_KEY, {})


def from_url(name: str) -> str | None:
    """The URL's value for `name` if this session has not applied it yet (then it counts as applied)."""
    value = st.query_params.get(name)
    if value is None or _seen().get(name) == value:
        return None
    _seen()[name] = value
    return value


def to_url(**values: object) -> None:
    """Show these values in the address bar (None removes one); nothing is sent when nothing changed."""
    seen = _seen()
    for name, value in values.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
            seen.pop(name, None)
            continue
        text = str(value)
        if st.query_params.get(name) != text:
            st.query_params[name] = text
        seen[name] = text


def link_not_found() -> None:
    st.warning(NOT_FOUND, icon=":material/link_off:")


def page_link(url_path: str) -> str:
    """The address of this page with its current state (for sharing with a colleague of the clinic)."""
    base = ""
    with contextlib.suppress(Exception):  # no browser behind this run (AppTest): a site-relative link
        base = (st.context.url or "").rstrip("/")
    query = urlencode({k: st.query_params[k] for k in PARAMS if k in st.query_params})
    return f"{base}/{url_path}" + (f"?{query}" if query else "")


def copy_link(url_path: str) -> None:
    """A "Copy link" popover: the link to exactly what is on screen (it opens only for the clinic's users)."""
    with st.popover("Copy link", icon=":material/link:"):
        st.caption("Send this link to a colleague in your clinic: it opens this patient, version, view and "
                   "stage after they sign in. Use the copy button at the right of the box.")
        st.code(page_link(url_path), language=None, wrap_lines=True)
