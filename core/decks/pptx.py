"""PowerPoint consult decks (python-pptx): 16:9, full-resolution pictures, embedded MP4, speaker notes.

Layout (inches on a 13.333 × 7.5 slide): a thin bar in the clinic's primary colour across the top;
the title (a real title placeholder, so outlines, screen readers and slide sorters see it); the
picture area 0.6–12.73 × 1.3–6.3 where images are fitted with their aspect ratio kept (two
comparison images side by side, stage grids in the column count that shows them largest); a caption
line under it; the clinic name and footer bottom-left and the logo bottom-right.

Pictures keep their full resolution (PNG, or JPEG for photos when much smaller — see
`core.decks.assets`). Video slides embed the MP4 as a movie (`p:pic` with `a:videoFile` plus the
`p:video` timing node PowerPoint expects) with a poster frame, so the deck plays offline in
PowerPoint, Keynote and LibreOffice Impress. Only standard python-pptx constructs are used.

Metadata: python-pptx's template carries "python-pptx" / "Steve Canny" / "PowerPoint Presentation"
in its core properties; every text property is overwritten with a generic value or "" and the
created/modified dates are set to `created`, so slide text (patient names) never reaches the
metadata. The extended properties (docProps/app.xml) are written anew after saving: this application,
the widescreen 16:9 format and the real slide, notes and video counts (the template's claim of
"Microsoft Macintosh PowerPoint", 4:3 and 0 slides is replaced).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.shapes import MSO_SHAPE
from pptx.enum.text import MSO_ANCHOR, MSO_AUTO_SIZE, PP_ALIGN
from pptx.presentation import Presentation as PresentationType
from pptx.shapes.shapetree import SlideShapes
from pptx.slide import Slide
from pptx.text.text import TextFrame
from pptx.util import Emu, Pt

from core.decks.assets import encode_pictures, logo_rgba, png_bytes, poster_for, video_size
from core.decks.layout import Box, fit_box, picture_cells
from core.decks.model import DISCLAIMER, Branding, DeckResult, SlideContent, check_deck, default_notes
from core.errors import ValidationError
from core.rendering import Progress, report

SLIDE_W_EMU, SLIDE_H_EMU = 12_192_000, 6_858_000  # exactly 16:9, PowerPoint's "Widescreen"
EMU_PER_INCH = 914_400
SLIDE_W, SLIDE_H = SLIDE_W_EMU / EMU_PER_INCH, SLIDE_H_EMU / EMU_PER_INCH
MARGIN = 0.6
BAR_H = 0.12
TITLE_BOX: Box = (MARGIN, 0.3, SLIDE_W - 2 * MARGIN, 0.85)
PICTURE_AREA: Box = (MARGIN, 1.3, SLIDE_W - 2 * MARGIN, 5.0)
CAPTION_BOX: Box = (MARGIN, 6.35, SLIDE_W - 2 * MARGIN, 0.42)
FOOTER_Y, FOOTER_H = 6.92, 0.4
GAP = 0.3
LABEL_H = 0.36
LOGO_MAX_W = 2.2
COMPARISON_LABELS = ("Before", "Predicted")
#: Generic document properties: the app name, never anything from the slides.
GENERATOR = "Treatment Simulation Studio"
DOCUMENT_TITLE = "Treatment simulation consult"
_TITLE_LAYOUT = 5  # "Title Only" in python-pptx's default template
_TEMPLATE_WIDTH_EMU = 9_144_000  # the default template is 4:3 (10 in wide)
INK = RGBColor(30, 41, 59)
MUTED = RGBColor(100, 116, 139)


def _emu(value: float) -> Emu:
    return Emu(round(value * EMU_PER_INCH))


def _place(box: Box) -> tuple[Emu, Emu, Emu, Emu]:
    return _emu(box[0]), _emu(box[1]), _emu(box[2]), _emu(box[3])


# --------------------------------------------------------------------------- presentation set-up

def _widen_template(prs: PresentationType) -> None:
    """Stretch the 4:3 master and layouts horizontally so slides a presenter adds later fit 16:9."""
    factor = SLIDE_W_EMU / _TEMPLATE_WIDTH_EMU
    # Layouts first: their placeholders may inherit positions from the master, read here unscaled.
    for shapes in [layout.shapes for layout in prs.slide_layouts] + [prs.slide_master.shapes]:
        for shape in shapes:
            left, top, width, height = shape.left, shape.top, shape.width, shape.height
            if None in (left, top, width, height):
                continue
            shape.left, shape.top = Emu(round(left * factor)), top
            shape.width, shape.height = Emu(round(width * factor)), height


def _scrub_properties(prs: PresentationType, when: datetime) -> None:
    """Generic core properties only (see the module docstring); dates fixed to `when` (UTC)."""
    props = prs.core_properties
    props.author = GENERATOR
    props.last_modified_by = GENERATOR
    props.title = DOCUMENT_TITLE
    for name in ("subject", "keywords", "comments", "category", "content_status", "identifier", "language",
                 "version"):
        setattr(props, name, "")
    props.revision = 1
    props.created = when
    props.modified = when


_APP_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" \
xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">\
<TotalTime>0</TotalTime><Application>{application}</Application>\
<PresentationFormat>Widescreen (16:9)</PresentationFormat><Slides>{slides}</Slides><Notes>{slides}</Notes>\
<HiddenSlides>0</HiddenSlides><MMClips>{videos}</MMClips><ScaleCrop>false</ScaleCrop>\
<LinksUpToDate>false</LinksUpToDate><SharedDoc>false</SharedDoc><HyperlinksChanged>false</HyperlinksChanged>\
</Properties>"""


def _write_app_properties(path: Path, *, slides: int, videos: int) -> None:
    """Replace docProps/app.xml with honest values (rewrites the package; entries keep their order)."""
    from xml.sax.saxutils import escape

    body = _APP_XML.format(application=escape(GENERATOR), slides=slides, videos=videos).encode()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                data = body if item.filename == "docProps/app.xml" else source.read(item.filename)
                target.writestr(item, data, compress_type=item.compress_type)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _utc_naive(when: datetime | None) -> datetime:
    # python-pptx writes dates with a literal "Z" and ignores tzinfo: hand it UTC wall-clock time.
    if when is None:
        when = datetime.now(UTC)
    if not isinstance(when, datetime):
        raise ValidationError("created must be a datetime (or None for now).")
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.replace(microsecond=0)


# --------------------------------------------------------------------------- shapes

def _write(frame: TextFrame, paragraphs: Sequence[str], size: float, *, bold: bool = False,
           color: RGBColor = INK, align: PP_ALIGN = PP_ALIGN.LEFT) -> None:
    frame.word_wrap = True
    for index, text in enumerate(paragraphs):
        paragraph = frame.paragraphs[0] if index == 0 else frame.add_paragraph()
        paragraph.alignment = align
        run = paragraph.add_run()
        run.text = text
        run.font.size = Pt(size)
        run.font.bold = bold
        run.font.color.rgb = color


def _text_box(shapes: SlideShapes, box: Box, paragraphs: Sequence[str], size: float, *, bold: bool = False,
              color: RGBColor = INK, align: PP_ALIGN = PP_ALIGN.LEFT, shrink: bool = False) -> None:
    frame = shapes.add_textbox(*_place(box)).text_frame
    frame.vertical_anchor = MSO_ANCHOR.TOP
    if shrink:  # PowerPoint/Impress shrink overflowing text instead of running off the slide
        frame.auto_size = MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE
    _write(frame, paragraphs, size, bold=bold, color=color, align=align)


def _rectangle(shapes: SlideShapes, box: Box, color: tuple[int, int, int]) -> None:
    bar = shapes.add_shape(MSO_SHAPE.RECTANGLE, *_place(box))
    bar.fill.solid()
    bar.fill.fore_color.rgb = RGBColor(*color)
    bar.line.fill.background()
    bar.shadow.inherit = False  # the theme's default shape style would add a drop shadow


def _set_title(slide: Slide, text: str, box: Box, size: float, align: PP_ALIGN) -> None:
    title = slide.shapes.title
    if title is None:  # the layout always has one; guard against a changed template
        _text_box(slide.shapes, box, [text], size, bold=True, align=align)
        return
    title.left, title.top, title.width, title.height = _place(box)
    frame = title.text_frame
    frame.text = ""
    frame.vertical_anchor = MSO_ANCHOR.MIDDLE
    _write(frame, [text], size, bold=True, align=align)


class _Media:
    """Everything a deck embeds, prepared before any slide is built (fails early, encodes in parallel)."""

    def __init__(self, deck: tuple[SlideContent, ...], branding: Branding) -> None:
        self.posters = {index: poster_for(content) for index, content in enumerate(deck) if content.kind == "video"}
        self.video_sizes = {index: video_size(content.video_path) for index, content in enumerate(deck)
                            if content.video_path is not None}
        jobs = [(image, content.kind == "photo") for content in deck for image in content.images]
        jobs += [(poster, True) for poster in self.posters.values()]
        self.pictures = encode_pictures(jobs)
        rgba = logo_rgba(branding)
        self.logo = None if rgba is None else (png_bytes(rgba), rgba.size)

    def picture(self, rgb: np.ndarray, *, photo: bool) -> bytes:
        return self.pictures[(id(rgb), photo)]


def _picture(shapes: SlideShapes, data: bytes, size: tuple[int, int], cell: Box) -> Box:
    """Add the encoded picture (`size` px) fitted into `cell`; returns the box it occupies."""
    box = fit_box(size, cell)
    shapes.add_picture(io.BytesIO(data), *_place(box))
    return box


def _branding(slide: Slide, branding: Branding, logo: tuple[bytes, tuple[int, int]] | None) -> None:
    shapes = slide.shapes
    _rectangle(shapes, (0.0, 0.0, SLIDE_W, BAR_H), branding.primary_color)
    text = " · ".join(part for part in (branding.clinic_name, branding.footer) if part)
    logo_w = 0.0
    if logo is not None:
        data, (width, height) = logo
        logo_w = min(LOGO_MAX_W, FOOTER_H * width / height)
        box = fit_box((width, height), (SLIDE_W - MARGIN - logo_w, FOOTER_Y, logo_w, FOOTER_H))
        shapes.add_picture(io.BytesIO(data), *_place(box))
    _text_box(shapes, (MARGIN, FOOTER_Y, SLIDE_W - 2 * MARGIN - logo_w - GAP, FOOTER_H), [text], 11, color=MUTED)


# --------------------------------------------------------------------------- slide kinds

def _fitting_size(lines: Sequence[str], base: float, box: Box, *, minimum: float = 10.0) -> float:
    """The largest font size <= `base` (pt) at which `lines` should fit `box` once wrapped.

    An estimate (average glyph ~0.5 em wide, 1.2 line height), because PowerPoint and Keynote
    do not apply TEXT_TO_FIT_SHAPE until the text is edited; it keeps text on the slide.
    """
    width_pt, height_pt = box[2] * 72, box[3] * 72
    size = base
    while size > minimum:
        per_row = max(1.0, width_pt / (0.5 * size))
        rows = sum(max(1, math.ceil(len(line) / per_row)) for line in lines)
        if rows * size * 1.2 <= height_pt:
            break
        size -= 1
    return max(size, minimum)


def _title_slide(slide: Slide, content: SlideContent) -> None:
    title_box = (MARGIN, 2.2, SLIDE_W - 2 * MARGIN, 1.2)
    _set_title(slide, content.title, title_box, _fitting_size([content.title], 40, title_box), PP_ALIGN.CENTER)
    if content.lines:
        box = (MARGIN + 0.5, 3.6, SLIDE_W - 2 * MARGIN - 1.0, 3.1)
        _text_box(slide.shapes, box, content.lines, _fitting_size(content.lines, 22, box), color=MUTED,
                  align=PP_ALIGN.CENTER, shrink=True)


def _pictures(slide: Slide, content: SlideContent, media: _Media) -> None:
    images = content.images
    sizes = [(image.shape[1], image.shape[0]) for image in images]
    labelled = content.kind == "comparison" and len(images) == 2
    x, y, width, height = PICTURE_AREA
    area = (x, y, width, height - LABEL_H) if labelled else PICTURE_AREA
    for index, (image, cell) in enumerate(zip(images, picture_cells(content.kind, sizes, area, GAP), strict=True)):
        data = media.picture(image, photo=content.kind == "photo")
        box = _picture(slide.shapes, data, (image.shape[1], image.shape[0]), cell)
        if labelled:
            _text_box(slide.shapes, (cell[0], box[1] + box[3] + 0.02, cell[2], LABEL_H), [COMPARISON_LABELS[index]],
                      14, color=MUTED, align=PP_ALIGN.CENTER)


def _video(slide: Slide, content: SlideContent, media: _Media, index: int) -> None:
    """Embed the MP4 fitted into the picture area, with its poster frame."""
    path = content.video_path
    assert path is not None  # guaranteed for video slides by SlideContent
    poster = media.picture(media.posters[index], photo=True)
    box = fit_box(media.video_sizes[index], PICTURE_AREA)
    # A stream, not the path: python-pptx names the shape after the file, and file names can carry
    # patient data. The part is still stored as ppt/media/mediaN.mp4.
    slide.shapes.add_movie(io.BytesIO(path.read_bytes()), *_place(box), poster_frame_image=io.BytesIO(poster),
                           mime_type="video/mp4")


def _text_slide(slide: Slide, content: SlideContent) -> None:
    if content.kind == "disclaimer":
        _text_box(slide.shapes, (MARGIN, PICTURE_AREA[1], PICTURE_AREA[2], 1.0), [DISCLAIMER], 26, bold=True)
        x, y, width, height = PICTURE_AREA
        if content.lines:
            box = (x, y + 1.2, width, height - 1.2)
            _text_box(slide.shapes, box, content.lines, _fitting_size(content.lines, 20, box), shrink=True)
        return
    bullets = [f"•  {line}" for line in content.lines]
    _text_box(slide.shapes, PICTURE_AREA, bullets, _fitting_size(bullets, 22, PICTURE_AREA), shrink=True)


def _add_slide(prs: PresentationType, content: SlideContent, index: int, branding: Branding, media: _Media) -> None:
    slide = prs.slides.add_slide(prs.slide_layouts[_TITLE_LAYOUT])
    _branding(slide, branding, media.logo)
    if content.kind == "title":
        _title_slide(slide, content)
    else:
        _set_title(slide, content.title, TITLE_BOX, _fitting_size([content.title], 30, TITLE_BOX), PP_ALIGN.LEFT)
    if content.images:
        _pictures(slide, content, media)
    elif content.kind == "video":
        _video(slide, content, media, index)
    elif content.kind in ("summary", "disclaimer"):
        _text_slide(slide, content)
    if content.caption:
        size = _fitting_size([content.caption], 16, CAPTION_BOX)
        _text_box(slide.shapes, CAPTION_BOX, [content.caption], size, color=MUTED, align=PP_ALIGN.CENTER)
    slide.notes_slide.notes_text_frame.text = default_notes(content)


# --------------------------------------------------------------------------- entry point

def build_pptx(slides: Sequence[SlideContent], branding: Branding, out_path: Path, *,
               created: datetime | None = None, progress: Progress | None = None) -> DeckResult:
    """Write `slides` as a 16:9 PowerPoint deck to `out_path` (see the module docstring).

    `created` fixes the document's created/modified dates (deterministic output; default now, UTC).
    `progress(fraction, message)` is called before encoding, per slide and on saving. Returns the
    slide count, file size and the embedded media part names. Raises ValidationError for bad slides
    or an unreadable video; a partial file is deleted on any failure.
    """
    deck = check_deck(slides, branding)
    when = _utc_naive(created)
    prs = Presentation()
    prs.slide_width, prs.slide_height = Emu(SLIDE_W_EMU), Emu(SLIDE_H_EMU)
    _widen_template(prs)
    _scrub_properties(prs, when)
    report(progress, 0.0, "Encoding pictures")
    media = _Media(deck, branding)
    for number, content in enumerate(deck):
        report(progress, (number + 1) / (len(deck) + 2), f"Adding slide {number + 1} of {len(deck)}")
        _add_slide(prs, content, number, branding, media)
    report(progress, (len(deck) + 1) / (len(deck) + 2), "Saving the deck")
    out_path = Path(out_path)
    try:
        prs.save(str(out_path))
        _write_app_properties(out_path, slides=len(deck), videos=sum(1 for c in deck if c.video_path))
        with zipfile.ZipFile(out_path) as package:
            parts = tuple(sorted(name for name in package.namelist() if name.startswith("ppt/media/")))
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    report(progress, 1.0, "Deck ready")
    return DeckResult(len(deck), out_path.stat().st_size, parts)
