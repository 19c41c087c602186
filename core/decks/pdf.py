"""PDF consult decks (fpdf2): one landscape page per slide, or a notes handout with 2–4 slides a page.

Slide pages mirror the PowerPoint layout (`core.decks.pptx`): a bar in the clinic's primary colour,
the title, the picture area (same cell arrangement via `core.decks.layout`), caption line(s), and
the clinic name / footer bottom-left, the slide number in the middle and the logo bottom-right.
Layout sizes are defined for an A4-landscape page and scaled to the frame a slide is drawn in, so
Letter pages and the small handout renderings keep the same proportions.

Resolution: every image (pictures, posters, the logo) is placed with `core.rendering.pdf.place_image`
at >= 300 effective DPI and downscaled to exactly the pixels that needs (never upscaled: a small
source prints smaller, centred in its cell). Pictures are embedded with that module's JPEG encoder
(quality 90, 4:4:4); the logo as PNG so its transparency survives.

Video slides cannot play on paper: they show the poster with the caption
"Video: <title> (in the PowerPoint deck)".

Handout (`handout=True`): portrait pages of the same paper, `per_page` rows, each a small rendering
of the slide on the left (a bordered frame with the landscape page's proportions) and ruled lines
for the patient's notes on the right. Portrait because rows of landscape slides stack efficiently
and leave a wide writing column; the handout holds only the handout pages.

Metadata: /Creator ("Treatment Simulation Studio"), fpdf2's /Producer and /CreationDate only — no
title, author, subject or keywords, so slide text (patient names) never reaches the info dict.
Text uses the embedded typefaces of `core.rendering.pdf.use_fonts` (DejaVu Sans, Noto Sans CJK fallback).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fpdf import FPDF
from fpdf.enums import MethodReturnValue
from PIL import Image

from core.decks.assets import logo_rgba, png_bytes, poster_for
from core.decks.layout import Box, picture_cells
from core.decks.model import DISCLAIMER, Branding, DeckResult, SlideContent, check_deck
from core.errors import ValidationError
from core.rendering import Progress, report
from core.rendering.pdf import CREATOR, FONT, PdfSpec, _clip, _jpeg, place_image, printable, use_fonts, write_pdf

PER_PAGE = (2, 3, 4)
MIN_DPI = 300
#: Layout reference frame (mm): sizes below are for an A4-landscape page and scale with the frame.
REF_W, REF_H = 297.0, 210.0
MARGIN, BAR_H = 12.0, 3.0
TITLE_Y, TITLE_H, TITLE_PT = 8.0, 12.0, 20.0
AREA_TOP = 24.0
CAPTION_H, CAPTION_PT = 6.0, 10.0
LABEL_H, LABEL_PT = 5.0, 9.0
FOOTER_H, FOOTER_PT = 7.0, 8.0
GAP = 6.0
LOGO_W = 32.0
COMPARISON_LABELS = ("Before", "Predicted")
INK, MUTED, BODY, RULE = (30, 41, 59), (100, 116, 139), (51, 65, 85), (203, 213, 225)
HANDOUT_MARGIN, HANDOUT_TOP, HANDOUT_GAP, RULE_SPACING = 15.0, 24.0, 8.0, 8.0


def _check_options(paper: str, handout: bool, per_page: int) -> None:
    PdfSpec(paper=paper)  # validates the paper name with the print module's message
    if not isinstance(handout, bool):
        raise ValidationError("handout must be True or False.")
    if isinstance(per_page, bool) or per_page not in PER_PAGE:
        raise ValidationError(f"per_page {per_page!r} is not supported; a handout takes 2, 3 or 4 slides per page.")


def _aware(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    if not isinstance(when, datetime):
        raise ValidationError("created must be a datetime (or None for now).")
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class _SlideWriter:
    """Draws slides into frames (whole pages or handout cells) of one fpdf2 document."""

    def __init__(self, pdf: FPDF, branding: Branding) -> None:
        self.pdf = pdf
        self.branding = branding
        self.logo = logo_rgba(branding)
        self._logos: dict[tuple[int, int], bytes] = {}  # equal bytes -> fpdf2 embeds the logo once
        self.frame: Box = (0.0, 0.0, REF_W, REF_H)
        self.scale = 1.0

    # ------------------------------------------------------------------ primitives (frame units)

    def _box(self, x: float, y: float, w: float, h: float) -> Box:
        fx, fy, _, _ = self.frame
        return fx + x * self.scale, fy + y * self.scale, w * self.scale, h * self.scale

    def _font(self, size: float, style: str = "", color: tuple[int, int, int] = INK) -> None:
        self.pdf.set_font(FONT, style, size * self.scale)
        self.pdf.set_text_color(*color)

    def _cell(self, box: Box, text: str, *, align: str = "L") -> None:
        x, y, w, h = box
        self.pdf.set_xy(x, y)
        self.pdf.cell(w, h, _clip(self.pdf, printable(text), w), align=align)

    def _wrapped(self, text: str, width: float) -> list[str]:
        lines = self.pdf.multi_cell(width, text=printable(text), dry_run=True, output=MethodReturnValue.LINES)
        return [str(line) for line in lines] or [""]

    def _paragraphs(self, lines: Sequence[str], box: Box, line_h: float, *, bullet: bool = False) -> float:
        """Wrap `lines` into `box` (page mm); text that would overflow is cut with "...". Returns the end y."""
        x, y, w, h = box
        indent = self.pdf.get_string_width("\u00b7  ") if bullet else 0.0
        rows: list[tuple[bool, str]] = []
        for line in lines:
            rows += [(index == 0, part) for index, part in enumerate(self._wrapped(line, w - indent))]
        fits = max(0, int(h // line_h))
        if len(rows) > fits:
            rows = rows[:fits]
            if rows:
                rows[-1] = (rows[-1][0], _clip(self.pdf, rows[-1][1] + "...", w - indent))
        for first, text in rows:
            if bullet and first:
                self.pdf.set_xy(x, y)
                self.pdf.cell(indent, line_h, "\u00b7")
            self.pdf.set_xy(x + indent, y)
            self.pdf.cell(w - indent, line_h, text)
            y += line_h
        return y

    def _image(self, rgb: np.ndarray, cell: Box) -> Box:
        (x, y, w, h), pixels = place_image((rgb.shape[1], rgb.shape[0]), cell, MIN_DPI)
        self.pdf.image(io.BytesIO(_jpeg(rgb, pixels)), x=x, y=y, w=w, h=h)
        return x, y, w, h

    def _logo(self, cell: Box) -> None:
        if self.logo is None:
            return
        (x, y, w, h), pixels = place_image(self.logo.size, cell, MIN_DPI)
        if pixels not in self._logos:
            resized = self.logo if pixels == self.logo.size else self.logo.resize(pixels, Image.Resampling.LANCZOS)
            self._logos[pixels] = png_bytes(resized)
        self.pdf.image(io.BytesIO(self._logos[pixels]), x=x, y=y, w=w, h=h)

    # ------------------------------------------------------------------ slide parts

    def _chrome(self, number: int, total: int) -> None:
        fx, fy, fw, _ = self.frame
        self.pdf.set_fill_color(*self.branding.primary_color)
        self.pdf.rect(fx, fy, fw, BAR_H * self.scale, style="F")
        width = self.frame[2] / self.scale
        footer_y = self.frame[3] / self.scale - MARGIN + 2
        text = " · ".join(part for part in (self.branding.clinic_name, self.branding.footer) if part)
        self._font(FOOTER_PT, color=MUTED)
        self._cell(self._box(MARGIN, footer_y, width / 2 - MARGIN - 12, FOOTER_H), text)
        self._cell(self._box(width / 2 - 12, footer_y, 24, FOOTER_H), f"{number} / {total}", align="C")
        self._logo(self._box(width - MARGIN - LOGO_W, footer_y, LOGO_W, FOOTER_H))

    def _area(self, captions: int) -> Box:
        """The picture/text area in frame units, leaving room for `captions` caption rows."""
        width, height = self.frame[2] / self.scale, self.frame[3] / self.scale
        bottom = height - MARGIN - 1 - captions * CAPTION_H
        return MARGIN, AREA_TOP, width - 2 * MARGIN, bottom - AREA_TOP

    def _captions(self, captions: Sequence[str]) -> None:
        x, y, w, h = self._area(len(captions))
        self._font(CAPTION_PT, color=BODY)
        for index, text in enumerate(captions):
            self._cell(self._box(x, y + h + index * CAPTION_H, w, CAPTION_H), text, align="C")

    def _title_page(self, content: SlideContent) -> None:
        width, height = self.frame[2] / self.scale, self.frame[3] / self.scale
        top = height * 0.32
        self._font(30, "B")
        self._cell(self._box(MARGIN, top, width - 2 * MARGIN, 14), content.title, align="C")
        self.pdf.set_draw_color(*self.branding.primary_color)
        self.pdf.set_line_width(0.5 * self.scale)
        x0, y0, _, _ = self._box(width / 2 - 30, top + 18, 0, 0)
        self.pdf.line(x0, y0, x0 + 60 * self.scale, y0)
        self._font(14, color=BODY)
        for number, line in enumerate(content.lines):
            self._cell(self._box(MARGIN, top + 24 + number * 8, width - 2 * MARGIN, 8), line, align="C")

    def _pictures(self, content: SlideContent, images: Sequence[np.ndarray], captions: Sequence[str]) -> None:
        labelled = content.kind == "comparison" and len(images) == 2
        x, y, w, h = self._area(len(captions))
        area = self._box(x, y, w, h - (LABEL_H if labelled else 0))
        sizes = [(image.shape[1], image.shape[0]) for image in images]
        cells = picture_cells(content.kind, sizes, area, GAP * self.scale)
        for index, (image, cell) in enumerate(zip(images, cells, strict=True)):
            _, top, _, height = self._image(image, cell)
            if labelled:
                self._font(LABEL_PT, color=MUTED)
                self.pdf.set_xy(cell[0], top + height + 0.5 * self.scale)
                self.pdf.cell(cell[2], LABEL_H * self.scale, COMPARISON_LABELS[index], align="C")

    def _text(self, content: SlideContent) -> None:
        area = self._box(*self._area(1 if content.caption else 0))
        x, y, w, h = area
        if content.kind == "disclaimer":
            self._font(18, "B")
            end = self._paragraphs([DISCLAIMER], area, 9 * self.scale)
            self._font(13, color=BODY)
            self._paragraphs(content.lines, (x, end + 4 * self.scale, w, h - (end - y) - 4 * self.scale),
                             6.5 * self.scale)
            return
        self._font(14, color=BODY)
        self._paragraphs(content.lines, area, 7.5 * self.scale, bullet=True)

    def draw(self, content: SlideContent, frame: Box, number: int, total: int) -> None:
        """Draw slide `number` of `total` into `frame` (page mm) of the current page."""
        self.frame = frame
        self.scale = min(frame[2] / REF_W, frame[3] / REF_H)
        self._chrome(number, total)
        if content.kind == "title":
            self._title_page(content)
            return
        self._font(TITLE_PT, "B")
        self._cell(self._box(MARGIN, TITLE_Y, frame[2] / self.scale - 2 * MARGIN, TITLE_H), content.title)
        captions = [content.caption] if content.caption else []
        if content.kind == "video":
            captions.insert(0, f"Video: {content.title} (in the PowerPoint deck)")
            self._pictures(content, [poster_for(content)], captions)
        elif content.images:
            self._pictures(content, content.images, captions)
        else:
            self._text(content)
        self._captions(captions)


# --------------------------------------------------------------------------- documents

def _document(page_mm: tuple[float, float]) -> FPDF:
    pdf = FPDF(orientation="P", unit="mm", format=page_mm)
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.set_creator(CREATOR)
    return pdf


def _slides(writer: _SlideWriter, deck: tuple[SlideContent, ...], page_mm: tuple[float, float],
            progress: Progress | None) -> None:
    for number, content in enumerate(deck, 1):
        report(progress, (number - 1) / (len(deck) + 1), f"Laying out slide {number} of {len(deck)}")
        writer.pdf.add_page()
        writer.draw(content, (0.0, 0.0, *page_mm), number, len(deck))


def _ruled_lines(pdf: FPDF, box: Box) -> None:
    x, y, w, h = box
    pdf.set_draw_color(*RULE)
    pdf.set_line_width(0.2)
    line_y = y + RULE_SPACING
    while line_y <= y + h:
        pdf.line(x, line_y, x + w, line_y)
        line_y += RULE_SPACING


def _handout(writer: _SlideWriter, deck: tuple[SlideContent, ...], page_mm: tuple[float, float], *, per_page: int,
             slide_aspect: float, progress: Progress | None) -> None:
    pdf, branding = writer.pdf, writer.branding
    page_w, page_h = page_mm
    content_w = page_w - 2 * HANDOUT_MARGIN
    row_h = (page_h - HANDOUT_TOP - HANDOUT_MARGIN - (per_page - 1) * HANDOUT_GAP) / per_page
    slide_w = min(content_w * 0.55, row_h * slide_aspect)
    slide_h = slide_w / slide_aspect
    pages = math.ceil(len(deck) / per_page)
    for number, content in enumerate(deck):
        report(progress, number / (len(deck) + 1), f"Laying out slide {number + 1} of {len(deck)}")
        slot = number % per_page
        if slot == 0:
            pdf.add_page()
            pdf.set_fill_color(*branding.primary_color)
            pdf.rect(0, 0, page_w, BAR_H, style="F")
            pdf.set_font(FONT, "B", 12)
            pdf.set_text_color(*INK)
            pdf.set_xy(HANDOUT_MARGIN, 9)
            pdf.cell(content_w * 0.7, 7, _clip(pdf, printable(branding.clinic_name), content_w * 0.7))
            pdf.set_font(FONT, "", 9)
            pdf.set_text_color(*MUTED)
            pdf.set_xy(page_w - HANDOUT_MARGIN - content_w * 0.3, 9)
            pdf.cell(content_w * 0.3, 7, f"Page {number // per_page + 1} / {pages}", align="R")
        top = HANDOUT_TOP + slot * (row_h + HANDOUT_GAP)
        frame = (HANDOUT_MARGIN, top, slide_w, slide_h)
        writer.draw(content, frame, number + 1, len(deck))
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.3)
        pdf.rect(*frame)  # the slide's edge: its white background would otherwise merge with the page
        lines_x = HANDOUT_MARGIN + slide_w + HANDOUT_GAP
        _ruled_lines(pdf, (lines_x, top, page_w - HANDOUT_MARGIN - lines_x, row_h))


def build_pdf(slides: Sequence[SlideContent], branding: Branding, out_path: Path, *, paper: str = "a4",
              handout: bool = False, per_page: int = 3, created: datetime | None = None,
              progress: Progress | None = None) -> DeckResult:
    """Write `slides` as a PDF to `out_path`: one landscape page per slide, or a portrait handout.

    paper is "a4" (297 × 210 mm landscape) or "letter" (11 × 8.5 in landscape). With handout=True
    the PDF holds ceil(len(slides) / per_page) portrait pages of `per_page` (2, 3 or 4) slide
    renderings with ruled note lines. `created` fixes /CreationDate (default now, UTC). Returns the
    slide count, file size and no media (see the module docstring). Raises ValidationError for bad
    input; a partial file is deleted on any failure.
    """
    deck = check_deck(slides, branding)
    _check_options(paper, handout, per_page)
    landscape = PdfSpec(paper=paper, orientation="landscape").page_mm
    page_mm = PdfSpec(paper=paper, orientation="portrait").page_mm if handout else landscape
    pdf = _document(page_mm)
    pdf.set_creation_date(_aware(created))
    use_fonts(pdf, [branding.clinic_name, branding.footer,
                    *(t for c in deck for t in (c.title, c.caption, c.notes, *c.lines))])
    writer = _SlideWriter(pdf, branding)
    if handout:
        _handout(writer, deck, page_mm, per_page=per_page, slide_aspect=landscape[0] / landscape[1],
                 progress=progress)
    else:
        _slides(writer, deck, page_mm, progress)
    report(progress, len(deck) / (len(deck) + 1), "Saving the PDF")
    out_path = write_pdf(pdf, out_path)
    report(progress, 1.0, "PDF ready")
    return DeckResult(len(deck), out_path.stat().st_size)
