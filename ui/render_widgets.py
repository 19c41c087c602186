"""Requesting rendered exports and following them: progress, cancel, retry, download."""

from __future__ import annotations

import streamlit as st

from core.domain import (
    ExportState,
    ExportType,
    ImagingAsset,
    SimulationExport,
    TreatmentSimulation,
    view_label,
)
from core.permissions import Actor
from core.services.exports import RenderRequest
from core.stages import stage_name
from ui.context import services
from ui.downloads import file_link
from ui.export_controls import overlay_controls
from ui.text import md

FOLLOW_KEY = "followed_exports"
TYPE_LABELS = {ExportType.VIDEO: "Video (MP4)", ExportType.GIF: "Animated GIF", ExportType.PDF: "Print PDF",
               ExportType.ASSETS: "Frames ZIP"}


def render_request_form(actor: Actor, sim: TreatmentSimulation) -> RenderRequest | None:
    kind = st.segmented_control("Export", list(TYPE_LABELS), default=ExportType.VIDEO,
                                format_func=TYPE_LABELS.__getitem__, key=f"render-kind-{sim.id}") or ExportType.VIDEO
    stages = sorted({f.stage for f in sim.frames})
    cols = st.columns(3)
    view = cols[0].selectbox("View", sim.views, key=f"render-view-{sim.id}", format_func=view_label)
    first, last = cols[1].select_slider("Stages", stages, value=(stages[0], stages[-1]), key=f"render-range-{sim.id}",
                                        format_func=stage_name)
    options: dict = {}
    if kind is ExportType.VIDEO:
        c = st.columns(4)
        options["preset"] = c[0].selectbox("Size", ["720p", "1080p", "4k", "square"], index=1, key=f"rv-size-{sim.id}")
        options["transition"] = c[1].selectbox("Transition", ["crossfade", "morph", "cut"], key=f"rv-tr-{sim.id}")
        options["seconds_per_stage"] = c[2].number_input("Seconds per stage", 0.2, 5.0, 0.5, 0.1, key=f"rv-s-{sim.id}")
        options["codec"] = c[3].selectbox("Format", ["h264", "vp9"], key=f"rv-codec-{sim.id}",
                                          format_func={"h264": "MP4 (H.264)", "vp9": "WebM (VP9)"}.__getitem__)
        comparisons = list(services().exports.for_simulation(actor, sim.id, export_type=ExportType.COMPARISON))
        if comparisons:
            wipe = st.selectbox("Or: the before/predicted wipe of a saved comparison",
                                [None, *[c.id for c in comparisons]],
                                format_func=lambda i: "No wipe — stage animation" if i is None else
                                next(c.name or c.id for c in comparisons if c.id == i), key=f"rv-wipe-{sim.id}")
            options["wipe_of"] = wipe
    elif kind is ExportType.GIF:
        options["gif_max_megabytes"] = float(st.select_slider("Size target (MB)", [2, 5, 10, 20], value=5,
                                                              key=f"rg-mb-{sim.id}"))
    elif kind is ExportType.PDF:
        c = st.columns(2)
        options["paper"] = c[0].radio("Paper", ["a4", "letter"], horizontal=True, key=f"rp-paper-{sim.id}",
                                      format_func=str.upper)
        options["orientation"] = c[1].radio("Orientation", ["portrait", "landscape"], horizontal=True,
                                            key=f"rp-orient-{sim.id}")
    overlays = overlay_controls(f"render-{sim.id}", approved=sim.isApproved) \
        if kind is not ExportType.ASSETS else None
    if not st.button(f"Render {TYPE_LABELS[kind].lower()}", type="primary", icon=":material/movie:",
                     key=f"render-go-{sim.id}"):
        return None
    return RenderRequest(export_type=kind, view=view, first_stage=first, last_stage=last,
                         **({"overlays": overlays} if overlays else {}), **options)


def follow(export: SimulationExport) -> None:
    followed = st.session_state.setdefault(FOLLOW_KEY, [])
    if export.id not in followed:
        followed.insert(0, export.id)


def export_progress(actor: Actor, export_id: str) -> None:
    """One export's live status; refreshes itself while it renders, so the user can leave and return."""
    export = services().exports.get(actor, export_id)
    busy = export.state in (ExportState.PENDING, ExportState.QUEUED, ExportState.RUNNING)

    @st.fragment(run_every=1.0 if busy else None)
    def panel() -> None:
        now = services().exports.get(actor, export_id)
        if (now.state in (ExportState.PENDING, ExportState.QUEUED, ExportState.RUNNING)) != busy:
            st.rerun()
        label = f"{md(now.name or now.exportType.value)} · {now.createdAt:%H:%M}"
        if now.state is ExportState.DONE:
            st.success(f"{label}: ready", icon=":material/check_circle:")
            file = services().exports.files(actor, [now]).get(now.id)
            if file is not None:
                download_button(actor, now, file)
        elif now.state is ExportState.FAILED:
            st.error(f"{label}: {md(now.error)}", icon=":material/error:")
            if st.button("Retry", key=f"retry-{now.id}", icon=":material/refresh:"):
                services().exports.retry(actor, now.id)
                st.rerun()
        elif now.state is ExportState.CANCELLED:
            st.info(f"{label}: cancelled")
        else:
            waiting = {"PENDING": "waiting for the job queue", "QUEUED": "waiting for a worker"}.get(now.state.value)
            st.progress(now.progress, text=f"{label}: {waiting or now.step} ({now.progress}%)")
            if st.button("Cancel", key=f"cancel-{now.id}", icon=":material/cancel:"):
                services().exports.cancel(actor, now.id)
                st.rerun()

    panel()


def download_button(actor: Actor, export: SimulationExport, asset: ImagingAsset) -> None:
    """Download an export's file (`asset`, from `ExportService.files`: one query for a whole list)."""
    file_link(actor, asset)

