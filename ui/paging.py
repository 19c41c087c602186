"""Keyset pagination in pages: the cursor of the page the user is on, and Previous/Next controls."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.repositories.base import Page


def _state_key(list_key: str) -> str:
    return "pager-" + hashlib.sha1(list_key.encode()).hexdigest()[:16]


def page_cursor(list_key: str) -> str | None:
    """The cursor of the page shown for this list (None: its first page).

    `list_key` names the list and its filters: changing a filter starts again at the first page.
    """
    return st.session_state.get(_state_key(list_key), [None])[-1]


def page_controls(list_key: str, page: Page, *, newer: str = "Newer", older: str = "Older") -> None:
    """Buttons that move between pages of a list (shown only when there is somewhere to go)."""
    cursor_controls(list_key, page.cursor, truncated=page.truncated, newer=newer, older=older)


def cursor_controls(list_key: str, cursor: str | None, *, truncated: bool = False, newer: str = "Newer",
                    older: str = "Older") -> None:
    """`page_controls` for a result that carries only the next page's cursor (e.g. a patient's overview)."""
    stack: list[str | None] = st.session_state.setdefault(_state_key(list_key), [None])
    if len(stack) == 1 and not cursor:
        if truncated:
            st.caption("More match than shown; refine the search.")
        return
    cols = st.columns([1, 1, 3])
    if cols[0].button(newer, key=f"{_state_key(list_key)}-prev", icon=":material/chevron_left:",
                      disabled=len(stack) == 1, width="stretch"):
        stack.pop()
        st.rerun()
    if cols[1].button(older, key=f"{_state_key(list_key)}-next", icon=":material/chevron_right:",
                      disabled=not cursor, width="stretch"):
        stack.append(cursor)
        st.rerun()
    cols[2].caption(f"Page {len(stack)}")
