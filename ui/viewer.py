"""The frame viewer: slider, step buttons, play/pause, thumbnail strip. Serves display renditions."""

from __future__ import annotations

import streamlit as st

from core.domain import RenditionState, TreatmentSimulation, view_label
from core.permissions import Actor
from core.stages import stage_name, stage_of, stage_range
from ui.context import services
from ui.deep_links import from_url, to_url
from ui.text import md

SPEEDS = {"0.5×": 1.0, "1×": 0.5, "2×": 0.25, "4×": 0.125}
STRIP = 9


@st.cache_data(max_entries=64, show_spinner=False)
def _frame_images(clinic_id: str, simulation_id: str, revision: int, view: str, rendition: str,
                  _actor: Actor) -> list[bytes]:
    """Per clinic + version + revision: the page checks access on every rerun before using this."""
    sim = services().simulations.get(_actor, simulation_id)
    return services().simulations.frame_images(_actor, sim, sim.frames_for_view(view), rendition)


def _renditions_status(actor: Actor, sim: TreatmentSimulation) -> None:
    @st.fragment(run_every=1.0)
    def poll() -> None:
        progress = services().simulations.rendition_progress(actor, sim.id)
        if progress.state is RenditionState.READY:
            st.rerun()
        if progress.state is RenditionState.FAILED:
            st.warning("Preparing display frames failed; showing originals. It will be retried.")
            return
        if progress.state is RenditionState.PENDING:
            services().simulations.ensure_renditions(actor, sim.id)
        st.progress(progress.percent, text=f"Preparing display frames… {progress.percent}% "
                                           "(showing full-size originals meanwhile)")

    poll()


_KEEP = "keep-"


def _restore(key: str) -> None:
    """Streamlit drops a widget's value once a page without it has run: bring the stage and view back
    from a plain copy when the user returns to the viewer."""
    if key not in st.session_state and _KEEP + key in st.session_state:
        st.session_state[key] = st.session_state[_KEEP + key]


def _view_key(sim: TreatmentSimulation) -> str:
    return f"view-{sim.id}"


def _frame_key(sim: TreatmentSimulation, view: str) -> str:
    return f"frame-{sim.id}-{view}"


def current_frame_index(sim: TreatmentSimulation) -> int:
    """The index (into `sim.frames`) of the frame the viewer shows now."""
    view = st.session_state.get(_view_key(sim)) or sim.views[0]
    frames = sim.frames_for_view(view)
    position = min(st.session_state.get(_frame_key(sim, view), 0), len(frames) - 1)
    return frames[position].index


def stage_controls(key: str, play_key: str, speed_key: str, last: int) -> float | None:
    """First / Back / Play-Pause / Next / Final buttons and the speed for a stage position kept in
    `st.session_state[key]`; returns the stage fragment's refresh interval (None while paused)."""
    st.session_state.setdefault(key, 0)
    st.session_state.setdefault(play_key, False)
    st.session_state[key] = min(st.session_state[key], last)

    def step(delta: int | None = None, to: int | None = None) -> None:
        st.session_state[key] = to if to is not None else min(last, max(0, st.session_state[key] + delta))

    def toggle_play() -> None:
        st.session_state[play_key] = not st.session_state[play_key]
        if st.session_state[play_key] and st.session_state[key] >= last:
            st.session_state[key] = 0

    cols = st.container(key="player").columns([1, 1, 1, 1, 1, 2], vertical_alignment="bottom")
    cols[0].button("First", on_click=step, kwargs={"to": 0}, icon=":material/first_page:", key=f"first-{key}")
    cols[1].button("Back", on_click=step, kwargs={"delta": -1}, icon=":material/chevron_left:", key=f"prev-{key}")
    cols[2].button("Pause" if st.session_state[play_key] else "Play", on_click=toggle_play,
                   icon=":material/pause:" if st.session_state[play_key] else ":material/play_arrow:",
                   key=f"play-{key}")
    cols[3].button("Next", on_click=step, kwargs={"delta": 1}, icon=":material/chevron_right:", key=f"next-{key}")
    cols[4].button("Final", on_click=step, kwargs={"to": last}, icon=":material/last_page:", key=f"last-{key}")
    speed = cols[5].select_slider("Speed", list(SPEEDS), value="1×", key=speed_key)
    return SPEEDS[speed] if st.session_state[play_key] else None


def advance(key: str, play_key: str, last: int) -> int:
    """In the stage fragment: while playing, move one stage on (stopping at the last); the position now."""
    if st.session_state[play_key]:
        if st.session_state[key] >= last:
            st.session_state[play_key] = False
        else:
            st.session_state[key] += 1
    return st.session_state[key]


def frame_viewer(actor: Actor, sim: TreatmentSimulation) -> None:
    if sim.renditions is not RenditionState.READY:
        _renditions_status(actor, sim)
    views = sim.views
    _restore(_view_key(sim))
    if (linked := from_url("view")) in views:
        st.session_state[_view_key(sim)] = linked
    view = views[0]
    if len(views) > 1:
        view = st.segmented_control("View", views, key=_view_key(sim),
                                    default=None if _view_key(sim) in st.session_state else views[0],
                                    format_func=view_label) or views[0]
    frames = sim.frames_for_view(view)
    key = _frame_key(sim, view)
    play_key = f"playing-{sim.id}"
    last = len(frames) - 1
    _restore(key)
    if (linked := from_url("stage")) is not None:
        positions = {str(f.stage): n for n, f in enumerate(frames)}
        if linked in positions:
            st.session_state[key] = positions[linked]
        else:
            st.info(f"The link asks for stage {md(linked)}; this version has "
                    f"{stage_range(frames[0].stage, frames[-1].stage)}. Showing the start.")
    every = stage_controls(key, play_key, f"speed-{sim.id}", last)

    images = _frame_images(actor.clinic_id, sim.id, sim.revision, view, "display", actor)
    thumbs = _frame_images(actor.clinic_id, sim.id, sim.revision, view, "thumb", actor)

    def to(position: int) -> None:
        st.session_state[key] = position

    @st.fragment(run_every=every)
    def stage() -> None:
        index = advance(key, play_key, last)
        frame = frames[index]
        if not st.session_state[play_key]:  # while playing the address bar stays put
            to_url(view=view, stage=frame.stage)
        st.session_state[_KEEP + key] = index
        st.session_state[_KEEP + _view_key(sim)] = view
        st.slider("Stage", 0, last, key=key, format="%d", disabled=last == 0)
        st.markdown(f"### {stage_of(frame.stage, frames[-1].stage)}")
        st.container(key="frame-picture").image(images[index], caption=f"{view_label(view)} · v{sim.version}",
                                                width="stretch")
        start = max(0, min(index - STRIP // 2, len(frames) - STRIP))
        strip = st.container(key="thumb-strip").columns(STRIP)
        for col, i in zip(strip, range(start, min(len(frames), start + STRIP)), strict=False):
            col.image(thumbs[i], width="stretch")
            col.button(stage_name(frames[i].stage).removeprefix("Stage "), key=f"thumb-{key}-{i}", on_click=to,
                       args=(i,), type="primary" if i == index else "secondary", width="stretch")

    stage()
