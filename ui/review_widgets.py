"""Widget groups of the review page."""

from __future__ import annotations

import time

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.domain import TreatmentSimulation, view_label
from core.permissions import Actor
from core.stages import stage_count_text, stage_name, stage_of
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


UNDO_KEY = "review-undo"
UNDO_SECONDS = 10
#: The confirmation open now: ("approve" | "revoke", simulation id). Kept in session state so the dialog
#: stays open across reruns until answered or dismissed.
CONFIRM_KEY = "review-confirm"


def _close() -> None:
    st.session_state.pop(CONFIRM_KEY, None)


def review_actions(actor: Actor, sim: TreatmentSimulation) -> None:
    """Approve (after a confirmation showing what is approved), or request changes."""
    cols = st.columns(3)
    if cols[0].button("Approve this version…", type="primary", icon=":material/verified:", key=f"approve-{sim.id}"):
        st.session_state[CONFIRM_KEY] = ("approve", sim.id)
    if st.session_state.get(CONFIRM_KEY) == ("approve", sim.id):
        confirm_approval(actor, sim)
    request_changes(actor, sim, cols[1])
    for when, who, comment in services().review.change_requests(actor, sim.id):
        st.caption(f"{md(when)} · {md(who)}: {md(comment)}")


def request_changes(actor: Actor, sim: TreatmentSimulation, where: DeltaGenerator) -> None:
    with where.popover("Request changes", icon=":material/edit_note:"):
        comment = st.text_area("What should change?", key=f"comment-{sim.id}")
        if st.button("Send to the coordinator", key=f"send-{sim.id}"):
            services().review.request_changes(actor, sim.id, comment)
            st.toast("Change request recorded on the simulation.")


def _what(sim: TreatmentSimulation) -> str:
    views = ", ".join(view_label(v) for v in sim.views)
    return (f"**{md(sim.name)}** · version {sim.version}  \n"
            f"{stage_count_text(f.stage for f in sim.frames)} · {sim.frameCount} frames · {views}")


def _thumbnails(actor: Actor, sim: TreatmentSimulation) -> None:
    frames = sim.frames_for_view(sim.views[0])
    picks = sorted({0, len(frames) // 2, len(frames) - 1})
    images = services().simulations.frame_images(actor, sim, [frames[i] for i in picks], "thumb")
    for col, i, image in zip(st.columns(len(picks)), picks, images, strict=True):
        col.image(image, caption=stage_name(frames[i].stage), width="stretch")


@st.dialog("Approve this version?", width="medium", on_dismiss=_close)
def confirm_approval(actor: Actor, sim: TreatmentSimulation) -> None:
    st.markdown(_what(sim))
    _thumbnails(actor, sim)
    st.caption("Once approved, presenters can show and download it, and patients may see it.")
    cols = st.columns(2)
    if cols[0].button("Approve", type="primary", icon=":material/verified:", key=f"confirm-approve-{sim.id}",
                      width="stretch"):
        _close()
        services().review.approve(actor, sim.id)
        st.session_state[UNDO_KEY] = (sim.id, sim.version, sim.name, time.time())
        st.toast(f"Version {sim.version} approved. You can undo it for {UNDO_SECONDS} seconds.",
                 icon=":material/verified:")
        st.rerun()
    if cols[1].button("Cancel", key=f"cancel-approve-{sim.id}", width="stretch"):
        _close()
        st.rerun()


def undo_bar(actor: Actor) -> None:
    """For a few seconds after approving: what was approved, and Undo (revokes it again)."""
    if UNDO_KEY not in st.session_state:
        return

    @st.fragment(run_every=1.0)
    def bar() -> None:
        entry = st.session_state.get(UNDO_KEY)
        if entry is None:
            return
        sim_id, version, name, at = entry
        left = UNDO_SECONDS - (time.time() - at)
        if left <= 0:
            del st.session_state[UNDO_KEY]
            st.rerun(scope="app")
        cols = st.columns([4, 1], vertical_alignment="center")
        cols[0].success(f"Approved {md(name)} version {version}. Undo within {left:.0f} s.",
                        icon=":material/verified:")
        if cols[1].button("Undo", icon=":material/undo:", key=f"undo-{sim_id}", width="stretch"):
            del st.session_state[UNDO_KEY]
            services().review.revoke(actor, sim_id)
            st.toast(f"Approval of version {version} undone; it is waiting for review again.",
                     icon=":material/undo:")
            st.rerun(scope="app")

    bar()


@st.dialog("Revoke this approval?", width="medium", on_dismiss=_close)
def confirm_revoke(actor: Actor, sim: TreatmentSimulation) -> None:
    st.markdown(_what(sim))
    st.warning("Presenters will no longer see or download it, and presentations using it cannot be built until "
               "a version is approved again.", icon=":material/block:")
    cols = st.columns(2)
    if cols[0].button("Revoke approval", type="primary", key=f"confirm-revoke-{sim.id}", width="stretch"):
        _close()
        services().review.revoke(actor, sim.id)
        st.toast(f"Approval of version {sim.version} revoked.", icon=":material/block:")
        st.rerun()
    if cols[1].button("Keep it approved", key=f"cancel-revoke-{sim.id}", width="stretch"):
        _close()
        st.rerun()


def approved_actions(actor: Actor, sim: TreatmentSimulation) -> None:
    """An approved version: revoke (after a confirmation), or request changes."""
    if not sim.isApproved:
        st.info("This version is not approved; approve it from the waiting list.")
        return
    cols = st.columns(3)
    if cols[0].button("Revoke approval…", icon=":material/block:", key=f"revoke-{sim.id}"):
        st.session_state[CONFIRM_KEY] = ("revoke", sim.id)
    if st.session_state.get(CONFIRM_KEY) == ("revoke", sim.id):
        confirm_revoke(actor, sim)
    request_changes(actor, sim, cols[1])
