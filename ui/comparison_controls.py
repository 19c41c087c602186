"""Widget groups of the comparison builder."""

from __future__ import annotations

import streamlit as st

from core.domain import AssetKind, TreatmentSimulation
from core.imaging.align import Alignment
from core.imaging.compose import ComparisonSpec
from core.permissions import Actor
from core.services.visuals import BeforeRef
from core.stages import stage_name
from core.text import printable
from ui.context import services
from ui.deep_links import from_url, link_not_found, to_url

LAYOUT_LABELS = {"side_by_side": "Side by side", "stacked": "Stacked", "split": "Split",
                 "blend": "Blend", "grid": "Stage grid"}


def before_picker(actor: Actor, sim: TreatmentSimulation, patient_id: str) -> BeforeRef:
    """The 'before' side: the simulation's first frame, or one of the patient's photos (clinical photos
    and scanner views such as the iTero penta views)."""
    photos = services().visuals.before_candidates(actor, patient_id)
    options = ["first-frame", *[a.id for a in photos]]
    kinds = {AssetKind.PHOTO: "Photo", AssetKind.SCAN: "Scan picture"}
    labels = {"first-frame": "First frame of this simulation",
              **{a.id: f"{kinds[a.kind]} · {printable(a.label or a.createdAt.strftime('%Y-%m-%d'))}" for a in photos}}
    if (linked := from_url("before")) is not None:
        if linked in options:
            st.session_state[f"before-{sim.id}"] = linked
        else:
            link_not_found()
    choice = st.selectbox("Before", options, format_func=labels.__getitem__, key=f"before-{sim.id}")
    to_url(before=choice)
    if choice == "first-frame":
        view = sim.views[0]
        return BeforeRef(frame_index=sim.frames_for_view(view)[0].index)
    return BeforeRef(asset_id=choice)


def layout_controls(sim: TreatmentSimulation) -> ComparisonSpec:
    key = f"layout-{sim.id}"
    if (linked := from_url("layout")) in LAYOUT_LABELS:
        st.session_state[key] = linked
    layout = st.segmented_control("Layout", list(LAYOUT_LABELS), format_func=LAYOUT_LABELS.__getitem__, key=key,
                                  default=None if key in st.session_state else "side_by_side") or "side_by_side"
    to_url(layout=layout)
    divider = st.slider("Divider", 0.0, 1.0, 0.5, 0.01, key=f"divider-{sim.id}") if layout == "split" else 0.5
    opacity = st.slider("Predicted opacity", 0.0, 1.0, 0.5, 0.05, key=f"opacity-{sim.id}") if layout == "blend" else 0.5
    title = st.text_input("Title", value="", placeholder="e.g. Your predicted smile", key=f"title-{sim.id}")
    return ComparisonSpec(layout=layout, divider=divider, opacity=opacity, title=title or None)


def stage_picker(sim: TreatmentSimulation, *, grid: bool) -> tuple[int, ...]:
    """Frame indexes of the predicted side (final stage by default; several for a grid)."""
    view = sim.views[0]
    frames = sim.frames_for_view(view)
    by_stage = {f.stage: f.index for f in frames}
    stages = list(by_stage)
    if grid:
        defaults = sorted({stages[len(stages) // 3], stages[2 * len(stages) // 3], stages[-1]})
        chosen = st.multiselect("Stages", stages, default=defaults, key=f"grid-{sim.id}",
                                format_func=stage_name) or [stages[-1]]
        return tuple(by_stage[s] for s in sorted(chosen))
    key = f"pred-{sim.id}"
    if (linked := from_url("stage")) is not None and linked.isdigit() and int(linked) in by_stage:
        st.session_state[key] = int(linked)
    stage = st.select_slider("Predicted stage", stages, key=key, format_func=stage_name,
                             **({} if key in st.session_state else {"value": stages[-1]}))
    to_url(stage=stage)
    return (by_stage[stage],)


def alignment_controls(actor: Actor, sim: TreatmentSimulation, before: BeforeRef, predicted: int) -> Alignment | None:
    """Auto-align, manual scale/rotate/offset/crop, and remembering the alignment for this pair."""
    if before.frame_index is not None:
        return None  # frames of one simulation are already registered
    pair = f"{before.asset_id}-{predicted}"
    keys = {name: f"align-{name}-{pair}" for name in ("scale", "rotation", "dx", "dy", "crop", "confidence")}
    if keys["scale"] not in st.session_state:
        remembered = services().visuals.remembered_alignment(actor, sim.id, before, predicted)
        _store(keys, remembered or Alignment())
    with st.expander("Alignment", icon=":material/align_horizontal_center:"):
        if st.button("Auto-align", icon=":material/auto_fix_high:", key=f"auto-{pair}"):
            _store(keys, services().visuals.auto_alignment(actor, sim.id, before, predicted))
            st.rerun()
        confidence = st.session_state.get(keys["confidence"])
        if confidence is not None:
            if confidence >= 0.5:
                st.success(f"Automatic alignment confidence: {confidence:.0%}")
            else:
                st.warning(f"Automatic alignment is unsure ({confidence:.0%}): it matches the two pictures by "
                           "their outlines and found too few shared features (different view, lighting, "
                           "retractors or crop). Next step: set scale, rotation and shift below by hand, or "
                           "choose a before photo taken from the same view as the simulation.",
                           icon=":material/help:")
        scale = st.slider("Scale", 0.5, 2.0, step=0.01, key=keys["scale"])
        rotation = st.slider("Rotate (°)", -30.0, 30.0, step=0.1, key=keys["rotation"])
        dx = st.slider("Offset x (px)", -600.0, 600.0, step=1.0, key=keys["dx"])
        dy = st.slider("Offset y (px)", -600.0, 600.0, step=1.0, key=keys["dy"])
        crop = st.slider("Crop (% kept, centred)", 50, 100, key=keys["crop"])
        margin = (1 - crop / 100) / 2
        alignment = Alignment(scale=scale, rotation_deg=rotation, dx=dx, dy=dy,
                              crop=None if crop == 100 else (margin, margin, crop / 100, crop / 100),
                              confidence=confidence)
        if st.button("Remember for this pair", icon=":material/bookmark:", key=f"remember-{pair}"):
            services().visuals.remember_alignment(actor, sim.id, before, predicted, alignment)
            st.toast("Alignment saved for this before/predicted pair.")
    return alignment


def _store(keys: dict[str, str], alignment: Alignment) -> None:
    st.session_state[keys["scale"]] = float(min(2.0, max(0.5, alignment.scale)))
    st.session_state[keys["rotation"]] = float(min(30.0, max(-30.0, alignment.rotation_deg)))
    st.session_state[keys["dx"]] = float(min(600.0, max(-600.0, alignment.dx)))
    st.session_state[keys["dy"]] = float(min(600.0, max(-600.0, alignment.dy)))
    st.session_state[keys["crop"]] = round(alignment.crop[2] * 100) if alignment.crop else 100
    st.session_state[keys["confidence"]] = alignment.confidence
