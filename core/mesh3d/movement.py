"""The movement colour scale, shared by the browser view (Plotly) and exported images (VTK + legend).

0 mm is enamel-coloured (a tooth that does not move looks like a tooth), then light blue, teal,
orange and red at the top of the scale. The top of the scale is the largest movement of the whole
treatment rounded up to half a millimetre, so one colour means the same distance at every stage.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

#: (position 0..1, RGB) stops of the scale.
STOPS: Final[tuple[tuple[float, tuple[int, int, int]], ...]] = (
    (0.0, (238, 234, 224)),
    (0.25, (142, 202, 230)),
    (0.5, (42, 157, 143)),
    (0.75, (244, 162, 97)),
    (1.0, (214, 40, 40)),
)
LEGEND_TITLE: Final = "Movement (mm)"


def scale_max(largest_mm: float) -> float:
    """Top of the colour scale for a treatment whose largest vertex movement is `largest_mm` (≥ 0.5 mm)."""
    if not math.isfinite(largest_mm) or largest_mm <= 0:
        return 0.5
    return max(0.5, math.ceil(largest_mm * 2 - 1e-9) / 2)


def ticks(vmax: float) -> list[float]:
    """Legend ticks: 0, vmax and 3–6 round values between."""
    for step in (0.1, 0.25, 0.5, 1.0, 2.0, 5.0):
        if vmax / step <= 6:
            break
    count = math.floor(vmax / step + 1e-9)
    values = [round(i * step, 2) for i in range(count + 1)]
    if abs(values[-1] - vmax) > 1e-9:
        values.append(round(vmax, 2))
    return values


def colorscale() -> list[list[float | str]]:
    """The stops as a Plotly colorscale."""
    return [[position, f"rgb({r},{g},{b})"] for position, (r, g, b) in STOPS]


def colors(values_mm: np.ndarray, vmax: float) -> np.ndarray:
    """uint8 RGB (n, 3) for movement values in mm on a 0..vmax scale (values above vmax are red)."""
    positions = np.clip(np.asarray(values_mm, np.float64) / max(vmax, 1e-9), 0.0, 1.0)
    xs = [p for p, _ in STOPS]
    channels = [np.interp(positions, xs, [c[channel] for _, c in STOPS]) for channel in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)
