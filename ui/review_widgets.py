"""Widget groups of the review page."""

from __future__ import annotations

import streamlit as st

from core.domain import TreatmentSimulation
from core.permissions import Actor
from core.stages import stage_of
from ui.context import services
from ui.text import md


def version_comparison(actor: Actor, sim: TreatmentSimulation) -> None:
    """This version next to the previous one, with one shared stage slider and what changed."""
    context = services().simulations.context(actor, sim)
    older = [v for v in context.versions if v.version < sim.version]
    if not older:
        st.info("This is the first version of the series.")
        return
    previous = services().simulations.get(actor, older[0].id)
    view = sim.views[0]
    mine, theirs = sim.frames_for_view(view), previous.frames_for_view(view) or previous.frames
    stage = st.slider("Stage (both versions)", 0, max(len(mine), len(theirs)) - 1, 0, key=f"cmp-stage-{sim.id}")
    left, right = st.columns(2)
    for col, version, frames in ((left, previous, theirs), (right, sim, mine)):
        frame = frames[min(stage, len(frames) - 1)]
        col.image(services().simulations.frame_images(actor, version, [frame], "display")[0],
                  caption=f"v{version.version} · {stage_of(frame.stage, frames[-1].stage)}", width="stretch")
    st.markdown(f"**Modifications from v{previous.version}**")
    for line in services().simulations.differences(previous, sim):
        st.markdown(f"- {md(line)}")


def review_actions(actor: Actor, sim: TreatmentSimulation) -> None:
    cols = st.columns(3)
    if cols[0].button("Approve this version", type="primary", icon=":material/verified:", key=f"approve-{sim.id}"):
        services().review.approve(actor, sim.id)
        st.toast(f"v{sim.version} approved: patients may now see it.")
        st.rerun()
    with cols[1].popover("Request changes", icon=":material/edit_note:"):
        comment = st.text_area("What should change?", key=f"comment-{sim.id}")
        if st.button("Send to the coordinator", key=f"send-{sim.id}"):
            services().review.request_changes(actor, sim.id, comment)
            st.toast("Change request recorded on the simulation.")
    for when, who, comment in services().review.change_requests(actor, sim.id):
        st.caption(f"{md(when)} · {md(who)}: {md(comment)}")
