"""Smile-design guide lines drawn over a frame: facial midline, smile line and incisal plane.

Coordinates are normalised (0..1 of width/height, origin top-left, y down) so landmarks stored for a
frame apply to any rendition of it. Lines are thin, anti-aliased and scale with the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.errors import ValidationError
from core.imaging import _check_rgb

MIDLINE_COLOR = (0, 255, 255)  # cyan
SMILE_LINE_COLOR = (255, 255, 0)  # yellow
INCISAL_PLANE_COLOR = (255, 0, 255)  # magenta
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel line positions (1/16 px)

Point = tuple[float, float]


def _check_unit(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValidationError(f"{name} {value!r} is outside 0–1 (a fraction of the image size).")


@dataclass(frozen=True)
class GuideLandmarks:
    """Guide positions as fractions of the image: midline x, incisal plane y, and three (x, y) points
    the smile line passes through (a parabola; left to right, e.g. left canine tip, the central
    incisal edge, right canine tip). The defaults suit a frontal smile centred in the frame."""

    midline_x: float = 0.5
    incisal_y: float = 0.55
    smile_curve: tuple[Point, Point, Point] = ((0.22, 0.52), (0.5, 0.58), (0.78, 0.52))

    def __post_init__(self) -> None:
        _check_unit("midline_x", self.midline_x)
        _check_unit("incisal_y", self.incisal_y)
        curve = self.smile_curve
        if not isinstance(curve, tuple | list) or len(curve) != 3 or any(
                not isinstance(p, tuple | list) or len(p) != 2 for p in curve):
            raise ValidationError("smile_curve must be three (x, y) points.")
        for index, (x, y) in enumerate(curve):
            _check_unit(f"smile_curve point {index + 1} x", x)
            _check_unit(f"smile_curve point {index + 1} y", y)
        xs = [p[0] for p in curve]
        if not xs[0] < xs[1] < xs[2]:
            raise ValidationError(f"smile_curve points must run left to right with distinct x, got x = {xs}.")
        object.__setattr__(self, "smile_curve", tuple((float(x), float(y)) for x, y in curve))


def guide_thickness(width: int, height: int) -> int:
    """Line thickness in px: ~0.2 % of the short side, at least 1."""
    return max(1, round(min(width, height) / 500))


def smile_curve_points(landmarks: GuideLandmarks, width: int, height: int, samples: int = 64) -> np.ndarray:
    """Pixel points (N x 2, float) of the smile-line parabola between its outer landmarks."""
    (x0, y0), (x1, y1), (x2, y2) = landmarks.smile_curve
    coefficients = np.polyfit([x0, x1, x2], [y0, y1, y2], 2)  # exact through 3 points
    xs = np.linspace(x0, x2, samples)
    ys = np.polyval(coefficients, xs)
    return np.stack([xs * (width - 1), ys * (height - 1)], axis=1)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(points * (1 << _SHIFT)).astype(np.int32)


def draw_guides(rgb: np.ndarray, *, midline: bool, smile_line: bool, incisal_plane: bool,
                landmarks: GuideLandmarks | None = None) -> np.ndarray:
    """A copy of `rgb` with the requested guides: midline (cyan, vertical), smile line (yellow,
    parabola through `landmarks.smile_curve`) and incisal plane (magenta, horizontal).

    Without landmarks the defaults of `GuideLandmarks()` apply (midline at the centre, incisal
    plane at 55 % height, a gentle arc through the incisal edges).
    """
    _check_rgb(rgb)
    marks = landmarks if landmarks is not None else GuideLandmarks()
    if not isinstance(marks, GuideLandmarks):
        raise ValidationError("landmarks must be a GuideLandmarks or None.")
    out = rgb.copy()
    height, width = out.shape[:2]
    thickness = guide_thickness(width, height)
    if incisal_plane:
        y = marks.incisal_y * (height - 1)
        line = _fixed(np.array([[0.0, y], [width - 1.0, y]]))
        cv2.line(out, tuple(line[0]), tuple(line[1]), INCISAL_PLANE_COLOR, thickness, cv2.LINE_AA, _SHIFT)
    if smile_line:
        curve = _fixed(smile_curve_points(marks, width, height))
        cv2.polylines(out, [curve], False, SMILE_LINE_COLOR, thickness, cv2.LINE_AA, _SHIFT)
    if midline:
        # Drawn last: the midline is the primary reference and should stay on top where lines cross.
        x = marks.midline_x * (width - 1)
        line = _fixed(np.array([[x, 0.0], [x, height - 1.0]]))
        cv2.line(out, tuple(line[0]), tuple(line[1]), MIDLINE_COLOR, thickness, cv2.LINE_AA, _SHIFT)
    return out

