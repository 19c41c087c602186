"""Before/predicted comparison layouts rendered into an exact output size.

Geometry of `compose(images, spec, (W, H))` (all integer pixels, end-exclusive):

* Title band: rows [0, B) where B = `title_band_height(W, H)` when `spec.title` or `spec.date_text` is
  set, else B = 0. It is filled with `spec.background`; the title sits left, the date right.
* Content area: rows [B, H), full width. The gap is g = round(spec.gap * W / 1000) px.
* side_by_side: cells x in [0, L) and [L + g, W) with L = (W - g) // 2, full content height.
* stacked: cells y in [B, B + T) and [B + T + g, H) with T = (H - B - g) // 2, full width.
* grid: `cols` = grid_columns or ceil(sqrt(n)), rows = ceil(n / cols), filled row by row; the space
  left after the gaps is split as evenly as possible (the first cells get the spare pixel).
* split / blend: both images are fitted to the whole content area. split takes columns [0, D) from
  the first image and [D, W) from the second, D = round(divider * W), then draws a white line
  with a soft shadow over columns `divider_columns(W, divider)`. blend is
  cv2.addWeighted(first, 1 - opacity, second, opacity).
* Every image is `fit` into its cell: scaled to the largest size that keeps its aspect ratio
  (INTER_AREA when shrinking, INTER_CUBIC when enlarging), centred, padded with the background.
  Gaps are background too. So a red 10x10 and a blue 10x10 side by side in (40, 20) give exactly
  red columns 0-19 and blue columns 20-39.
* Labels sit on a semi-opaque plate inset from the top-left corner of each fitted image (split and
  blend: first label top-left, second top-right); "" means no label. Pixels away from labels,
  title and divider are exactly the fitted images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from core.errors import ValidationError
from core.imaging import _check_rgb
from core.imaging.overlays import Box, Color, draw_plate, draw_text, fit_text, line_height, plate_metrics, text_width

LAYOUTS = ("side_by_side", "stacked", "split", "blend", "grid")
PAIR_LAYOUTS = ("side_by_side", "stacked", "split", "blend")
MAX_GRID_IMAGES = 12
MAX_GAP = 200
MAX_TEXT_LENGTH = 120
MIN_SIDE, MAX_SIDE = 8, 12_000


def _check_line(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text, got {type(value).__name__}.")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValidationError(f"{name} is {len(value)} characters long; keep it to {MAX_TEXT_LENGTH}.")
    if any(ch in value for ch in "\r\n\t"):
        raise ValidationError(f"{name} must be a single line (remove line breaks and tabs).")


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValidationError(f"{name} {value!r} is outside 0–1.")


@dataclass(frozen=True)
class ComparisonSpec:
    """How to lay out a comparison. See the module docstring for the exact geometry.

    divider (split) is where the first image ends, as a fraction of the width; opacity (blend) is
    the weight of the second image; labels are one per image ("" = none, () = no labels at all);
    gap is in px at 1000 px output width and scales with the output; grid_columns defaults to
    ceil(sqrt(n)).
    """

    layout: str = "side_by_side"
    divider: float = 0.5
    opacity: float = 0.5
    labels: tuple[str, ...] = ("Before", "Predicted")
    title: str | None = None
    date_text: str | None = None
    gap: int = 0
    background: tuple[int, int, int] = (255, 255, 255)
    grid_columns: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValidationError(f"Layout {self.layout!r} is not supported; choose one of {', '.join(LAYOUTS)}.")
        _check_fraction("divider", self.divider)
        _check_fraction("opacity", self.opacity)
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))  # accept lists, keep the spec hashable
        if not isinstance(self.labels, tuple):
            raise ValidationError("labels must be a tuple of texts, one per image.")
        for index, label in enumerate(self.labels):
            _check_line(f"label {index + 1}", label)
        for name in ("title", "date_text"):
            if getattr(self, name) is not None:
                _check_line(name, getattr(self, name))
        if isinstance(self.gap, bool) or not isinstance(self.gap, int) or not 0 <= self.gap <= MAX_GAP:
            raise ValidationError(f"gap {self.gap!r} must be a whole number of px from 0 to {MAX_GAP}.")
        background = self.background
        if (not isinstance(background, tuple | list) or len(background) != 3
                or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255 for c in background)):
            raise ValidationError(f"background {background!r} must be three whole numbers 0–255 (R, G, B).")
        object.__setattr__(self, "background", tuple(background))
        columns = self.grid_columns
        if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int)
                                    or not 1 <= columns <= MAX_GRID_IMAGES):
            raise ValidationError(f"grid_columns {columns!r} must be None or a whole number from 1 to "
                                  f"{MAX_GRID_IMAGES}.")

    @property
    def has_title_band(self) -> bool:
        return bool(self.title) or bool(self.date_text)


# --------------------------------------------------------------------------- fitting

def fit_rect(image_size: tuple[int, int], box_size: tuple[int, int]) -> Box:
    """Where `fit` puts an image of `image_size` (w, h) inside `box_size` (w, h): (x0, y0, x1, y1)."""
    (width, height), (box_w, box_h) = image_size, box_size
    scale = min(box_w / width, box_h / height)
    fitted_w = min(box_w, max(1, round(width * scale)))
    fitted_h = min(box_h, max(1, round(height * scale)))
    x0, y0 = (box_w - fitted_w) // 2, (box_h - fitted_h) // 2
    return x0, y0, x0 + fitted_w, y0 + fitted_h


def _resized(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if (width, height) == (img.shape[1], img.shape[0]):
        return img
    shrinking = width * height < img.shape[0] * img.shape[1]
    # INTER_AREA averages (no aliasing) when shrinking; INTER_CUBIC stays sharp when enlarging.
    resized = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return resized


def _fit_into(canvas: np.ndarray, img: np.ndarray, box: Box) -> Box:
    """Fit `img` into `box` of `canvas` in place (the box must already hold the background)."""
    rect = fit_rect((img.shape[1], img.shape[0]), (box[2] - box[0], box[3] - box[1]))
    x0, y0, x1, y1 = rect[0] + box[0], rect[1] + box[1], rect[2] + box[0], rect[3] + box[1]
    canvas[y0:y1, x0:x1] = _resized(img, x1 - x0, y1 - y0)
    return x0, y0, x1, y1


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(size, tuple | list) or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or not MIN_SIDE <= v <= MAX_SIDE for v in size)):
        raise ValidationError(f"Output size {size!r} must be (width, height) in whole px from {MIN_SIDE} to "
                              f"{MAX_SIDE}.")
    return int(size[0]), int(size[1])


def _check_background(background: Sequence[int]) -> Color:
    if len(background) != 3 or any(not 0 <= int(c) <= 255 for c in background):
        raise ValidationError(f"background {background!r} must be three whole numbers 0–255 (R, G, B).")
    return int(background[0]), int(background[1]), int(background[2])


def fit(img: np.ndarray, size: tuple[int, int], background: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Letterbox `img` into `size` (w, h): keep its aspect ratio, scale to the largest size that fits,
    centre it and pad with `background`. Always returns a new array of exactly `size`."""
    _check_rgb(img)
    width, height = _check_size(tuple(size))  # type: ignore[arg-type]
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = _check_background(background)
    _fit_into(canvas, img, (0, 0, width, height))
    return canvas


# --------------------------------------------------------------------------- geometry

def title_font_px(width: int, height: int) -> int:
    """Title font size: ~2.2 % of the output width (4.5 % of the height for very wide outputs)."""
    return max(10, round(min(width * 0.022, height * 0.045)))


def title_band_height(width: int, height: int) -> int:
    """Height of the title band on a width x height output (used when a title or date is set)."""
    return round(title_font_px(width, height) * 2.0)


def label_font_px(cell_w: int, cell_h: int) -> int:
    """Label font size for a panel cell: ~3.5 % of its width, readable from thumbnails to A4."""
    return max(10, round(min(cell_w, cell_h * 1.6) * 0.035))


def divider_columns(width: int, divider: float) -> tuple[int, int]:
    """Columns [start, end) the split divider line (with its shadow) covers on a `width` px output."""
    line = max(2, round(3 * width / 1000))
    start = min(max(round(divider * width) - line // 2, 0), max(width - line, 0))
    return max(0, start - 1), min(width, start + line + 1)


def _spans(total: int, count: int, gap: int) -> list[tuple[int, int]]:
    """Split `total` px into `count` spans separated by `gap` px, as evenly as possible."""
    room = total - gap * (count - 1)
    if room < count:
        raise ValidationError(f"A gap of {gap} px leaves no room for {count} panels in {total} px; "
                              "lower the gap or enlarge the output.")
    base, extra = divmod(room, count)
    spans, start = [], 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        spans.append((start, end))
        start = end + gap
    return spans


def grid_shape(count: int, columns: int | None) -> tuple[int, int]:
    """(columns, rows) of a grid of `count` images."""
    cols = columns or math.ceil(math.sqrt(count))
    return cols, math.ceil(count / cols)


def panel_boxes(count: int, spec: ComparisonSpec, size: tuple[int, int]) -> list[Box]:
    """The cell (x0, y0, x1, y1) of each image; split and blend have one shared full-content cell."""
    width, height = _check_size(size)
    band = title_band_height(width, height) if spec.has_title_band else 0
    gap = round(spec.gap * width / 1000)
    if spec.layout == "side_by_side":
        return [(x0, band, x1, height) for x0, x1 in _spans(width, 2, gap)]
    if spec.layout == "stacked":
        return [(0, band + y0, width, band + y1) for y0, y1 in _spans(height - band, 2, gap)]
    if spec.layout in ("split", "blend"):
        return [(0, band, width, height)] * count
    cols, rows = grid_shape(count, spec.grid_columns)
    xs, ys = _spans(width, cols, gap), _spans(height - band, rows, gap)
    return [(xs[i % cols][0], band + ys[i // cols][0], xs[i % cols][1], band + ys[i // cols][1]) for i in range(count)]


# --------------------------------------------------------------------------- compose

def _check_images(images: Sequence[np.ndarray], spec: ComparisonSpec) -> None:
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
        raise ValidationError("images must be a list of RGB arrays (before first, then predicted).")
    count = len(images)
    if spec.layout in PAIR_LAYOUTS and count != 2:
        raise ValidationError(f"The {spec.layout} layout compares exactly 2 images (before, predicted); got {count}.")
    if spec.layout == "grid" and not 2 <= count <= MAX_GRID_IMAGES:
        raise ValidationError(f"A grid takes 2 to {MAX_GRID_IMAGES} images; got {count}.")
    for img in images:
        _check_rgb(img)
        if min(img.shape[:2]) < 1:
            raise ValidationError("An image to compare is empty.")
    if spec.labels and len(spec.labels) != count:
        raise ValidationError(f"{count} images but {len(spec.labels)} labels; pass one label per image "
                              "(\"\" for none) or labels=().")


def compose(images: Sequence[np.ndarray], spec: ComparisonSpec, size: tuple[int, int]) -> np.ndarray:
    """Render `images` (before first) into a new RGB array of exactly `size` (width, height).

    Raises ValidationError for a wrong image count (pair layouts take 2, grid 2-12), a label count
    that does not match, a gap that leaves no room, or an output too small for the title band.
    """
    if not isinstance(spec, ComparisonSpec):
        raise ValidationError("compose needs a ComparisonSpec.")
    _check_images(images, spec)
    width, height = _check_size(size)
    band = title_band_height(width, height) if spec.has_title_band else 0
    if band > height // 3:
        raise ValidationError(f"A {width}×{height} output is too small for a title band ({band} px); "
                              "enlarge the output or drop the title and date.")
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = spec.background
    boxes = panel_boxes(len(images), spec, (width, height))
    if spec.layout in ("split", "blend"):
        rects = _compose_overlapping(canvas, images, spec, boxes[0])
        label_size = label_font_px(width // 2, height - band)
        split_at = round(spec.divider * width) if spec.layout == "split" else None
        _draw_pair_labels(canvas, spec.labels, rects, label_size, split_at)
    else:
        rects = [_fit_into(canvas, img, box) for img, box in zip(images, boxes, strict=True)]
        for label, rect, box in zip(spec.labels, rects, boxes, strict=False):
            _draw_label(canvas, label, rect, label_font_px(box[2] - box[0], box[3] - box[1]), align="left")
    if band:
        _draw_title_band(canvas, spec, band)
    return canvas


def _compose_overlapping(canvas: np.ndarray, images: Sequence[np.ndarray], spec: ComparisonSpec,
                         box: Box) -> list[Box]:
    x0, y0, x1, y1 = box
    area = canvas[y0:y1, x0:x1]
    first, second = area.copy(), area.copy()
    rects = [_fit_into(first, images[0], (0, 0, x1 - x0, y1 - y0)),
             _fit_into(second, images[1], (0, 0, x1 - x0, y1 - y0))]
    if spec.layout == "blend":
        cv2.addWeighted(first, 1.0 - spec.opacity, second, spec.opacity, 0.0, dst=area)
    else:
        split_at = round(spec.divider * (x1 - x0))
        area[:, :split_at] = first[:, :split_at]
        area[:, split_at:] = second[:, split_at:]
        _draw_divider(area, spec.divider)
    return [(r[0] + x0, r[1] + y0, r[2] + x0, r[3] + y0) for r in rects]


def _draw_divider(area: np.ndarray, divider: float) -> None:
    start, end = divider_columns(area.shape[1], divider)
    if end - start <= 2:
        area[:, start:end] = 255
        return
    # A 1-px soft shadow either side keeps the white line visible on white teeth and light backgrounds.
    for column in (start, end - 1):
        area[:, column] = np.rint(area[:, column] * 0.55).astype(np.uint8)
    area[:, start + 1:end - 1] = 255


def _draw_label(canvas: np.ndarray, label: str, rect: Box, size: int, *, align: str) -> None:
    if not label:
        return
    margin = max(3, round(0.5 * size))
    _, pad_x, _ = plate_metrics(size)
    room = rect[2] - rect[0] - 2 * margin - 2 * pad_x
    if room < size:
        return  # the panel is too narrow for any legible label
    text, text_size = fit_text(label, size, room)
    x = rect[0] + margin if align == "left" else rect[2] - margin
    draw_plate(canvas, text, x, rect[1] + margin, text_size, align=align)


def _draw_pair_labels(canvas: np.ndarray, labels: tuple[str, ...], rects: list[Box], size: int,
                      split_at: int | None) -> None:
    if not labels:
        return
    # Each label stays on its own side of the divider (blend: its own half) so the two never overlap
    # and each names the picture it sits on.
    left, right = rects
    left_end = (left[0] + left[2]) // 2 if split_at is None else min(left[2], split_at)
    right_start = (right[0] + right[2]) // 2 if split_at is None else max(right[0], split_at)
    half_left = (left[0], left[1], left_end, left[3])
    half_right = (right_start, right[1], right[2], right[3])
    _draw_label(canvas, labels[0], half_left, size, align="left")
    _draw_label(canvas, labels[1], half_right, size, align="right")


def _draw_title_band(canvas: np.ndarray, spec: ComparisonSpec, band: int) -> None:
    width = canvas.shape[1]
    size = title_font_px(width, canvas.shape[0])
    margin = round(0.8 * size)
    red, green, blue = spec.background
    # Dark text on light backgrounds, white on dark ones (relative luminance, sRGB weights).
    color: Color = (30, 41, 59) if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 140 else (255, 255, 255)
    top = (band - line_height(size)) // 2
    date_w = 0
    if spec.date_text:
        date, date_size = fit_text(spec.date_text, round(size * 0.8), width // 2 - margin)
        date_w = text_width(date, date_size)
        draw_text(canvas, date, (width - margin - date_w, (band - line_height(date_size)) // 2), date_size, color=color)
    if spec.title:
        title, title_size = fit_text(spec.title, size, max(1, width - 2 * margin - date_w - (margin if date_w else 0)))
        draw_text(canvas, title, (margin, top + (line_height(size) - line_height(title_size)) // 2), title_size,
                  color=color)
