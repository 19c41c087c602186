"""Pure (Streamlit-free) renderers that turn simulation frames into files patients take home.

* `video`   — MP4 (H.264) / WebM (VP9) stage animations with crossfade or optical-flow morph, and a
  before/predicted wipe.
* `gif`     — palette-optimised animated GIF that is shrunk until it fits a byte budget.
* `pdf`     — print document (cover, comparisons, grids) with every image at >= 300 effective DPI.
* `archive` — ZIP of generated frames plus a manifest with hashes.
* `probe`   — read back what was written (used by tests and the app's self-checks).

Every renderer writes straight to the path it is given; callers pass a temporary path and rename it
into place, so a failed or cancelled render never leaves a half-written file under a real name.
Renderers never write patient data into file metadata: callers burn names into pixels via the
`overlay` callable if (and only if) they want them visible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from core.errors import StudioError, ValidationError

#: `progress(fraction, message)`: fraction in 0..1, message a short English status line.
Progress = Callable[[float, str], None]
#: `cancelled()` is polled between frames; returning True aborts the render.
Cancelled = Callable[[], bool]
#: `overlay(rgb, stage_index)` returns a new frame with captions/stamps burned in. It must not modify
#: `rgb` (it may be the caller's own source array), as `core.imaging.overlays.apply_overlays` does not.
Overlay = Callable[[np.ndarray, int], np.ndarray]


class RenderCancelled(StudioError):
    """The caller cancelled the render; the partial output file has been deleted."""


class RenderError(StudioError):
    """The encoder failed (the message carries the encoder's last error lines); nothing usable was written."""


@runtime_checkable
class FrameSource(Protocol):
    """Simulation frames in stage order: `count` stages, `get(i)` an RGB uint8 array of any size."""

    @property
    def count(self) -> int: ...

    def get(self, index: int) -> np.ndarray: ...


class ListSource:
    """A `FrameSource` over in-memory arrays (tests, benchmarks, small exports)."""

    def __init__(self, frames: list[np.ndarray] | tuple[np.ndarray, ...]) -> None:
        self._frames = tuple(frames)

    @property
    def count(self) -> int:
        return len(self._frames)

    def get(self, index: int) -> np.ndarray:
        return self._frames[index]


def check_frame(rgb: object, index: int) -> np.ndarray:
    """`rgb` if it is a non-empty RGB uint8 array, else a ValidationError naming the frame."""
    if (not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3
            or min(rgb.shape[:2]) < 1):
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValidationError(f"frame {index} must be an RGB uint8 array (height, width, 3); got {dtype} {shape}. "
                              "Re-import the simulation or check the frame source.")
    return rgb


def check_source(source: FrameSource) -> int:
    """The stage count of `source`, validated (at least one stage)."""
    count = getattr(source, "count", None)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1 or not callable(getattr(source, "get", None)):
        raise ValidationError("The frame source has no stages; a render needs at least one simulation frame.")
    return count


def call_overlay(overlay: Overlay | None, rgb: np.ndarray, stage: int) -> np.ndarray:
    """Apply `overlay` (if any) and check it kept the frame's size and type."""
    if overlay is None:
        return rgb
    out = overlay(rgb, stage)
    if not isinstance(out, np.ndarray) or out.shape != rgb.shape or out.dtype != np.uint8:
        raise ValidationError(f"The overlay for stage {stage} returned {getattr(out, 'shape', type(out).__name__)}; "
                              f"it must return an RGB uint8 array of the frame's shape {rgb.shape}.")
    return out


def report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, fraction)), message)


__all__ = ["Cancelled", "FrameSource", "ListSource", "Overlay", "Progress", "RenderCancelled", "RenderError",
           "call_overlay", "check_frame", "check_source", "report"]
