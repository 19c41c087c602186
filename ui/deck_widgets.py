"""Widget groups of the presentation builder: slide list editing and a thumbnail preview."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from core.domain import Deck, DeckSlide
from core.permissions import Actor
from ui.context import services
from ui.text import md

KIND_LABELS = {"title": "Title", "comparison": "Before / predicted", "stage_grid": "Stage grid",
               "outcome_card": "Outcome card", "video": "Video", "photo": "Gallery photo",
               "summary": "Treatment summary", "disclaimer": "Disclaimer"}


def slide_editor(actor: Actor, deck: Deck) -> None:
    slides = list(deck.slides)
    name = st.text_input("Name", value=deck.name, key=f"deck-name-{deck.id}")
    changed = name != deck.name
    for n, slide in enumerate(slides):
        cols = st.columns([1, 4, 4, 1, 1, 1])
        cols[0].markdown(f"**{n + 1}.**")
        title = cols[1].text_input("Title", slide.title, key=f"t-{deck.id}-{n}-{deck.revision}",
                                   label_visibility="collapsed")
        caption = cols[2].text_input("Caption", slide.caption, key=f"c-{deck.id}-{n}-{deck.revision}",
                                     placeholder=KIND_LABELS[slide.kind], label_visibility="collapsed")
        if (title, caption) != (slide.title, slide.caption):
            slides[n] = replace(slide, title=title, caption=caption)
            changed = True
        if cols[3].button("↑", key=f"up-{deck.id}-{n}", disabled=n == 0):
            slides[n - 1], slides[n] = slides[n], slides[n - 1]
            _save(actor, deck, name, slides)
        if cols[4].button("↓", key=f"down-{deck.id}-{n}", disabled=n == len(slides) - 1):
            slides[n + 1], slides[n] = slides[n], slides[n + 1]
            _save(actor, deck, name, slides)
        if cols[5].button("✕", key=f"del-{deck.id}-{n}"):
            _save(actor, deck, name, slides[:n] + slides[n + 1:])
    if changed and st.button("Save titles and captions", type="primary"):
        _save(actor, deck, name, slides)
    with st.expander("Add a slide", icon=":material/add:"):
        options = services().decks.options(actor, deck.patientId)
        kind = st.selectbox("Slide type", list(KIND_LABELS), format_func=KIND_LABELS.get, key=f"add-kind-{deck.id}")
        slide = DeckSlide(kind=kind, title=KIND_LABELS[kind])
        if kind in ("comparison", "stage_grid", "outcome_card", "video"):
            sims = dict(options["simulations"])
            sim_id = st.selectbox("Approved version", list(sims), format_func=sims.get, key=f"add-sim-{deck.id}")
            slide = replace(slide, simulationId=sim_id)
        if kind == "video":
            videos = dict(options["videos"])
            slide = replace(slide, exportId=st.selectbox("Finished video", list(videos), format_func=videos.get,
                                                         key=f"add-video-{deck.id}"))
        if kind == "photo":
            photos = dict(options["photos"])
            slide = replace(slide, assetId=st.selectbox("Image", list(photos), format_func=photos.get,
                                                        key=f"add-photo-{deck.id}"))
        if st.button("Add", key=f"add-{deck.id}"):
            _save(actor, deck, name, [*slides, slide])


def _save(actor: Actor, deck: Deck, name: str, slides: list[DeckSlide]) -> None:
    services().decks.save(actor, deck.id, name=name, slides=slides)
    st.rerun()


def deck_preview(actor: Actor, deck: Deck) -> None:
    """Slide thumbnails from display renditions and gallery thumbnails (cheap enough for every rerun)."""
    st.subheader("Preview")
    cols = st.columns(4)
    for n, slide in enumerate(deck.slides):
        with cols[n % 4].container(border=True):
            image = services().decks.thumbnail(actor, slide)
            if image is not None:
                st.image(image, width="stretch")
            st.caption(f"{n + 1}. {KIND_LABELS[slide.kind]}")
            st.markdown(f"**{md(slide.title)}**")
