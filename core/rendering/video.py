"""Stage animations as MP4 (H.264) or WebM (VP9), and a before/predicted wipe.

Timeline (`plan`): optional title card, then every stage for `seconds_per_stage` (the last one
`hold_final_seconds` longer), then an optional end card. A transition into the next picture takes
the last `transition_seconds` of each slot, so transitions never lengthen the video:

* "cut"       — no in-between frames.
* "crossfade" — linear blend of the two (overlaid) stills.
* "morph"     — optical-flow interpolation: teeth glide from one stage to the next instead of
  ghosting through a blend. Cards always crossfade (there is nothing to track on a text card).

Morph limits: dense flow (DIS, computed once per stage pair on a ~480 px wide grey copy, both
directions) is a good model for the small per-stage tooth movements of a simulation. It is not for
large jumps (more than ~an object's own size between stages), occlusions (a tooth emerging behind
another) or changes of view/lighting: there the in-between frames fall back towards a soft blend
and can show smearing at object edges. Overlays are burned after warping (per morph frame, with the
nearer stage's index), so captions never warp.

Overlays: `overlay(rgb, stage)` is called once per stage for the stills (cached: stills repeat);
crossfades blend the two overlaid stills, so the stamp and watermark stay crisp while the stage
caption fades from one number to the next.

Encoding: raw I420 frames (BT.709, see `_yuv`) are piped to the bundled ffmpeg (see `_ffmpeg` for
why a pipe and not PyAV). H.264 uses libx264 `-preset veryfast`: on this content it was 2.2x faster
than `medium` with no bigger files at the same CRF (stills and blends leave little for the slower
presets' extra search to find). VP9 uses libvpx `-deadline realtime -cpu-used 5 -row-mt 1`: 5x
faster than `-deadline good` for ~25 % larger files. No metadata is written: `-map_metadata -1`,
`-fflags +bitexact` (no muxer/encoder version tags), no title/comment tags; the only strings in the
file besides the encoder's own settings SEI are colour tags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from core.errors import ValidationError
from core.imaging.compose import divider_columns, fit, label_font_px
from core.imaging.overlays import draw_plate, fit_text, plate_metrics
from core.rendering import (
    Cancelled,
    FrameSource,
    Overlay,
    Progress,
    RenderCancelled,
    call_overlay,
    check_frame,
    check_source,
    report,
)
from core.rendering._ffmpeg import FfmpegPipe, encode_timeout, file_url
from core.rendering._yuv import COLOR_TAGS, i420_planes, rgb_to_i420
from core.rendering.cards import TitleCard, render_card

PRESETS: dict[str, tuple[int, int]] = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160),
                                       "square": (1080, 1080)}
TRANSITIONS = ("cut", "crossfade", "morph")
CODECS = ("h264", "vp9")
#: CRF when the spec leaves it None: visually clean for both encoders at ~1–3 MB per 20 s of 1080p.
DEFAULT_CRF = {"h264": 20, "vp9": 31}
CRF_RANGE = {"h264": (0, 51), "vp9": (0, 63)}
H264_PRESET = "veryfast"
VP9_CPU_USED = 5
MAX_FPS = 60
MAX_SECONDS = 600.0  # a whole video; longer renders are refused (minutes of CPU, hundreds of MB)
MIN_SIDE, MAX_SIDE = 16, 4096
#: Optical flow is computed at this width (and scaled up): fast, and smooths sensor noise away.
FLOW_WIDTH = 480
MAX_LABEL_LENGTH = 60

T = TypeVar("T")
Color = tuple[int, int, int]


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a number, got {value!r}.")
    if not low <= value <= high:
        raise ValidationError(f"{name} {value!r} is outside {low:g}–{high:g}.")
    return float(value)


def check_even_size(width: int, height: int) -> None:
    """Raise an actionable ValidationError unless width and height are even (4:2:0 video needs that)."""
    if width % 2 == 0 and height % 2 == 0:
        return
    odd = " and ".join(n for n, v in (("width", width), ("height", height)) if v % 2)
    pad, crop = (width + width % 2, height + height % 2), (width - width % 2, height - height % 2)
    raise ValidationError(f"Output size {width}×{height} has an odd {odd}; H.264/VP9 video (yuv420p) needs even "
                          f"sizes — choose {pad[0]}×{pad[1]} (pad) or {crop[0]}×{crop[1]} (crop), or a preset.")


@dataclass(frozen=True)
class VideoSpec:
    """How to render a video. `size` (w, h), when set, overrides `preset` (e.g. small sizes for tests).

    `crf` None means the codec's default (`DEFAULT_CRF`: 20 for H.264 on its 0–51 scale, 31 for VP9
    on 0–63); lower is better quality and bigger files. `background` fills letterbox bars and cards.
    """

    preset: str = "1080p"
    fps: int = 30
    seconds_per_stage: float = 0.5
    transition: str = "crossfade"
    transition_seconds: float = 0.3
    hold_final_seconds: float = 1.5
    title_card: TitleCard | None = None
    end_card: TitleCard | None = None
    codec: str = "h264"
    crf: int | None = None
    size: tuple[int, int] | None = None
    background: Color = (255, 255, 255)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValidationError(f"Video preset {self.preset!r} is not supported; choose one of {', '.join(PRESETS)}.")
        if self.size is not None:
            size = self.size
            if (not isinstance(size, tuple | list) or len(size) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) or not MIN_SIDE <= v <= MAX_SIDE
                           for v in size)):
                raise ValidationError(f"size {size!r} must be (width, height) in whole px from {MIN_SIDE} to "
                                      f"{MAX_SIDE}.")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))
            check_even_size(*self.size)
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or not 1 <= self.fps <= MAX_FPS:
            raise ValidationError(f"fps {self.fps!r} must be a whole number from 1 to {MAX_FPS} (30 is typical).")
        _number("seconds_per_stage", self.seconds_per_stage, 1 / self.fps, 60)
        if self.transition not in TRANSITIONS:
            raise ValidationError(f"Transition {self.transition!r} is not supported; choose one of "
                                  f"{', '.join(TRANSITIONS)}.")
        _number("transition_seconds", self.transition_seconds, 0, 60)
        if self.transition != "cut" and self.transition_seconds > self.seconds_per_stage:
            raise ValidationError(f"transition_seconds {self.transition_seconds:g} is longer than seconds_per_stage "
                                  f"{self.seconds_per_stage:g}; the transition happens within each stage's time — "
                                  "shorten it or show each stage longer.")
        _number("hold_final_seconds", self.hold_final_seconds, 0, 60)
        for name in ("title_card", "end_card"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), TitleCard):
                raise ValidationError(f"{name} must be a TitleCard or None.")
        if self.codec not in CODECS:
            raise ValidationError(f"Codec {self.codec!r} is not supported; choose \"h264\" (MP4) or \"vp9\" (WebM).")
        if self.crf is not None:
            low, high = CRF_RANGE[self.codec]
            if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not low <= self.crf <= high:
                raise ValidationError(f"crf {self.crf!r} must be a whole number from {low} to {high} for {self.codec} "
                                      f"(default {DEFAULT_CRF[self.codec]}; lower = better and bigger).")
        background = self.background
        if (not isinstance(background, tuple | list) or len(background) != 3
                or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255 for c in background)):
            raise ValidationError(f"background {background!r} must be three whole numbers 0–255 (R, G, B).")
        object.__setattr__(self, "background", tuple(background))

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the video in px."""
        return self.size if self.size is not None else PRESETS[self.preset]

    @property
    def effective_crf(self) -> int:
        return self.crf if self.crf is not None else DEFAULT_CRF[self.codec]

    @property
    def container(self) -> str:
        """"mp4" or "webm" — the file type the caller should name the result."""
        return "mp4" if self.codec == "h264" else "webm"


@dataclass(frozen=True)
class VideoResult:
    frames: int
    duration_s: float
    width: int
    height: int
    codec: str
    bytes: int


# --------------------------------------------------------------------------- the plan (pure)

@dataclass(frozen=True)
class Slide:
    """One picture of the timeline: kind "title", "stage" or "end"; `stage` is -1 for cards."""

    kind: str
    stage: int


@dataclass(frozen=True)
class PlanFrame:
    """One output frame: slide `slide` alone (weight 0), or on its way to slide + 1.

    weight in (0, 1) is the share of the next slide; mode is "still", "crossfade" or "morph".
    """

    slide: int
    weight: float = 0.0
    mode: str = "still"


@dataclass(frozen=True)
class Plan:
    fps: int
    slides: tuple[Slide, ...]
    frames: tuple[PlanFrame, ...]

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps

    def overlay_stage(self, frame: PlanFrame) -> int:
        """Stage index whose overlay a frame carries (the nearer picture's); -1 for cards."""
        slide = self.slides[frame.slide + (1 if frame.weight >= 0.5 else 0)]
        return slide.stage


def plan(spec: VideoSpec, stage_count: int) -> Plan:
    """The frame-by-frame timeline of a video of `stage_count` stages (see the module docstring).

    Slot boundaries are rounded from cumulative times, so rounding never drifts: e.g. 40 stages at
    0.5 s, 1.5 s final hold, 30 fps -> 645 frames (21.5 s). Each slot keeps at least one pure still.
    """
    if isinstance(stage_count, bool) or not isinstance(stage_count, int) or stage_count < 1:
        raise ValidationError(f"A video needs at least one stage; got {stage_count!r}.")
    slides: list[Slide] = [Slide("title", -1)] if spec.title_card else []
    slides += [Slide("stage", i) for i in range(stage_count)]
    if spec.end_card:
        slides.append(Slide("end", -1))
    seconds = []
    for slide in slides:
        if slide.kind == "title":
            seconds.append(spec.title_card.seconds)  # type: ignore[union-attr]
        elif slide.kind == "end":
            seconds.append(spec.end_card.seconds)  # type: ignore[union-attr]
        else:
            seconds.append(spec.seconds_per_stage + (spec.hold_final_seconds if slide.stage == stage_count - 1 else 0))
    total = sum(seconds)
    if total > MAX_SECONDS:
        raise ValidationError(f"The video would last {total:.0f} s; the limit is {MAX_SECONDS:.0f} s — show each stage "
                              "for less time or export fewer stages.")
    bounds, elapsed = [0], 0.0
    for value in seconds:
        elapsed += value
        bounds.append(round(elapsed * spec.fps))
    frames: list[PlanFrame] = []
    for index, slide in enumerate(slides):
        count = bounds[index + 1] - bounds[index]
        has_next = index + 1 < len(slides)
        mode = spec.transition if has_next else "cut"
        if mode == "morph" and (slide.kind != "stage" or slides[index + 1].kind != "stage"):
            mode = "crossfade"
        blend = min(round(spec.transition_seconds * spec.fps), count - 1) if mode != "cut" else 0
        frames += [PlanFrame(index)] * (count - blend)
        frames += [PlanFrame(index, (k + 1) / (blend + 1), mode) for k in range(blend)]
    return Plan(spec.fps, tuple(slides), tuple(frames))


def wipe_positions(seconds: float, fps: int) -> tuple[float, ...]:
    """Divider position (fraction of the width revealed as "predicted") per frame of a wipe.

    Eased (cosine) sweep 0 -> 1 -> 0: starts and ends on the full "before" picture and slows down at
    the edges so the reveal reads calmly.
    """
    count = max(2, round(seconds * fps))
    return tuple((1 - math.cos(2 * math.pi * k / (count - 1))) / 2 for k in range(count))


# --------------------------------------------------------------------------- frame production

class _Lru:
    """A tiny keyed cache: rendering walks stages in order, so two or three entries are enough."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[object, object] = {}

    def get(self, key: object, make: Callable[[], T]) -> T:
        if key in self._items:
            return self._items[key]  # type: ignore[return-value]
        value = make()
        self._items[key] = value
        while len(self._items) > self._size:
            self._items.pop(next(iter(self._items)))
        return value


class _Ring:
    """Preallocated I420 output buffers reused round-robin (no 3 MB allocation + page faults per frame).

    The encoder pipe has consumed a frame when `write` returns, so a few buffers are plenty; the
    spare ones let `iter_frames` callers look at the previous frame or two.
    """

    SIZE = 4

    def __init__(self, width: int, height: int) -> None:
        self._buffers = [np.empty((height * 3 // 2, width), np.uint8) for _ in range(self.SIZE)]
        self._next = 0

    def take(self) -> np.ndarray:
        buffer = self._buffers[self._next]
        self._next = (self._next + 1) % len(self._buffers)
        return buffer


@dataclass(frozen=True)
class _FlowPair:
    forward: np.ndarray  # A -> B, full resolution, (h, w, 2) float32 in px
    backward: np.ndarray  # B -> A


def _flow_pair(a: np.ndarray, b: np.ndarray) -> _FlowPair:
    height, width = a.shape[:2]
    small_w = min(width, FLOW_WIDTH)
    small_h = max(8, round(height * small_w / width))
    grey_a, grey_b = (cv2.cvtColor(cv2.resize(x, (small_w, small_h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
                      for x in (a, b))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def full(flow: np.ndarray) -> np.ndarray:
        up = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.multiply(up, (width / small_w, height / small_h, 0, 0))

    return _FlowPair(full(dis.calc(grey_a, grey_b, None)), full(dis.calc(grey_b, grey_a, None)))


def morph_frame(a: np.ndarray, b: np.ndarray, flows: _FlowPair, t: float, grid: np.ndarray) -> np.ndarray:
    """The in-between picture at time t (0 = a, 1 = b) by flow-based interpolation.

    The flows from time t back to each end are approximated from the two stage-to-stage flows
    (quadratic blend, as in Super SloMo: F_t0 = -(1-t)t F01 + t² F10, F_t1 = (1-t)² F01 - t(1-t) F10);
    a is warped forward, b backward with cv2.remap, and both blended with weights (1-t, t).
    """
    to_a = cv2.addWeighted(flows.forward, -(1 - t) * t, flows.backward, t * t, 0)
    to_b = cv2.addWeighted(flows.forward, (1 - t) ** 2, flows.backward, -t * (1 - t), 0)
    cv2.add(to_a, grid, dst=to_a)
    cv2.add(to_b, grid, dst=to_b)
    warped_a = cv2.remap(a, to_a, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped_b = cv2.remap(b, to_b, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(warped_a, 1 - t, warped_b, t, 0)


def _pixel_grid(width: int, height: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([xs, ys])


class _StageFrames:
    """Fits, overlays and converts each picture once; produces every output frame of a plan as I420."""

    def __init__(self, source: FrameSource, spec: VideoSpec, the_plan: Plan, overlay: Overlay | None) -> None:
        self._source, self._spec, self._plan, self._overlay = source, spec, the_plan, overlay
        self._width, self._height = spec.output_size
        self._clean: _Lru = _Lru(3)
        self._stills: _Lru = _Lru(3)
        self._flows: _Lru = _Lru(1)
        self._ring = _Ring(self._width, self._height)
        self._grid: np.ndarray | None = None

    def _picture(self, slide_index: int) -> np.ndarray:
        """The clean picture of a slide at the output size (stage frame fitted once, or a card)."""
        slide = self._plan.slides[slide_index]
        size = (self._width, self._height)
        if slide.kind == "title":
            return render_card(self._spec.title_card, size, self._spec.background)  # type: ignore[arg-type]
        if slide.kind == "end":
            return render_card(self._spec.end_card, size, self._spec.background)  # type: ignore[arg-type]
        rgb = check_frame(self._source.get(slide.stage), slide.stage)
        # Frames already at the output size are used as they are (nothing here writes into them):
        # fit would only copy them, and at 1080p that copy cost as much as the overlay and conversion.
        return rgb if rgb.shape[:2] == (self._height, self._width) else fit(rgb, size, self._spec.background)

    def clean(self, slide_index: int) -> np.ndarray:
        return self._clean.get(slide_index, lambda: self._picture(slide_index))

    def still(self, slide_index: int) -> np.ndarray:
        def make() -> np.ndarray:
            stage = self._plan.slides[slide_index].stage
            rgb = self.clean(slide_index)
            return rgb_to_i420(call_overlay(self._overlay, rgb, stage) if stage >= 0 else rgb)

        return self._stills.get(slide_index, make)

    def frame(self, item: PlanFrame) -> np.ndarray:
        if item.mode == "still" or item.weight == 0:
            return self.still(item.slide)
        if item.mode == "crossfade":
            out = self._ring.take()
            cv2.addWeighted(self.still(item.slide), 1 - item.weight, self.still(item.slide + 1), item.weight, 0,
                            dst=out)
            return out
        a, b = self.clean(item.slide), self.clean(item.slide + 1)
        flows = self._flows.get(item.slide, lambda: _flow_pair(a, b))
        if self._grid is None:
            self._grid = _pixel_grid(self._width, self._height)
        rgb = morph_frame(a, b, flows, item.weight, self._grid)
        stage = self._plan.overlay_stage(item)
        return rgb_to_i420(call_overlay(self._overlay, rgb, stage))


# --------------------------------------------------------------------------- encoding

def _ffmpeg_args(spec: VideoSpec, width: int, height: int, out_path: Path) -> list[str]:
    args = ["-hide_banner", "-nostats", "-loglevel", "error", "-y",
            # The input's colour tags must match what _yuv produced: if only the output were tagged, ffmpeg
            # would insert a BT.601 -> BT.709 conversion (a shifted picture and a wasted scaling pass).
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", str(spec.fps), *COLOR_TAGS,
            "-i", "pipe:0",
            "-an", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact"]
    crf = str(spec.effective_crf)
    if spec.codec == "h264":
        args += ["-c:v", "libx264", "-preset", H264_PRESET, "-crf", crf, "-profile:v", "high", "-pix_fmt", "yuv420p",
                 *COLOR_TAGS, "-movflags", "+faststart", "-f", "mp4"]
    else:
        args += ["-c:v", "libvpx-vp9", "-crf", crf, "-b:v", "0", "-row-mt", "1", "-deadline", "realtime",
                 "-cpu-used", str(VP9_CPU_USED), "-pix_fmt", "yuv420p", *COLOR_TAGS, "-f", "webm"]
    return [*args, file_url(out_path)]


def ffmpeg_args(spec: VideoSpec, out_path: Path) -> list[str]:
    """The exact ffmpeg arguments `render_video` uses (I420 on stdin); the benchmark reuses them."""
    return _ffmpeg_args(spec, *spec.output_size, out_path)


def _encode(frames: Iterator[np.ndarray], count: int, spec: VideoSpec, out_path: Path, *, what: str,
            progress: Progress | None, cancelled: Cancelled | None) -> VideoResult:
    width, height = spec.output_size
    out_path = Path(out_path)
    step = max(1, count // 100)
    pipe = FfmpegPipe(_ffmpeg_args(spec, width, height, out_path), timeout_s=encode_timeout(count, width, height))
    try:
        for index, frame in enumerate(frames):
            if cancelled is not None and cancelled():
                raise RenderCancelled(f"The {what} was cancelled; no file was kept.")
            pipe.write(frame)
            if index % step == 0:
                report(progress, index / count, f"Encoding {what}: frame {index + 1} of {count}")
        report(progress, 1.0, f"Finishing {what}")
        pipe.finish()
    except BaseException:
        pipe.abort()
        out_path.unlink(missing_ok=True)
        raise
    return VideoResult(count, count / spec.fps, width, height, spec.codec, out_path.stat().st_size)


def iter_frames(source: FrameSource, spec: VideoSpec, *, overlay: Overlay | None = None) -> Iterator[np.ndarray]:
    """Exactly the I420 frames `render_video` pipes to the encoder, in order (`plan(spec, count)`).

    Repeated stills are the same array; transition frames live in a ring of 4 reused buffers, so
    copy a frame to keep it beyond the next three iterations. `_yuv.i420_to_rgb` turns one back
    into RGB (previews, tests, benchmarks).
    """
    the_plan = plan(spec, check_source(source))
    stages = _StageFrames(source, spec, the_plan, overlay)
    return (stages.frame(item) for item in the_plan.frames)


def render_video(source: FrameSource, spec: VideoSpec, out_path: Path, *, overlay: Overlay | None = None,
                 progress: Progress | None = None, cancelled: Cancelled | None = None) -> VideoResult:
    """Render the stages of `source` to `out_path` (MP4 for h264, WebM for vp9; written in place).

    Frames of any size are letterboxed into the output size. `overlay(rgb, stage)` burns captions
    in (called once per stage, plus once per morph frame). `cancelled()` is polled before every
    frame: when it returns True the encoder is stopped, `out_path` deleted and RenderCancelled
    raised. Raises ValidationError for bad input, RenderError when the encoder fails.
    """
    if not isinstance(spec, VideoSpec):
        raise ValidationError("render_video needs a VideoSpec.")
    count = plan(spec, check_source(source)).frame_count
    return _encode(iter_frames(source, spec, overlay=overlay), count, spec, out_path, what="video", progress=progress,
                   cancelled=cancelled)


def _labelled(rgb: np.ndarray, label: str, align: str) -> np.ndarray:
    if not label:
        return rgb
    height, width = rgb.shape[:2]
    size = label_font_px(width, height)
    margin = max(3, round(0.5 * size))
    _, pad_x, _ = plate_metrics(size)
    text, text_size = fit_text(label, size, max(1, width // 2 - 2 * margin - 2 * pad_x))
    out = rgb.copy()
    draw_plate(out, text, margin if align == "left" else width - margin, margin, text_size, align=align)
    return out


def _wipe_frame(before: np.ndarray, after: np.ndarray, position: float, out: np.ndarray) -> np.ndarray:
    """Predicted (`after`) left of the divider, before right of it, with a white divider line; all I420."""
    width, height = out.shape[1], out.shape[0] * 2 // 3
    out[:] = before
    split = min(width, 2 * round(position * width / 2))  # even: chroma columns cover 2 luma columns
    if split == 0:
        return out
    y, u, v = i420_planes(out, width, height)
    src_y, src_u, src_v = i420_planes(after, width, height)
    y[:, :split], u[:, :split // 2], v[:, :split // 2] = src_y[:, :split], src_u[:, :split // 2], src_v[:, :split // 2]
    if split < width:
        start, end = divider_columns(width, split / width)
        # Same look as compose's split divider: white core, one darkened column each side for contrast.
        for column in (start, end - 1):
            y[:, column] = (16 + (y[:, column].astype(np.uint16) - 16) * 55 // 100).astype(np.uint8)
        y[:, start + 1:end - 1] = 235
        u[:, (start + 1) // 2:end // 2] = 128  # neutral chroma under the white core
        v[:, (start + 1) // 2:end // 2] = 128
    return out


def render_wipe(before: np.ndarray, after: np.ndarray, spec: VideoSpec, out_path: Path, *,
                labels: tuple[str, str] = ("Before", "Predicted"), seconds: float = 4.0,
                overlay: Overlay | None = None, progress: Progress | None = None,
                cancelled: Cancelled | None = None) -> VideoResult:
    """A before/predicted wipe: a divider sweeps left -> right -> left revealing the predicted image.

    Predicted shows left of the divider, before right of it; the labels sit in the top corners of
    their own picture (predicted top-left, before top-right), so each is revealed with its picture.
    Keep the overlay's top corners free (no clinic/patient captions) or pass labels=("", "").
    `overlay` is called once per picture with index 0 (before) and 1 (predicted). Title/end cards
    of `spec` are included (crossfaded unless spec.transition is "cut"); seconds_per_stage and
    hold_final_seconds do not apply.
    """
    if not isinstance(spec, VideoSpec):
        raise ValidationError("render_wipe needs a VideoSpec.")
    check_frame(before, 0)
    check_frame(after, 1)
    seconds = _number("seconds", seconds, 1.0, 60.0)
    if (not isinstance(labels, tuple | list) or len(labels) != 2
            or any(not isinstance(x, str) or len(x) > MAX_LABEL_LENGTH or any(c in x for c in "\r\n\t")
                   for x in labels)):
        raise ValidationError(f"labels must be two single-line texts of at most {MAX_LABEL_LENGTH} characters, "
                              "e.g. (\"Before\", \"Predicted\").")
    width, height = spec.output_size
    size = (width, height)
    pictures = [
        rgb_to_i420(_labelled(call_overlay(overlay, fit(img, size, spec.background), index), label, align))
        for index, (img, label, align) in enumerate(((before, labels[0], "right"), (after, labels[1], "left")))
    ]
    positions = wipe_positions(seconds, spec.fps)
    fade = 0 if spec.transition == "cut" else round(spec.transition_seconds * spec.fps)
    cards = [rgb_to_i420(render_card(c, size, spec.background)) if c else None
             for c in (spec.title_card, spec.end_card)]
    lead = round(spec.title_card.seconds * spec.fps) if spec.title_card else 0
    tail = round(spec.end_card.seconds * spec.fps) if spec.end_card else 0
    count = lead + len(positions) + tail
    ring = _Ring(width, height)

    def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
        return cv2.addWeighted(a, 1 - t, b, t, 0, dst=ring.take())

    def frames() -> Iterator[np.ndarray]:
        # Cards fade into the first / out of the last wipe picture (both are the plain "before").
        title, end = cards
        blend_in, blend_out = min(fade, lead - 1), min(fade, tail - 1)
        for k in range(lead):
            j = k - (lead - blend_in)
            yield title if j < 0 else blend(title, pictures[0], (j + 1) / (blend_in + 1))  # type: ignore[arg-type]
        for position in positions:
            yield _wipe_frame(pictures[0], pictures[1], position, ring.take())
        for k in range(tail):
            yield end if k >= blend_out else blend(pictures[0], end, (k + 1) / (blend_out + 1))  # type: ignore[arg-type]

    return _encode(frames(), count, spec, out_path, what="wipe video", progress=progress, cancelled=cancelled)
