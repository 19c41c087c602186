"""Deterministic synthetic inputs for tests and benchmarks: screen recordings and iTero exports.

Everything here is fictional and drawn procedurally; no patient data is involved.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from core.errors import ValidationError

_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".mkv": "matroska"}
_NOISE_PATTERNS = 4
_NOISE_AMPLITUDE = 3


# --- screen recordings ----------------------------------------------------------------------


def render_stage_still(stage: int, *, stages: int, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """The noise-free RGB picture shown while stage `stage` (1-based) of `stages` is held."""
    _check_size(size)
    if not 1 <= stage <= stages:
        raise ValidationError(f"stage {stage} is outside 1–{stages}.")
    return _draw(_background(size), _stage_position(stage, stages), stage)


def make_test_recording(
    path: Path,
    *,
    stages: int,
    size: tuple[int, int] = (640, 360),
    fps: int = 30,
    hold_s: float = 0.8,
    move_s: float = 0.5,
    codec: str = "libx264",
    preset: str = "veryfast",
    seed: int = 0,
) -> None:
    """Write a screen-recording-like video: each stage's still (`render_stage_still`) held for
    `hold_s`, joined by a smooth `move_s` movement to the next, with light per-frame noise.

    The container follows the suffix (.mp4, .mov, .webm, .mkv). Output is deterministic for equal
    arguments. `preset` is the x264 speed preset (veryfast keeps CABAC and B-frames, like real
    screen recorders).
    """
    _check_size(size)
    if stages < 1 or fps < 1 or hold_s <= 0 or move_s < 0:
        raise ValidationError("stages and fps must be ≥ 1, hold_s > 0 and move_s ≥ 0.")
    container_format = _CONTAINERS.get(path.suffix.lower())
    if container_format is None:
        raise ValidationError(f"Use one of {', '.join(_CONTAINERS)} as the recording's suffix.")
    width, height = size
    background = _background(size)
    rng = np.random.default_rng(seed)
    noise = [rng.integers(-_NOISE_AMPLITUDE, _NOISE_AMPLITUDE + 1, (height, width, 3), np.int16) for _ in range(4)]
    positive = [np.clip(pattern, 0, None).astype(np.uint8) for pattern in noise]
    negative = [np.clip(-pattern, 0, None).astype(np.uint8) for pattern in noise]
    hold_frames = max(1, round(hold_s * fps))
    move_frames = round(move_s * fps)

    def frames() -> list[tuple[float, int]]:
        plan: list[tuple[float, int]] = []
        for stage in range(1, stages + 1):
            plan += [(_stage_position(stage, stages), stage)] * hold_frames
            if stage < stages:
                start, end = _stage_position(stage, stages), _stage_position(stage + 1, stages)
                for step in range(1, move_frames + 1):
                    t = step / (move_frames + 1)
                    eased = t * t * (3 - 2 * t)
                    plan.append((start + (end - start) * eased, stage if t < 0.5 else stage + 1))
        return plan

    with av.open(str(path), "w", format=container_format) as output:
        stream = output.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": preset, "crf": "20"}
        for index, (position, label) in enumerate(frames()):
            picture = _draw(background, position, label)
            k = index % _NOISE_PATTERNS
            cv2.add(picture, positive[k], dst=picture)
            cv2.subtract(picture, negative[k], dst=picture)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValidationError(f"size {size} must be even and at least 64×64 (H.264 needs even sizes).")


def _stage_position(stage: int, stages: int) -> float:
    """Horizontal position (0..1 of the width) of the arch at a stage."""
    return 0.3 + 0.4 * (stage - 1) / max(stages - 1, 1)


def _background(size: tuple[int, int]) -> np.ndarray:
    width, height = size
    ramp = np.linspace(40, 110, height, dtype=np.float32)[:, None]
    image = np.empty((height, width, 3), np.uint8)
    image[:, :, 0] = ramp.astype(np.uint8)
    image[:, :, 1] = (ramp * 0.9 + 10).astype(np.uint8)
    image[:, :, 2] = (ramp * 0.6 + 60).astype(np.uint8)
    step = max(16, width // 24)
    for x in range(0, width, step):
        cv2.line(image, (x, 0), (x, height - 1), (70, 80, 100), 1)
    for y in range(0, height, step):
        cv2.line(image, (0, y), (width - 1, y), (70, 80, 100), 1)
    return image


def _draw(background: np.ndarray, position: float, label: int) -> np.ndarray:
    """The arch (a crescent of "teeth") centred at `position` of the width, and a stage label."""
    height, width = background.shape[:2]
    picture = background.copy()
    scale = height / 360
    shift = 4  # sub-pixel drawing so the movement is smooth
    factor = 1 << shift
    cx, cy = position * width, height * 0.55
    radius_x, radius_y = width * 0.16, height * 0.28
    for tooth in range(14):
        angle = math.pi * (0.08 + 0.84 * tooth / 13)
        x = cx - radius_x * math.cos(angle)
        y = cy - radius_y * math.sin(angle) + radius_y * 0.5
        size = (8 + 3 * math.sin(angle)) * scale
        center = (round(x * factor), round(y * factor))
        axes = (round(size * factor), round(size * 1.3 * factor))
        cv2.ellipse(picture, center, axes, 0, 0, 360, (235, 232, 220), -1, cv2.LINE_AA, shift)
        cv2.ellipse(picture, center, axes, 0, 0, 360, (150, 140, 120), max(1, round(scale)), cv2.LINE_AA, shift)
    cv2.putText(
        picture, f"Stage {label}", (round(16 * scale), round(40 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
        1.0 * scale, (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA,
    )  # fmt: skip
    return picture


# --- binary STL -----------------------------------------------------------------------------


def tiny_stl(*, offset: tuple[float, float, float] = (0.0, 0.0, 0.0), label: bytes = b"synthetic") -> bytes:
    """A valid binary STL: a closed tetrahedron shell (4 triangles) shifted by `offset` (mm)."""
    ox, oy, oz = offset
    points = [(ox, oy, oz), (ox + 10, oy, oz), (ox, oy + 10, oz), (ox, oy, oz + 10)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    body = bytearray(label[:80].ljust(80, b" "))
    body += struct.pack("<I", len(faces))
    for a, b, c in faces:
        pa, pb, pc = (np.array(points[i], np.float64) for i in (a, b, c))
        normal = np.cross(pb - pa, pc - pa)
        normal /= np.linalg.norm(normal)
        body += struct.pack("<12fH", *normal, *pa, *pb, *pc, 0)
    return bytes(body)
