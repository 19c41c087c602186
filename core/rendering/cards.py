"""Title and end cards: a few centred lines of text on a plain background, drawn at the output size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import ValidationError
from core.imaging.overlays import OverlaySpec, apply_overlays, draw_text, fit_text, line_height, text_width

MAX_LINES = 6
MAX_LINE_LENGTH = 120
MIN_SECONDS, MAX_SECONDS = 0.5, 15.0


@dataclass(frozen=True)
class TitleCard:
    """Lines shown centred on a plain card, the first as a heading, for `seconds`.

    e.g. TitleCard(("Brightside Orthodontics", "Treatment simulation", "28 Nov 2026")). The text is
    burned into pixels only (never into file metadata), so the caller decides what may appear.
    """

    lines: tuple[str, ...]
    seconds: float = 2.0
    #: An unapproved version: the card carries the same DRAFT watermark as every frame.
    draft: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lines, list):
            object.__setattr__(self, "lines", tuple(self.lines))
        if isinstance(self.lines, str) or not isinstance(self.lines, tuple) or not 1 <= len(self.lines) <= MAX_LINES:
            raise ValidationError(f"A title card needs 1 to {MAX_LINES} lines of text as a tuple, "
                                  f"e.g. (\"Clinic\", \"Treatment simulation\").")
        for number, line in enumerate(self.lines, 1):
            if not isinstance(line, str) or len(line) > MAX_LINE_LENGTH or any(c in line for c in "\r\n\t"):
                raise ValidationError(f"Title card line {number} must be single-line text of at most "
                                      f"{MAX_LINE_LENGTH} characters.")
        seconds = self.seconds
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds)
                or not MIN_SECONDS <= seconds <= MAX_SECONDS):
            raise ValidationError(f"Title card seconds {seconds!r} must be from {MIN_SECONDS} to {MAX_SECONDS}.")


def _ink_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    red, green, blue = background
    # Dark text on light backgrounds, white on dark ones (relative luminance, sRGB weights).
    return (30, 41, 59) if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 140 else (255, 255, 255)


def render_card(card: TitleCard, size: tuple[int, int], background: tuple[int, int, int]) -> np.ndarray:
    """The card as an RGB uint8 array of `size` (w, h): heading ~7.5 % of the height, other lines ~4.5 %."""
    width, height = size
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = background
    color = _ink_color(background)
    room = round(width * 0.88)
    fitted = [fit_text(line, max(9, round(height * (0.075 if i == 0 else 0.045))), room)
              for i, line in enumerate(card.lines)]
    advances = [round(line_height(px) * 1.45) for _, px in fitted]
    top = (height - sum(advances)) // 2
    for (text, px), advance in zip(fitted, advances, strict=True):
        if text:
            draw_text(canvas, text, ((width - text_width(text, px)) // 2, top + (advance - line_height(px)) // 2),
                      px, color=color)
        top += advance
    if card.draft:
        canvas = apply_overlays(canvas, OverlaySpec(outcome_stamp=False, draft_watermark=True))
    return canvas
