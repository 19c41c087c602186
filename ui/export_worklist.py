"""The Exports worklist: filters, and rows that refresh themselves while anything renders."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.domain import ExportState, ExportType, Permission
from core.errors import StudioError
from core.permissions import Actor
from core.repositories.base import Page
from core.services.worklist import BUSY, TYPE_LABELS, ExportRow
from ui.context import services
from ui.downloads import file_link
from ui.paging import page_controls, page_cursor
from ui.text import md

SHOW = {"all": "All", "active": "In progress", "ready": "Ready", "problems": "Failed or cancelled"}
_STATES = {"all": (), "active": tuple(BUSY), "ready": (ExportState.DONE,),
           "problems": (ExportState.FAILED, ExportState.CANCELLED)}
REFRESH_SECONDS = 2.0


def worklist_filters() -> tuple[list[ExportType], tuple[ExportState, ...], bool]:
    cols = st.columns([3, 3, 1], vertical_alignment="bottom")
    types = cols[0].multiselect("Type", list(TYPE_LABELS), format_func=TYPE_LABELS.__getitem__, key="exports-types",
                                placeholder="All types")
    show = cols[1].segmented_control("Show", list(SHOW), default="all", format_func=SHOW.__getitem__,
                                     key="exports-show") or "all"
    mine = cols[2].toggle("Only mine", key="exports-mine")
    return types, _STATES[show], mine


def export_worklist(actor: Actor, types: list[ExportType], states: tuple[ExportState, ...], mine: bool) -> None:
    """The rows; while one of them renders, the list refreshes itself every couple of seconds."""
    list_key = f"exports-{sorted(t.value for t in types)}-{sorted(s.value for s in states)}-{mine}"

    def read() -> Page[ExportRow]:
        return services().worklist.rows(actor, cursor=page_cursor(list_key), types=types, states=states, mine=mine)

    first = [read()]
    was_busy = any(r.busy for r in first[0])

    @st.fragment(run_every=REFRESH_SECONDS if was_busy else None)
    def rows() -> None:
        page = first.pop() if first else read()  # the full run draws what it just read
        if any(r.busy for r in page) != was_busy:
            st.rerun(scope="app")  # start or stop refreshing
        if not page.items:
            st.info("No exports match these filters." if types or states or mine else
                    "No exports yet. Coordinators make them from a simulation's page (video, GIF, PDF), the "
                    "Compare page, or Presentations; they appear here with their progress.")
        for row in page:
            export_row(actor, row)
        page_controls(list_key, page)

    rows()


def export_row(actor: Actor, row: ExportRow) -> None:
    export = row.export
    with st.container(border=True, key=f"export-row-{export.id}"):
        cols = st.columns([3, 2, 3, 2, 2], vertical_alignment="center")
        version = f" v{row.version}" if row.version is not None else ""
        cols[0].markdown(f"**{md(export.name or row.type_label)}**  \n{row.type_label} · {md(row.simulation)}{version}")
        cols[1].markdown(f":material/person: {md(row.patient)}")
        with cols[2]:
            if row.busy:
                step = {"PENDING": "waiting for the job queue", "QUEUED": "waiting for a worker"}.get(
                    export.state.value, export.step or "rendering")
                st.progress(export.progress, text=f"{row.state_label} · {export.progress}% · {md(step)}")
            elif export.state is ExportState.FAILED:
                st.markdown(f":red[**Failed**]  \n{md(export.error or 'no reason was recorded')}")
            else:
                st.markdown(row.state_label)
        cols[3].caption(f"{md(row.made_by)}  \n{export.createdAt:%d %b %Y %H:%M} UTC")
        with cols[4]:
            row_actions(actor, row)


def row_actions(actor: Actor, row: ExportRow) -> None:
    export = row.export
    can_act = actor.can(Permission.IMAGING_EXPORT)
    if row.file is not None:
        file_link(actor, row.file, width="stretch")
    elif export.state is ExportState.DONE:
        st.caption("The file is no longer stored; make it again from its page.")
    if not can_act:
        return
    if row.busy:
        st.button("Cancel", key=f"wl-cancel-{export.id}", icon=":material/cancel:", width="stretch",
                  on_click=_act, args=(services().exports.cancel, actor, export.id))
    elif export.state in (ExportState.FAILED, ExportState.CANCELLED):
        st.button("Retry", key=f"wl-retry-{export.id}", icon=":material/refresh:", width="stretch",
                  on_click=_act, args=(services().exports.retry, actor, export.id))


def _act(action: Callable[[Actor, str], object], actor: Actor, export_id: str) -> None:
    """Cancel or retry from a button callback (an error becomes a message, not a traceback)."""
    try:
        action(actor, export_id)
    except StudioError as exc:
        st.toast(md(str(exc)), icon=":material/error:")
    else:
        st.rerun(scope="app")  # a retried job renders again: the list starts refreshing
