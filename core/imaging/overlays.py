"""Burned-in overlays (disclaimer stamp, draft watermark, clinic/patient/stage/date captions) and the
text primitives `compose` shares: measured text, text on a semi-opaque rounded plate.

Text uses DejaVu Sans (Latin with accents, Greek, Cyrillic, typographic punctuation) and falls back to
Noto Sans CJK for Chinese, Japanese and Korean characters (core/fonts.py), so "José Müller",
"Ελένη", "Анна" and "山田太郎" render as written. A character neither font has is transliterated
to ASCII where that keeps it readable ("ﬁ" -> "fi"), else shown as "?": never a missing-glyph box.

All geometry is a pure function of the image size and the spec (`overlay_boxes`), so callers and
tests can know exactly which pixels an overlay may change.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core import fonts
from core.errors import ValidationError
from core.imaging import _check_rgb

OUTCOME_STAMP_TEXT = "Simulated outcome — not a guarantee of results"
DRAFT_TEXT = "DRAFT — not approved"

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), end-exclusive pixel bounds
Color = tuple[int, int, int]

#: Caption plates: dark slate at 72 % opacity keeps white text above 4.5:1 contrast even on white.
PLATE_COLOR: Color = (17, 24, 39)
PLATE_OPACITY = 0.72
TEXT_COLOR: Color = (255, 255, 255)
#: The draft watermark: red with a white outline reads on light and dark images alike.
DRAFT_COLOR: Color = (200, 24, 40)
DRAFT_OPACITY = 0.5
MAX_TEXT_LENGTH = 120
#: Smallest font size (px) ever used; below this the bundled font stops being legible.
MIN_FONT_PX = 9
#: Smallest image overlays are burned into: below this the disclaimer cannot be legible.
MIN_IMAGE = (160, 90)


# --------------------------------------------------------------------------- fonts and text layout

@lru_cache(maxsize=128)
def font(size_px: int) -> ImageFont.FreeTypeFont:
    """The main typeface at `size_px` (cached)."""
    return ImageFont.truetype(str(fonts.regular()), max(1, int(size_px)))


@lru_cache(maxsize=64)
def fallback_font(size_px: int) -> ImageFont.FreeTypeFont:
    """The CJK typeface at `size_px`, for characters the main one lacks."""
    return ImageFont.truetype(str(fonts.cjk()), max(1, int(size_px)))


_REF_PX = 200  # glyph ink boxes are measured once at this size and scaled


@lru_cache(maxsize=4096)
def _has_glyph(ch: str) -> bool:
    """Whether the main typeface has `ch`."""
    return ch == " " or ord(ch) in fonts.characters(fonts.regular())


@lru_cache(maxsize=4096)
def _has_fallback_glyph(ch: str) -> bool:
    return ord(ch) in fonts.characters(fonts.cjk())


@lru_cache(maxsize=64)
def _ink(ch: str) -> tuple[float, float, float, float]:
    """Ink bounds of `ch` per px of font size, relative to (pen x, baseline): (x0, y0, x1, y1)."""
    canvas = Image.new("L", (_REF_PX * 3, _REF_PX * 3), 0)
    ImageDraw.Draw(canvas).text((_REF_PX, 2 * _REF_PX), ch, font=font(_REF_PX), anchor="ls", fill=255)
    ys, xs = np.nonzero(np.asarray(canvas) > 127)
    return ((xs.min() - _REF_PX) / _REF_PX, (ys.min() - 2 * _REF_PX) / _REF_PX,
            (xs.max() + 1 - _REF_PX) / _REF_PX, (ys.max() + 1 - 2 * _REF_PX) / _REF_PX)


# Dashes the font lacks: (advance, ink start, ink end) in em.
_DASHES = {"—": (0.92, 0.04, 0.88), "–": (0.60, 0.05, 0.55), "−": (0.60, 0.06, 0.54), "‒": (0.60, 0.05, 0.55)}
# Combining accents composed from a spacing mark the font has ("" = two dots drawn from ".").
_ACCENTS = {"\u0301": "´", "\u0300": "`", "\u0302": "^", "\u0303": "~", "\u030a": "°", "\u0308": ""}
_FOLD = {"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L",
         "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i", "€": "EUR", "£": "GBP",
         "•": "·", "„": "“", "‚": "‘", "\u00a0": " ", "\u2009": " ", "\u202f": " "}


@dataclass(frozen=True)
class _Token:
    kind: str  # "run" (plain text), "cjk" (text in the fallback typeface), "dash", "accent"
    text: str  # run text, the dash char, or the base letter
    mark: str = ""  # accent: the spacing mark ("" = diaeresis)


def _transliterate(ch: str) -> str:
    if ch in _FOLD:
        return _FOLD[ch]
    stripped = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if stripped and all(_has_glyph(c) for c in stripped):
        return stripped
    return "?"


@lru_cache(maxsize=256)
def _tokens(text: str) -> tuple[_Token, ...]:
    """Split text into plain runs the font renders natively and tokens we draw ourselves."""
    tokens: list[_Token] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            tokens.append(_Token("run", "".join(run)))
            run.clear()

    for ch in unicodedata.normalize("NFC", text):
        if _has_glyph(ch):
            run.append(ch)
            continue
        if _has_fallback_glyph(ch):
            flush()
            if tokens and tokens[-1].kind == "cjk":
                tokens[-1] = _Token("cjk", tokens[-1].text + ch)
            else:
                tokens.append(_Token("cjk", ch))
            continue
        if ch in _DASHES:
            flush()
            tokens.append(_Token("dash", ch))
            continue
        parts = unicodedata.normalize("NFD", ch)
        if len(parts) == 2 and _has_glyph(parts[0]) and parts[1] in _ACCENTS:
            flush()
            tokens.append(_Token("accent", parts[0], _ACCENTS[parts[1]]))
            continue
        run.extend(_transliterate(ch))
    flush()
    return tuple(tokens)


def _token_advance(token: _Token, size: int) -> float:
    if token.kind == "dash":
        return _DASHES[token.text][0] * size
    if token.kind == "cjk":
        return float(fallback_font(size).getlength(token.text))
    return float(font(size).getlength(token.text))


def text_width(text: str, size_px: int) -> int:
    """Rendered width of `text` in px at `size_px` (rounded up)."""
    return math.ceil(sum(_token_advance(t, size_px) for t in _tokens(text)))


def line_height(size_px: int) -> int:
    """Height of one text line (ascent + descent) at `size_px`; plates are sized from this, not the text."""
    ascent, descent = font(size_px).getmetrics()
    return ascent + descent


def _draw_tokens(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, *, fill: Color,
                 stroke: int = 0, stroke_fill: Color | None = None) -> None:
    """Draw text with its top-left (pen x, ascender line) at `xy`."""
    x, y = xy
    typeface = font(size)
    baseline = y + typeface.getmetrics()[0]
    hyphen = _ink("-")
    for token in _tokens(text):
        if token.kind == "run":
            draw.text((x, y), token.text, font=typeface, anchor="la", fill=fill, stroke_width=stroke,
                      stroke_fill=stroke_fill)
        elif token.kind == "cjk":  # on the main face's baseline, so mixed text sits on one line
            draw.text((x, baseline), token.text, font=fallback_font(size), anchor="ls", fill=fill,
                      stroke_width=stroke, stroke_fill=stroke_fill)
        elif token.kind == "dash":
            _, start, end = _DASHES[token.text]
            # Same stroke thickness and height as the font's own hyphen, so the bar matches the face.
            left, top = round(x + start * size), round(baseline + hyphen[1] * size)
            right = max(left + 1, round(x + end * size))
            bottom = max(top + 1, round(baseline + hyphen[3] * size))
            if stroke:
                draw.rectangle((left - stroke, top - stroke, right - 1 + stroke, bottom - 1 + stroke), fill=stroke_fill)
            draw.rectangle((left, top, right - 1, bottom - 1), fill=fill)
        else:
            draw.text((x, y), token.text, font=typeface, anchor="la", fill=fill, stroke_width=stroke,
                      stroke_fill=stroke_fill)
            _draw_accent(draw, (x, baseline), token, size, fill=fill, stroke=stroke, stroke_fill=stroke_fill)
        x += _token_advance(token, size)


def _draw_accent(draw: ImageDraw.ImageDraw, pen: tuple[float, float], token: _Token, size: int, *, fill: Color,
                 stroke: int, stroke_fill: Color | None) -> None:
    x, baseline = pen
    base = _ink(token.text)
    centre = x + (base[0] + base[2]) / 2 * size
    bottom = baseline + base[1] * size - 0.07 * size  # a small gap above the letter's ink
    # Marks are tiny (~0.14 em): below 18 px draw them from a larger size so they stay visible.
    mark_size = round(size * min(1.5, max(1.0, 18 / size)))
    marks = [(token.mark, 0.0)] if token.mark else [(".", -0.14), (".", 0.14)]
    for mark, offset in marks:
        ink = _ink(mark)
        pen_x = centre + offset * size - (ink[0] + ink[2]) / 2 * mark_size
        pen_y = bottom - ink[3] * mark_size
        draw.text((pen_x, pen_y), mark, font=font(mark_size), anchor="ls", fill=fill, stroke_width=stroke,
                  stroke_fill=stroke_fill)


def fit_text(text: str, size_px: int, max_width: int, min_size_px: int = MIN_FONT_PX) -> tuple[str, int]:
    """(text, size) that fits in `max_width` px: shrink the font down to `min_size_px`, then end with "…"."""
    size = size_px
    width = text_width(text, size)
    if width > max_width:
        size = max(min_size_px, math.floor(size * max_width / max(width, 1)))
        while size > min_size_px and text_width(text, size) > max_width:
            size -= 1
    if text_width(text, size) <= max_width:
        return text, size
    cut = len(text)
    while cut > 0 and text_width(text[:cut].rstrip() + "…", size) > max_width:
        cut -= 1
    return (text[:cut].rstrip() + "…") if cut else "", size


# --------------------------------------------------------------------------- plates (in place)

def _rounded_mask(width: int, height: int, radius: int) -> np.ndarray:
    """Anti-aliased rounded-rectangle coverage in 0..1 (drawn 4x larger, then area-averaged)."""
    factor = 4
    big = Image.new("L", (width * factor, height * factor), 0)
    ImageDraw.Draw(big).rounded_rectangle((0, 0, width * factor - 1, height * factor - 1),
                                          radius=radius * factor, fill=255)
    small = cv2.resize(np.asarray(big), (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def shade(canvas: np.ndarray, box: Box, color: Color, opacity: float, radius: int = 0) -> None:
    """Blend `color` at `opacity` over `box` of `canvas` in place (rounded corners when radius > 0)."""
    x0, y0, x1, y1 = _clip(box, canvas)
    if x1 <= x0 or y1 <= y0:
        return
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    alpha = np.full(roi.shape[:2], opacity, np.float32)
    if radius > 0:
        mask = _rounded_mask(box[2] - box[0], box[3] - box[1], radius)
        alpha *= mask[y0 - box[1]:y1 - box[1], x0 - box[0]:x1 - box[0]]
    alpha = alpha[..., None]
    canvas[y0:y1, x0:x1] = np.rint(roi * (1 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)


def _clip(box: Box, canvas: np.ndarray) -> Box:
    height, width = canvas.shape[:2]
    return max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])


def draw_text(canvas: np.ndarray, text: str, xy: tuple[int, int], size_px: int, *, color: Color = TEXT_COLOR) -> Box:
    """Draw `text` in place with its top-left (ascender line) at `xy`; returns the line box."""
    x, y = xy
    box = (x, y, x + text_width(text, size_px), y + line_height(size_px))
    # Accents may rise a little above the ascender line: give them room in the rendered region.
    pad = max(2, size_px // 4)
    region = _clip((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), canvas)
    if region[2] <= region[0] or region[3] <= region[1]:
        return box
    roi = Image.fromarray(np.ascontiguousarray(canvas[region[1]:region[3], region[0]:region[2]]))
    _draw_tokens(ImageDraw.Draw(roi), (x - region[0], y - region[1]), text, size_px, fill=color)
    canvas[region[1]:region[3], region[0]:region[2]] = np.asarray(roi)
    return box


def plate_metrics(size_px: int) -> tuple[int, int, int]:
    """(height, horizontal padding, vertical padding) of a one-line plate at `size_px`."""
    pad_x = max(3, round(0.55 * size_px))
    pad_y = max(2, round(0.30 * size_px))
    return line_height(size_px) + 2 * pad_y, pad_x, pad_y


def plate_box(text: str, x: int, y: int, size_px: int, *, align: str = "left", extra_width: int = 0) -> Box:
    """Where `draw_plate` puts a plate: (x, y) is its top-left ("left") or top-right ("right") corner."""
    height, pad_x, _ = plate_metrics(size_px)
    width = text_width(text, size_px) + 2 * pad_x + extra_width
    x0 = x if align == "left" else x - width
    return x0, y, x0 + width, y + height


def draw_plate(canvas: np.ndarray, text: str, x: int, y: int, size_px: int, *, align: str = "left",
               logo: np.ndarray | None = None) -> Box:
    """Draw `text` (and optionally a logo before it) on a semi-opaque rounded plate, in place.

    (x, y) is the plate's top-left corner for align="left" and its top-right for align="right".
    Returns the plate box; nothing outside it changes.
    """
    height, pad_x, pad_y = plate_metrics(size_px)
    logo_rgb = _logo_tile(logo, line_height(size_px)) if logo is not None else None
    logo_width = 0 if logo_rgb is None else logo_rgb.shape[1] + (pad_x // 2 if text else 0)
    box = plate_box(text, x, y, size_px, align=align, extra_width=logo_width)
    shade(canvas, box, PLATE_COLOR, PLATE_OPACITY, radius=round(height * 0.3))
    if logo_rgb is not None:
        _paste(canvas, logo_rgb, box[0] + pad_x, box[1] + pad_y)
    if text:
        draw_text(canvas, text, (box[0] + pad_x + logo_width, box[1] + pad_y), size_px)
    return box


def _logo_tile(logo: np.ndarray, height: int) -> np.ndarray:
    """The logo scaled to `height` px on a white rounded tile (dark logos would vanish on the dark plate)."""
    h, w = logo.shape[:2]
    inner_h = max(1, round(height * 0.84))
    inner_w = max(1, min(round(w * inner_h / h), 4 * height))
    scaled = cv2.resize(logo, (inner_w, inner_h), interpolation=cv2.INTER_AREA if inner_h < h else cv2.INTER_CUBIC)
    margin_y = (height - inner_h) // 2
    tile = np.full((height, inner_w + 2 * margin_y, 3), 255, np.uint8)
    if scaled.shape[2] == 4:
        alpha = scaled[..., 3:4].astype(np.float32) / 255.0
        region = tile[margin_y:margin_y + inner_h, margin_y:margin_y + inner_w].astype(np.float32)
        scaled = np.rint(scaled[..., :3] * alpha + region * (1 - alpha)).astype(np.uint8)
    tile[margin_y:margin_y + inner_h, margin_y:margin_y + inner_w] = scaled
    # Round the tile's corners by letting the plate show through them.
    mask = _rounded_mask(tile.shape[1], tile.shape[0], max(1, height // 5))[..., None]
    return np.dstack([tile, np.rint(mask * 255).astype(np.uint8)])


def _paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int) -> None:
    x0, y0, x1, y1 = _clip((x, y, x + rgba.shape[1], y + rgba.shape[0]), canvas)
    if x1 <= x0 or y1 <= y0:
        return
    part = rgba[y0 - y:y1 - y, x0 - x:x1 - x]
    roi = canvas[y0:y1, x0:x1]
    # Only the covered pixels, in integer math: the watermark layer is large but mostly transparent.
    covered = part[..., 3] > 0
    alpha = part[..., 3][covered].astype(np.uint16)[:, None]
    ink = part[..., :3][covered].astype(np.uint16)
    under = roi[covered].astype(np.uint16)
    roi[covered] = ((ink * alpha + under * (255 - alpha) + 127) // 255).astype(np.uint8)


# --------------------------------------------------------------------------- the overlay spec

def _check_text(name: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text or None, got {type(value).__name__}.")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValidationError(f"{name} is {len(value)} characters long; keep overlay text to {MAX_TEXT_LENGTH}.")
    if any(ch in value for ch in "\r\n\t"):
        raise ValidationError(f"{name} must be a single line (remove line breaks and tabs).")


@dataclass(frozen=True)
class OverlaySpec:
    """What to burn into an exported image. Empty strings count as "not shown".

    stage_label bottom-left, date_text bottom-right, logo + clinic_name top-left, patient_text
    top-right (the caller decides between initials and a full name: it is shown as given), the
    outcome stamp as a full-width band along the bottom edge, the draft watermark diagonally
    across the centre.
    """

    stage_label: str | None = None
    date_text: str | None = None
    clinic_name: str | None = None
    logo: np.ndarray | None = field(default=None, compare=False, hash=False)
    patient_text: str | None = None
    outcome_stamp: bool = True
    draft_watermark: bool = False
    #: The band's text when it is not a simulated outcome (e.g. "Clinical photo" on a real photo).
    stamp_text: str | None = None

    def __post_init__(self) -> None:
        for name in ("stage_label", "date_text", "clinic_name", "patient_text", "stamp_text"):
            _check_text(name, getattr(self, name))
        for name in ("outcome_stamp", "draft_watermark"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"{name} must be True or False.")
        if self.logo is not None:
            logo = self.logo
            if (not isinstance(logo, np.ndarray) or logo.dtype != np.uint8 or logo.ndim != 3
                    or logo.shape[2] not in (3, 4) or min(logo.shape[:2]) < 1):
                shape = getattr(logo, "shape", None)
                raise ValidationError(f"logo must be an RGB or RGBA uint8 array, got {type(logo).__name__} {shape}.")


@dataclass(frozen=True)
class _Item:
    name: str
    box: Box
    text: str
    size: int


def overlay_font_px(width: int, height: int) -> int:
    """Caption font size for an image: ~1.8 % of the width (3.2 % of the height for wide images)."""
    return max(11, round(min(width * 0.018, height * 0.032)))


def _layout(width: int, height: int, spec: OverlaySpec, reserved_top: int = 0) -> list[_Item]:
    if isinstance(reserved_top, bool) or not isinstance(reserved_top, int) or not 0 <= reserved_top < height // 2:
        raise ValidationError(f"reserved_top {reserved_top!r} must be a whole number of px from 0 to less than "
                              f"half the image height ({height // 2}).")
    size = overlay_font_px(width, height)
    margin = max(4, round(0.6 * size))
    plate_h, pad_x, _ = plate_metrics(size)
    items: list[_Item] = []
    bottom = height - margin
    if spec.outcome_stamp:
        text, stamp_size = fit_text(spec.stamp_text or OUTCOME_STAMP_TEXT, size, width - 2 * margin)
        band_h = plate_h
        items.append(_Item("stamp", (0, height - band_h, width, height), text, stamp_size))
        bottom = height - band_h - margin
    # Corner captions share a row: each gets at most half the width so they can never overlap.
    half = (width - 3 * margin) // 2
    lower = bottom - plate_h
    upper = reserved_top + margin
    corners = (("clinic", spec.clinic_name, "left", upper), ("patient", spec.patient_text, "right", upper),
               ("stage", spec.stage_label, "left", lower), ("date", spec.date_text, "right", lower))
    tile_w = _logo_tile(spec.logo, line_height(size)).shape[1] if spec.logo is not None else 0
    for name, value, align, top in corners:
        logo_w = tile_w if name == "clinic" else 0
        if not value and not logo_w:
            continue
        text, text_size = fit_text(value or "", size, max(1, half - 2 * pad_x - logo_w - pad_x // 2))
        if not text and not logo_w:
            continue  # no room for even "…"
        if logo_w and text:
            logo_w += pad_x // 2  # the gap between logo and name, as draw_plate lays it out
        box = plate_box(text, margin if align == "left" else width - margin, top, text_size, align=align,
                        extra_width=logo_w)
        items.append(_Item(name, box, text, text_size))
    if spec.draft_watermark:
        items.append(_Item("draft", _draft_box(width, height), DRAFT_TEXT, _draft_font_px(width, height)))
    return items


def overlay_boxes(width: int, height: int, spec: OverlaySpec, *, reserved_top: int = 0) -> dict[str, Box]:
    """Pixel boxes (x0, y0, x1, y1) each overlay of `spec` may change on a width x height image.

    Keys: "stamp", "draft", "clinic", "patient", "stage", "date" (only those that are shown).
    Pixels outside every box are left exactly as they were.
    """
    return {item.name: item.box for item in _layout(width, height, spec, reserved_top)}


def apply_overlays(rgb: np.ndarray, spec: OverlaySpec, *, reserved_top: int = 0) -> np.ndarray:
    """A copy of `rgb` with the overlays of `spec` burned in (input untouched).

    `reserved_top` px at the top are kept free of the top captions: pass
    `compose.title_band_height(w, h)` when the image is a composition with a title band.

    Text scales with the image (`overlay_font_px`: 11 px at 320 px wide, 63 px on a 300-DPI A4) and
    sits on semi-opaque rounded plates so it reads on any background. Long texts shrink, then end in
    "…", rather than overlap. See `overlay_boxes` for the exact regions.
    """
    _check_rgb(rgb)
    if not isinstance(spec, OverlaySpec):
        raise ValidationError("apply_overlays needs an OverlaySpec.")
    height, width = rgb.shape[:2]
    if width < MIN_IMAGE[0] or height < MIN_IMAGE[1]:
        raise ValidationError(f"Overlays need an image of at least {MIN_IMAGE[0]} × {MIN_IMAGE[1]} px; "
                              f"this one is {width} × {height}. Export a larger size.")
    out = rgb.copy()
    items = _layout(width, height, spec, reserved_top)
    # The watermark goes under the captions so the disclaimer and names stay readable.
    for item in sorted(items, key=lambda i: i.name != "draft"):
        if item.name == "draft":
            _draw_draft(out)
        elif item.name == "stamp":
            shade(out, item.box, PLATE_COLOR, 0.78)
            text_w = text_width(item.text, item.size)
            top = item.box[1] + (item.box[3] - item.box[1] - line_height(item.size)) // 2
            draw_text(out, item.text, ((width - text_w) // 2, top), item.size)
        else:
            align = "left" if item.name in ("clinic", "stage") else "right"
            x = item.box[0] if align == "left" else item.box[2]
            draw_plate(out, item.text, x, item.box[1], item.size, align=align,
                       logo=spec.logo if item.name == "clinic" else None)
    return out


# --------------------------------------------------------------------------- draft watermark

def _draft_font_px(width: int, height: int) -> int:
    # The text runs along the diagonal and spans ~62 % of it, clear of the corner captions.
    target = 0.62 * math.hypot(width, height)
    return max(MIN_FONT_PX, math.floor(100 * target / max(text_width(DRAFT_TEXT, 100), 1)))


def _draft_angle(width: int, height: int) -> float:
    return math.degrees(math.atan2(height, width))


def _draft_layer(width: int, height: int) -> np.ndarray:
    """The rotated watermark as an RGBA uint8 array (alpha already includes DRAFT_OPACITY)."""
    size = _draft_font_px(width, height)
    # The font has one (regular) weight: a same-colour stroke makes it bold, a wider white one outlines it.
    bold = max(1, round(size * 0.03))
    outline = bold + max(1, round(size * 0.025))
    text_w, text_h = text_width(DRAFT_TEXT, size), line_height(size)
    layer = Image.new("RGBA", (text_w + 2 * outline + 2, text_h + 2 * outline + 2), (*TEXT_COLOR, 0))
    draw = ImageDraw.Draw(layer)
    white, red = (*TEXT_COLOR, 255), (*DRAFT_COLOR, 255)
    origin = (outline + 1, outline + 1)
    _draw_tokens(draw, origin, DRAFT_TEXT, size, fill=white, stroke=outline, stroke_fill=white)  # type: ignore[arg-type]
    _draw_tokens(draw, origin, DRAFT_TEXT, size, fill=red, stroke=bold, stroke_fill=red)  # type: ignore[arg-type]
    rotated = np.array(layer.rotate(_draft_angle(width, height), resample=Image.Resampling.BICUBIC, expand=True))
    rotated[..., 3] = np.rint(rotated[..., 3] * DRAFT_OPACITY).astype(np.uint8)
    return rotated


def _draft_box(width: int, height: int) -> Box:
    layer_h, layer_w = _draft_layer_shape(width, height)
    x0, y0 = (width - layer_w) // 2, (height - layer_h) // 2
    return max(0, x0), max(0, y0), min(width, x0 + layer_w), min(height, y0 + layer_h)


@lru_cache(maxsize=16)
def _draft_layer_shape(width: int, height: int) -> tuple[int, int]:
    return _draft_layer(width, height).shape[:2]


def _draw_draft(canvas: np.ndarray) -> None:
    height, width = canvas.shape[:2]
    layer = _draft_layer(width, height)
    _paste(canvas, layer, (width - layer.shape[1]) // 2, (height - layer.shape[0]) // 2)


# --------------------------------------------------------------------------- many images, one caption set

class CaptionLayer:
    """`apply_overlays` for many images of one size whose overlays differ only in the stage label.

    Everything but the stage label (stamp band, clinic and patient plates, date, DRAFT) is drawn once,
    on black and on white: every overlay is an "over" blend, linear in the pixel below, so the two
    give each pixel's own colour and how much of the picture shows through. Each image then costs one
    blend over the rows the captions touch, plus its stage label's plate (measured at 1080p: ~3× less
    than `apply_overlays`; pixels equal to its result within rounding, ±2).
    """

    def __init__(self, width: int, height: int, spec: OverlaySpec, *, reserved_top: int = 0) -> None:
        self._spec = replace(spec, stage_label=None)
        self._reserved_top = reserved_top
        self._size = (width, height)
        black = apply_overlays(np.zeros((height, width, 3), np.uint8), self._spec, reserved_top=reserved_top)
        white = apply_overlays(np.full((height, width, 3), 255, np.uint8), self._spec, reserved_top=reserved_top)
        through = white.astype(np.int16) - black.astype(np.int16)  # 255 × (1 − coverage)
        changed = np.any((through != 255) | (black != 0), axis=2)
        self._bands: list[tuple[slice, slice, np.ndarray, np.ndarray]] = []
        rows = np.flatnonzero(changed.any(axis=1))
        for run in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if rows.size else []:
            r = slice(int(run[0]), int(run[-1]) + 1)
            cols = np.flatnonzero(changed[r].any(axis=0))
            c = slice(int(cols[0]), int(cols[-1]) + 1)
            self._bands.append((r, c, np.clip(through[r, c], 0, 255).astype(np.uint16),
                                black[r, c].astype(np.uint16)))

    def apply(self, rgb: np.ndarray, stage_label: str | None = None) -> np.ndarray:
        """A copy of `rgb` (of this layer's size) with the captions and this stage's label burned in."""
        _check_rgb(rgb)
        height, width = rgb.shape[:2]
        if (width, height) != self._size:
            raise ValidationError(f"This caption layer is for {self._size[0]} × {self._size[1]} images, "
                                  f"not {width} × {height}.")
        out = rgb.copy()
        for r, c, through, own in self._bands:
            region = out[r, c].astype(np.uint16)
            region *= through
            region += 127
            region //= 255
            region += own
            out[r, c] = np.minimum(region, 255).astype(np.uint8)
        if stage_label:
            spec = replace(self._spec, stage_label=stage_label)
            for item in _layout(width, height, spec, self._reserved_top):
                if item.name == "stage":
                    draw_plate(out, item.text, item.box[0], item.box[1], item.size, align="left")
        return out
