"""A patient's imaging gallery: photos, scans and produced exports, with filters and downloads."""

import streamlit as st

from core.domain import AssetKind, Permission
from core.errors import StudioError
from core.services.visuals import GALLERY_KINDS, asset_facts
from ui.context import require_actor, services, show_error
from ui.downloads import file_link
from ui.paging import page_controls, page_cursor
from ui.text import md
from ui.widgets import patient_picker

KIND_LABELS = {AssetKind.PHOTO: "Photos", AssetKind.SCAN: "Scans", AssetKind.EXPORT: "Exports"}
FILE_ICONS = {"video/mp4": ":material/movie: MP4", "video/webm": ":material/movie: WebM",
              "image/gif": ":material/gif_box: GIF", "application/pdf": ":material/picture_as_pdf: PDF",
              "application/zip": ":material/folder_zip: ZIP", "model/stl": ":material/view_in_ar: STL",
              "model/ply": ":material/view_in_ar: PLY", "application/xml": ":material/description: manifest",
              "application/vnd.openxmlformats-officedocument.presentationml.presentation": ":material/slideshow: PPTX"}

actor = require_actor()
st.title("Gallery")

try:
    patient = patient_picker(actor)
    if patient is None:
        st.stop()
    kinds = st.pills("Show", list(GALLERY_KINDS), default=list(GALLERY_KINDS), selection_mode="multi",
                     format_func=KIND_LABELS.__getitem__, key="gallery-kinds")
    list_key = f"gallery:{patient.id}:{','.join(sorted(kinds or GALLERY_KINDS))}"
    page = services().visuals.gallery(actor, patient.id, tuple(kinds or GALLERY_KINDS), cursor=page_cursor(list_key))
    items = page.items
    if not items:
        st.info("Nothing in this patient's gallery matches the filter.")
    thumbs = services().visuals.thumbnails(
        actor, [i.asset.id for i in items if i.asset.contentType in ("image/png", "image/jpeg")])
    for row in range(0, len(items), 4):
        for col, item in zip(st.columns(4), items[row:row + 4], strict=False):
            asset = item.asset
            with col.container(border=True):
                if asset.id in thumbs:
                    st.image(thumbs[asset.id], width="stretch")
                else:
                    st.markdown(f"#### {FILE_ICONS.get(asset.contentType, ':material/description:')}")
                st.markdown(f"**{md(asset.label or KIND_LABELS.get(asset.kind, asset.kind.value))}**")
                facts = [*asset_facts(asset), f"{asset.createdAt:%Y-%m-%d}"]
                if item.export:
                    facts.append(f"v{asset.details.get('simulationVersion')}")
                    facts.append("approved" if asset.details.get("approved") else "draft")
                st.caption(" · ".join(md(fact) for fact in facts))
                if actor.can(Permission.IMAGING_EXPORT):
                    file_link(actor, asset, width="stretch")
    page_controls(list_key, page)
except StudioError as exc:
    show_error(exc)
