"""Animated GIF of the stages, palette-optimised and shrunk until it fits a byte budget.

Palette: ffmpeg's palettegen (one 256-colour palette for the whole animation) + paletteuse with
ordered (Bayer) dithering, in two passes through the bundled ffmpeg. Measured on 10 demo stages at
800 px with 3-frame crossfades: ffmpeg full-stats + Bayer 1.95 MB, ffmpeg diff-stats + Bayer
2.17 MB, ffmpeg + sierra2_4a 2.3–3.2 MB, Pillow shared MEDIANCUT palette + Floyd–Steinberg 4.5 MB
(error diffusion changes pixels everywhere from frame to frame, which defeats GIF's
changed-rectangle frames). Ordered dithering is stable across frames, so stills and the static
background cost almost nothing after the first frame; "full" statistics keep the gums and the
background band-free without visibly hurting the teeth.

Fitting the budget: if the file is larger than `max_bytes`, the width shrinks by 0.8 per step (as
many steps as the overshoot needs, size falls roughly with the area) and, once the width reaches
`MIN_WIDTH`, the frame rate steps down (FPS_STEPS) — until it fits, or ValidationError at
MIN_WIDTH px and MIN_FPS. Every attempt is reported in GifResult.attempts.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import ValidationError
from core.imaging.compose import fit
from core.rendering import FrameSource, Overlay, Progress, call_overlay, check_frame, check_source, report
from core.rendering._ffmpeg import FfmpegPipe, encode_timeout, file_url
from core.rendering.video import Plan, VideoSpec, plan

MIN_WIDTH, MIN_FPS = 240, 5
FPS_STEPS = (30, 25, 20, 15, 12, 10, 8, 6, 5)
MAX_ATTEMPTS = 10
GIF_TRANSITIONS = ("cut", "crossfade")
#: Palette and dithering (see the module docstring for the measurements behind them).
PALETTEGEN = "palettegen=stats_mode=full:reserve_transparent=0"
PALETTEUSE = "paletteuse=dither=bayer:bayer_scale=3:diff_mode=rectangle"


@dataclass(frozen=True)
class GifSpec:
    """How to render a GIF. `max_bytes` is the budget (default 5 MiB, what most email clients accept).

    `transition` is "cut" or "crossfade" (smaller files vs smoother motion); `loop` False plays
    once. `background` fills letterbox bars when stages differ in aspect ratio.
    """

    max_bytes: int = 5 * 2**20
    max_width: int = 800
    fps: int = 10
    seconds_per_stage: float = 0.5
    hold_final_seconds: float = 1.5
    loop: bool = True
    transition: str = "crossfade"
    transition_seconds: float = 0.3
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 10_000:
            raise ValidationError(f"max_bytes {self.max_bytes!r} must be a whole number of bytes, at least 10000.")
        if (isinstance(self.max_width, bool) or not isinstance(self.max_width, int)
                or not MIN_WIDTH <= self.max_width <= 1920):
            raise ValidationError(f"max_width {self.max_width!r} must be from {MIN_WIDTH} to 1920 px "
                                  "(GIFs wider than that are huge; export a video instead).")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or not MIN_FPS <= self.fps <= 30:
            raise ValidationError(f"GIF fps {self.fps!r} must be a whole number from {MIN_FPS} to 30.")
        if not isinstance(self.loop, bool):
            raise ValidationError("loop must be True or False.")
        if self.transition not in GIF_TRANSITIONS:
            raise ValidationError(f"GIF transition {self.transition!r} is not supported; choose \"cut\" or "
                                  "\"crossfade\" (morph needs video).")
        # Timing fields share the video rules (and messages).
        self._plan_spec(2 * (self.max_width // 2), 2, self.fps)

    def _plan_spec(self, width: int, height: int, fps: int) -> VideoSpec:
        return VideoSpec(size=(max(16, width), max(16, height)), fps=fps, seconds_per_stage=self.seconds_per_stage,
                         transition=self.transition, transition_seconds=self.transition_seconds,
                         hold_final_seconds=self.hold_final_seconds, background=self.background)


@dataclass(frozen=True)
class GifResult:
    width: int
    height: int
    fps: int
    frames: int
    bytes: int
    attempts: tuple[str, ...]


def _frames(stills: list[np.ndarray], the_plan: Plan) -> Iterator[np.ndarray]:
    for item in the_plan.frames:
        a = stills[the_plan.slides[item.slide].stage]
        if item.weight == 0:
            yield a
        else:
            b = stills[the_plan.slides[item.slide + 1].stage]
            yield cv2.addWeighted(a, 1 - item.weight, b, item.weight, 0)


def _pipe_frames(argv: list[str], stills: list[np.ndarray], the_plan: Plan) -> None:
    height, width = stills[0].shape[:2]
    pipe = FfmpegPipe(argv, timeout_s=encode_timeout(the_plan.frame_count, width, height))
    try:
        for frame in _frames(stills, the_plan):
            pipe.write(frame)
        pipe.finish()
    except BaseException:
        pipe.abort()
        raise


def _encode_gif(stills: list[np.ndarray], the_plan: Plan, loop: bool, out_path: Path) -> int:
    """Two ffmpeg passes (palette, then the GIF); returns the file size."""
    height, width = stills[0].shape[:2]
    raw = ["-hide_banner", "-nostats", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", str(the_plan.fps), "-i", "pipe:0"]
    with tempfile.TemporaryDirectory(prefix="gif-") as tmp:
        palette = Path(tmp) / "palette.png"
        _pipe_frames([*raw, "-vf", PALETTEGEN, "-update", "1", "-frames:v", "1", file_url(palette)], stills, the_plan)
        _pipe_frames([*raw, "-i", file_url(palette), "-lavfi", f"[0:v][1:v]{PALETTEUSE}",
                      "-map_metadata", "-1", "-fflags", "+bitexact", "-loop", "0" if loop else "-1",
                      "-f", "gif", file_url(out_path)], stills, the_plan)
    return out_path.stat().st_size


def _next_attempt(width: int, fps: int, overshoot: float) -> tuple[int, int] | None:
    """The next (width, fps) after a file `overshoot` times too big, or None when at the minimum."""
    if width > MIN_WIDTH:
        steps = max(1, math.ceil(math.log(overshoot) / math.log(1 / 0.64)))
        return max(MIN_WIDTH, round(width * 0.8 ** steps)), fps
    lower = [f for f in FPS_STEPS if f < fps]
    return (width, lower[0]) if lower else None


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MB"


def render_gif(source: FrameSource, spec: GifSpec, out_path: Path, *, overlay: Overlay | None = None,
               progress: Progress | None = None) -> GifResult:
    """Render the stages of `source` as a GIF at most `spec.max_bytes` big (written to `out_path`).

    The first attempt uses min(max_width, the first frame's width) and `spec.fps`; see the module
    docstring for how it shrinks. `overlay(rgb, stage)` is called once per stage per attempt (at
    that attempt's size, so captions stay legible). Raises ValidationError when even MIN_WIDTH px
    at MIN_FPS does not fit (the message names the smallest size reached).
    """
    if not isinstance(spec, GifSpec):
        raise ValidationError("render_gif needs a GifSpec.")
    count = check_source(source)
    out_path = Path(out_path)
    first = check_frame(source.get(0), 0)
    base_width = min(spec.max_width, max(MIN_WIDTH, first.shape[1]))
    aspect = first.shape[0] / first.shape[1]
    # Fit every stage once at the largest size; retries shrink these instead of re-reading the source.
    base_height = max(2, round(base_width * aspect))
    fitted = [fit(check_frame(source.get(i), i) if i else first, (base_width, base_height), spec.background)
              for i in range(count)]
    width, fps = base_width, spec.fps
    attempts: list[str] = []
    try:
        for attempt in range(MAX_ATTEMPTS):
            height = max(2, round(width * aspect))
            report(progress, attempt / MAX_ATTEMPTS, f"Rendering GIF at {width}×{height}, {fps} fps")
            the_plan = plan(spec._plan_spec(2 * (width // 2), 2 * (height // 2), fps), count)
            stills = [call_overlay(overlay, cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
                                   if f.shape[1] != width else f, i) for i, f in enumerate(fitted)]
            size = _encode_gif(stills, the_plan, spec.loop, out_path)
            fits = size <= spec.max_bytes
            attempts.append(f"{width}×{height} @ {fps} fps: {_mb(size)} "
                            f"({'fits' if fits else 'over'} {_mb(spec.max_bytes)})")
            if fits:
                report(progress, 1.0, "GIF ready")
                return GifResult(width, height, fps, the_plan.frame_count, size, tuple(attempts))
            following = _next_attempt(width, fps, size / spec.max_bytes)
            if following is None:
                break
            width, fps = following
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    out_path.unlink(missing_ok=True)
    raise ValidationError(f"The GIF does not fit in {_mb(spec.max_bytes)} even at {width} px and {fps} fps "
                          f"(tried: {'; '.join(attempts)}). Raise the size limit, use fewer stages or "
                          "shorter holds, or export a video instead.")
