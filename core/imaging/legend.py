"""A colour-scale legend burned into an image (movement maps): a vertical bar with mm ticks on a plate.

It sits against the right edge, vertically centred, sized from the image like the captions of
`core.imaging.overlays`, so it stays clear of the corner captions, the stamp band along the bottom
and the diagonal DRAFT watermark.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from core.errors import ValidationError
from core.imaging import _check_rgb
from core.imaging.overlays import (
    PLATE_COLOR,
    PLATE_OPACITY,
    draw_text,
    line_height,
    overlay_font_px,
    shade,
    text_width,
)

Box = tuple[int, int, int, int]


def _geometry(width: int, height: int) -> tuple[int, int, int, int, int]:
    """(font size, padding, bar width, bar height, line height) for a width × height image."""
    size = overlay_font_px(width, height)
    line = line_height(size)
    return size, max(4, round(0.6 * size)), max(6, round(0.9 * size)), max(4 * line, round(0.42 * height)), line


def legend_box(width: int, height: int, title: str, labels: Sequence[str]) -> Box:
    """Where `draw_legend` draws on a width × height image: (x0, y0, x1, y1), end-exclusive."""
    size, pad, bar_w, bar_h, line = _geometry(width, height)
    label_w = max(text_width(label, size) for label in labels)
    box_w = max(text_width(title, size), bar_w + pad // 2 + 2 + label_w) + 2 * pad
    # title, a gap, half a label above the bar's top tick, the bar, half a label below its bottom tick
    box_h = pad + line + pad // 2 + line // 2 + bar_h + line // 2 + pad
    x1 = width - pad
    y0 = (height - box_h) // 2
    return x1 - box_w, y0, x1, y0 + box_h


def draw_legend(rgb: np.ndarray, colors: np.ndarray, ticks: Sequence[float], *, title: str,
                unit: str = "") -> np.ndarray:
    """A copy of `rgb` with a vertical colour bar: `colors` is the (k, 3) uint8 scale from the bottom (ticks[0])
    to the top (ticks[-1]); each tick is labelled with its value."""
    _check_rgb(rgb)
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < 2 or colors.dtype != np.uint8:
        raise ValidationError("A legend needs at least two uint8 RGB colours.")
    if len(ticks) < 2 or any(b <= a for a, b in itertools.pairwise(ticks)):
        raise ValidationError("Legend ticks must be at least two increasing values.")
    height, width = rgb.shape[:2]
    labels = [f"{value:g}{unit}" for value in ticks]
    x0, y0, x1, y1 = legend_box(width, height, title, labels)
    if x0 < width // 2 or y0 < 0:
        raise ValidationError(f"A {width} × {height} image is too small for the colour legend; export a larger size.")
    out = rgb.copy()
    size, pad, bar_w, bar_h, line = _geometry(width, height)
    shade(out, (x0, y0, x1, y1), PLATE_COLOR, PLATE_OPACITY, radius=pad)
    draw_text(out, title, (x0 + pad, y0 + pad), size)
    bar_top = y0 + pad + line + pad // 2 + line // 2
    bar_bottom = bar_top + bar_h
    bar_x = x0 + pad
    rows = bar_bottom - bar_top
    # Row r (top to bottom) shows the scale at 1 - r / rows, interpolated between the given colours.
    positions = 1.0 - (np.arange(rows) + 0.5) / rows
    stops = np.linspace(0.0, 1.0, len(colors))
    column = np.stack([np.interp(positions, stops, colors[:, c]) for c in range(3)], axis=-1)
    out[bar_top:bar_bottom, bar_x:bar_x + bar_w] = np.rint(column)[:, None, :].astype(np.uint8)
    low, high = ticks[0], ticks[-1]
    for value, label in zip(ticks, labels, strict=True):
        y = round(bar_bottom - (value - low) / (high - low) * rows)
        out[max(bar_top, y - 1):min(bar_bottom, y + 1), bar_x + bar_w:bar_x + bar_w + pad // 2] = 255
        draw_text(out, label, (bar_x + bar_w + pad // 2 + 2, y - line // 2), size)
    return out
