"""Print documents (fpdf2): cover, side-by-side comparison, captioned grid and single-image pages.

Resolution rule: every image is placed at >= `PdfSpec.min_dpi` effective DPI (pixels / placed
inches). The layout gives each image a cell; the image is fitted into it (aspect kept) and then
downscaled with area averaging to exactly the pixels that placed size needs at min_dpi (plus 0.1 %
so the 2-decimal point coordinates in the file can never round it below min_dpi). Images are never
upscaled: when a source has too few pixels for its cell, the *placed size shrinks* (centred in the
cell) until it reaches min_dpi — a smaller sharp print beats a larger soft one.

Images are embedded as baseline JPEG, quality 90 without chroma subsampling (4:4:4 keeps burned-in
captions and guide lines crisp); fpdf2 embeds the JPEG bytes as-is (DCTDecode), so a 10-page
document stays fast and small.

Metadata: only /Creator ("Treatment Simulation Studio"), fpdf2's /Producer and /CreationDate. No
title, author, subject or keywords — page text is where the caller decides what is printed.
Text uses embedded DejaVu Sans (Latin, Greek, Cyrillic), with Noto Sans CJK embedded as a fallback
when the document has Chinese, Japanese or Korean text (core/fonts.py): print shops and PDF/A get
every font embedded, and names print as written. A character neither font has prints as "?".
"""

from __future__ import annotations

import io
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from fpdf import FPDF

from core import fonts
from core.errors import ValidationError
from core.rendering import Progress, check_frame, report

PAPERS: dict[str, tuple[float, float]] = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}  # portrait mm
ORIENTATIONS = ("portrait", "landscape")
KINDS = ("cover", "comparison", "grid", "image")
CREATOR = "Treatment Simulation Studio"
JPEG_QUALITY = 90
MM_PER_INCH = 25.4
MARGIN = 15.0
GAP = 6.0
TITLE_MM, LINE_MM, CAPTION_MM, FOOTER_MM = 11.0, 5.5, 6.0, 10.0
MAX_TEXT = 200
MAX_LINES = 12
MAX_COLUMNS = 6
#: Headroom so rounding of placement coordinates (0.01 pt) can never drop below min_dpi.
_DPI_HEADROOM = 1.001


#: The family every PDF uses (registered by `use_fonts`).
FONT = "Sans"
_CJK = "SansCJK"


def use_fonts(pdf: FPDF, texts: Sequence[str]) -> None:
    """Register the embedded typefaces on `pdf`; the CJK fallback only when `texts` need it (it is large)."""
    pdf.add_font(FONT, "", str(fonts.regular()))
    pdf.add_font(FONT, "B", str(fonts.bold()))
    if any(fonts.needs_fallback(t) for t in texts):
        pdf.add_font(_CJK, "", str(fonts.cjk()))
        pdf.set_fallback_fonts([_CJK], exact_match=False)


def printable(text: str) -> str:
    """`text` as the embedded fonts can print it: NFC, and "?" for what neither typeface has."""
    main, cjk = fonts.characters(fonts.regular()), fonts.characters(fonts.cjk())
    return "".join(ch if ch.isspace() or ord(ch) in main or ord(ch) in cjk else "?"
                   for ch in unicodedata.normalize("NFC", text))


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT or any(c in value for c in "\r\n\t"):
        raise ValidationError(f"{name} must be single-line text of at most {MAX_TEXT} characters.")


@dataclass(frozen=True)
class PdfSpec:
    """Paper ("a4" 210×297 mm or "letter" 8.5×11 in), orientation and the minimum effective DPI."""

    paper: str = "a4"
    orientation: str = "portrait"
    min_dpi: int = 300

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValidationError(f"Paper {self.paper!r} is not supported; choose \"a4\" or \"letter\".")
        if self.orientation not in ORIENTATIONS:
            raise ValidationError(f"Orientation {self.orientation!r} is not supported; choose \"portrait\" or "
                                  "\"landscape\".")
        if isinstance(self.min_dpi, bool) or not isinstance(self.min_dpi, int) or not 72 <= self.min_dpi <= 1200:
            raise ValidationError(f"min_dpi {self.min_dpi!r} must be a whole number from 72 to 1200 (300 for print).")

    @property
    def page_mm(self) -> tuple[float, float]:
        """(width, height) of the page in mm, in the chosen orientation."""
        width, height = PAPERS[self.paper]
        return (width, height) if self.orientation == "portrait" else (height, width)


@dataclass(frozen=True)
class PdfPage:
    """One logical page (a grid may continue over several physical pages).

    cover: `title` large with `lines` below (clinic, simulation name, version, approval...).
    comparison: exactly two images side by side, captions below. grid: 1+ images in `columns`
    columns with captions. image: one large image (caption below). On non-cover pages `lines` are
    printed under the title as notes. `captions` may be empty or one per image.
    """

    kind: str
    title: str
    lines: tuple[str, ...] = ()
    images: tuple[np.ndarray, ...] = field(default=(), compare=False)
    captions: tuple[str, ...] = ()
    columns: int = 3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError(f"Page kind {self.kind!r} is not supported; choose one of {', '.join(KINDS)}.")
        _check_text("Page title", self.title)
        for name in ("lines", "images", "captions"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
            if not isinstance(getattr(self, name), tuple):
                raise ValidationError(f"{name} must be a tuple.")
        if len(self.lines) > MAX_LINES:
            raise ValidationError(f"A page takes at most {MAX_LINES} lines of text; got {len(self.lines)}.")
        for number, line in enumerate(self.lines, 1):
            _check_text(f"Line {number}", line)
        for number, caption in enumerate(self.captions, 1):
            _check_text(f"Caption {number}", caption)
        for index, image in enumerate(self.images):
            check_frame(image, index)
        wanted = {"cover": (0, 0), "comparison": (2, 2), "image": (1, 1), "grid": (1, 200)}[self.kind]
        if not wanted[0] <= len(self.images) <= wanted[1]:
            need = f"exactly {wanted[0]}" if wanted[0] == wanted[1] else f"{wanted[0]} to {wanted[1]}"
            raise ValidationError(f"A {self.kind} page needs {need} images; got {len(self.images)}.")
        if self.captions and len(self.captions) != len(self.images):
            raise ValidationError(f"{len(self.images)} images but {len(self.captions)} captions; give one caption per "
                                  "image or none.")
        if (isinstance(self.columns, bool) or not isinstance(self.columns, int)
                or not 1 <= self.columns <= MAX_COLUMNS):
            raise ValidationError(f"columns {self.columns!r} must be a whole number from 1 to {MAX_COLUMNS}.")


@dataclass(frozen=True)
class Placement:
    """Where an image went: page number (1-based), position/size in mm, pixels and effective DPI."""

    page: int
    x_mm: float
    y_mm: float
    width_mm: float
    height_mm: float
    width_px: int
    height_px: int

    @property
    def dpi(self) -> float:
        return min(self.width_px / (self.width_mm / MM_PER_INCH), self.height_px / (self.height_mm / MM_PER_INCH))


@dataclass(frozen=True)
class PdfResult:
    pages: int
    bytes: int
    min_effective_dpi: float | None  # None when the document has no images
    placements: tuple[Placement, ...] = ()


# --------------------------------------------------------------------------- image sizing (pure)

def place_image(image_size: tuple[int, int], cell: tuple[float, float, float, float],
                min_dpi: int) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    """((x, y, w, h) mm, (px_w, px_h)) for an image of `image_size` (w, h px) in `cell` (x, y, w, h mm).

    Fits the image into the cell keeping its aspect ratio, then picks the pixel size that reaches
    min_dpi; never more pixels than the source has — if the source is too small, the placed size
    shrinks instead (centred in the cell). See the module docstring.
    """
    src_w, src_h = image_size
    x, y, cell_w, cell_h = cell
    scale = min(cell_w / src_w, cell_h / src_h)
    width_mm = src_w * scale
    px_w = math.ceil(width_mm / MM_PER_INCH * min_dpi * _DPI_HEADROOM)
    if px_w > src_w:
        px_w = src_w
        width_mm = src_w / (min_dpi * _DPI_HEADROOM) * MM_PER_INCH
    px_w = max(1, px_w)
    px_h = max(1, round(px_w * src_h / src_w))
    height_mm = width_mm * px_h / px_w  # exact pixel aspect, so x and y DPI agree
    if height_mm > cell_h:  # rounding of px_h pushed it over: give back a sliver of width
        width_mm *= cell_h / height_mm
        height_mm = cell_h
    return (x + (cell_w - width_mm) / 2, y + (cell_h - height_mm) / 2, width_mm, height_mm), (px_w, px_h)


def _jpeg(rgb: np.ndarray, size: tuple[int, int]) -> bytes:
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise ValidationError("An image could not be encoded for the PDF.")
    return buffer.tobytes()  # OpenCV writes a bare JFIF header: no EXIF, no comments


# --------------------------------------------------------------------------- document

class _Document(FPDF):
    def __init__(self, spec: PdfSpec, footer_text: str) -> None:
        super().__init__(orientation="P", unit="mm", format=spec.page_mm)
        self.footer_text = printable(footer_text)
        self.set_auto_page_break(False)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.alias_nb_pages()

    def footer(self) -> None:
        self.set_y(-MARGIN + 2)
        self.set_font(FONT, size=8)
        self.set_text_color(100, 116, 139)
        width = self.w - 2 * MARGIN
        if self.footer_text:
            self.cell(width * 0.8, 5, _clip(self, self.footer_text, width * 0.78), align="L")
        self.set_x(self.w - MARGIN - width * 0.2)
        self.cell(width * 0.2, 5, f"{self.page_no()} / {{nb}}", align="R")


def _clip(pdf: FPDF, text: str, width: float) -> str:
    """`text` shortened with "..." to fit `width` mm in the current font."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


class _Writer:
    """Lays out PdfPages onto physical pages and records every image placement."""

    def __init__(self, spec: PdfSpec, footer: str) -> None:
        self.spec = spec
        self.pdf = _Document(spec, footer)
        self.placements: list[Placement] = []
        self.page_w, self.page_h = spec.page_mm
        self.content_w = self.page_w - 2 * MARGIN
        self.bottom = self.page_h - MARGIN - FOOTER_MM

    def _heading(self, title: str, lines: tuple[str, ...]) -> float:
        pdf = self.pdf
        pdf.add_page()
        pdf.set_xy(MARGIN, MARGIN)
        pdf.set_font(FONT, "B", 18)
        pdf.set_text_color(30, 41, 59)
        pdf.cell(self.content_w, TITLE_MM, _clip(pdf, printable(title), self.content_w), align="L")
        y = MARGIN + TITLE_MM
        pdf.set_font(FONT, size=10)
        pdf.set_text_color(71, 85, 105)
        for line in lines:
            pdf.set_xy(MARGIN, y)
            pdf.cell(self.content_w, LINE_MM, _clip(pdf, printable(line), self.content_w), align="L")
            y += LINE_MM
        return y + GAP / 2

    def _image(self, rgb: np.ndarray, cell: tuple[float, float, float, float], caption: str) -> None:
        """Place `rgb` in `cell` (caption row included at its bottom)."""
        x, y, w, h = cell
        image_cell = (x, y, w, h - (CAPTION_MM if caption else 0))
        (px, py, pw, ph), pixels = place_image((rgb.shape[1], rgb.shape[0]), image_cell, self.spec.min_dpi)
        self.pdf.image(io.BytesIO(_jpeg(rgb, pixels)), x=px, y=py, w=pw, h=ph)
        self.placements.append(Placement(self.pdf.page_no(), px, py, pw, ph, *pixels))
        if caption:
            self.pdf.set_font(FONT, size=9)
            self.pdf.set_text_color(51, 65, 85)
            self.pdf.set_xy(x, py + ph + 1)
            self.pdf.cell(w, CAPTION_MM - 1, _clip(self.pdf, printable(caption), w), align="C")

    def cover(self, page: PdfPage) -> None:
        pdf = self.pdf
        pdf.add_page()
        pdf.set_font(FONT, "B", 28)
        pdf.set_text_color(30, 41, 59)
        top = self.page_h * 0.32
        pdf.set_xy(MARGIN, top)
        pdf.cell(self.content_w, 14, _clip(pdf, printable(page.title), self.content_w), align="C")
        pdf.set_draw_color(148, 163, 184)
        pdf.set_line_width(0.4)
        pdf.line(self.page_w / 2 - 30, top + 18, self.page_w / 2 + 30, top + 18)
        pdf.set_font(FONT, size=13)
        pdf.set_text_color(51, 65, 85)
        for number, line in enumerate(page.lines):
            pdf.set_xy(MARGIN, top + 24 + number * 8)
            pdf.cell(self.content_w, 8, _clip(pdf, printable(line), self.content_w), align="C")

    def single(self, page: PdfPage) -> None:
        top = self._heading(page.title, page.lines)
        caption = page.captions[0] if page.captions else ""
        self._image(page.images[0], (MARGIN, top, self.content_w, self.bottom - top), caption)

    def comparison(self, page: PdfPage) -> None:
        top = self._heading(page.title, page.lines)
        cell_w = (self.content_w - GAP) / 2
        for index, image in enumerate(page.images):
            caption = page.captions[index] if page.captions else ""
            self._image(image, (MARGIN + index * (cell_w + GAP), top, cell_w, self.bottom - top), caption)

    def grid(self, page: PdfPage) -> None:
        columns = min(page.columns, len(page.images))
        cell_w = (self.content_w - GAP * (columns - 1)) / columns
        aspect = max(img.shape[0] / img.shape[1] for img in page.images)
        row_h = cell_w * aspect + (CAPTION_MM if page.captions else 0)
        index, first = 0, True
        while index < len(page.images):
            top = self._heading(page.title if first else f"{page.title} (continued)", page.lines if first else ())
            room = self.bottom - top
            rows = max(1, int((room + GAP) // (row_h + GAP)))
            height = min(row_h, room)  # one row taller than the page is scaled into it
            for slot in range(rows * columns):
                if index >= len(page.images):
                    break
                row, col = divmod(slot, columns)
                cell = (MARGIN + col * (cell_w + GAP), top + row * (height + GAP), cell_w, height)
                self._image(page.images[index], cell, page.captions[index] if page.captions else "")
                index += 1
            first = False


def write_pdf(pdf: FPDF, out_path: Path) -> Path:
    """Write the document; a failed write leaves no partial file behind."""
    out_path = Path(out_path)
    try:
        pdf.output(str(out_path))
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return out_path


def render_pdf(pages: Sequence[PdfPage], spec: PdfSpec, out_path: Path, *, footer: str = "",
               progress: Progress | None = None, creation_date: datetime | None = None) -> PdfResult:
    """Write `pages` as a PDF to `out_path` (see the module docstring for resolution and metadata).

    `footer` is printed at the bottom-left of every page (page numbers bottom-right).
    `creation_date` fixes /CreationDate (deterministic output for tests); default now (UTC).
    Returns the physical page count, file size, the lowest effective DPI of any image and every
    placement. Raises ValidationError for bad pages.
    """
    if not isinstance(spec, PdfSpec):
        raise ValidationError("render_pdf needs a PdfSpec.")
    if isinstance(pages, PdfPage) or not isinstance(pages, Sequence) or not pages:
        raise ValidationError("A PDF needs at least one page (a list of PdfPage).")
    if any(not isinstance(page, PdfPage) for page in pages):
        raise ValidationError("Every page must be a PdfPage.")
    _check_text("footer", footer)
    writer = _Writer(spec, footer)
    pdf = writer.pdf
    use_fonts(pdf, [footer, *(t for p in pages for t in (p.title, *p.lines, *p.captions))])
    pdf.set_creator(CREATOR)
    pdf.set_creation_date(creation_date or datetime.now(UTC))
    layouts = {"cover": writer.cover, "comparison": writer.comparison, "grid": writer.grid, "image": writer.single}
    for number, page in enumerate(pages):
        report(progress, number / len(pages), f"Laying out page {number + 1} of {len(pages)}")
        layouts[page.kind](page)
    out_path = write_pdf(pdf, out_path)
    report(progress, 1.0, "PDF ready")
    dpis = [p.dpi for p in writer.placements]
    return PdfResult(pdf.page_no(), out_path.stat().st_size, min(dpis) if dpis else None, tuple(writer.placements))
