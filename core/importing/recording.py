"""Screen recordings (MP4/MOV/WebM) of ClinCheck or the iTero Outcome Simulator: probing and
stage-frame detection.

Safety: the file type is sniffed from its content and PyAV is told the demuxer explicitly (only
MP4/MOV and Matroska/WebM), opened through the `file:` protocol with every other protocol
disallowed; length, frame size and frame rate are checked from the headers before any frame is
decoded, and only well-known codecs are decoded. Nothing is ever handed to a subprocess.

Detection (`detect_stage_frames`): a clinician steps through the stages and pauses on each, so
every stage shows up as a *hold*, a stretch where the picture does not change. All frames are
decoded (holds lie between keyframes), but each is only reduced to a ~160 px wide grayscale copy
of its luma plane (no colour conversion), and the motion between consecutive copies is scored as
the mean absolute difference of the *worst* 8 × 8 block. Because the worst block counts, a
change confined to a small area (a tooth moving, or the on-screen stage counter changing from
"Stage 7" to "Stage 8") ends a hold even when the rest of the screen is still, so no separate
counter detector is needed. The threshold adapts to the recording: it is derived from the
quietest 10 % of scores (compression noise) and clamped to a sane range. A hold must last at
least `min_hold_s`; a slow drift that never exceeds the threshold between neighbours is split by
also comparing each frame with the first frame of its hold. One frame per hold is returned, the
middle one, converted to RGB at full resolution; a hold that shows the same picture as the one
kept before it (e.g. after a brief mouse movement) is not repeated.

Speed: the full-resolution frames are not converted while scanning. Likely representatives are
kept as decoded (YUV) frames during the single decoding pass, chosen with a running estimate of
the threshold; when the final, whole-recording threshold disagrees for some hold (rare), only
those frames are fetched in a second, conversion-free pass that stops at the last one needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from core.errors import ValidationError
from core.importing.limits import DEFAULT_LIMITS, ImportLimits
from core.importing.sniff import describe, sniff

#: Containers accepted, by sniffed type, with the only FFmpeg demuxer each may be opened with.
DEMUXERS = {
    "mp4": "mov,mp4,m4a,3gp,3g2,mj2",
    "mov": "mov,mp4,m4a,3gp,3g2,mj2",
    "webm": "matroska,webm",
    "mkv": "matroska,webm",
}
#: Video codecs decoded (FFmpeg codec ids, whatever decoder implements them).
CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "prores"})
#: Width of the grayscale copies motion is measured on.
WORK_WIDTH = 160
#: Side of the blocks (in work pixels) whose mean difference is scored.
BLOCK = 8
#: Bounds of the adaptive threshold (gray levels of a block's mean absolute difference).
THRESHOLD_RANGE = (1.5, 10.0)
#: More holds than this means the recording is not a stage walk-through (or needs a crop).
MAX_STAGE_FRAMES = 200
#: Decoded frames held back as likely representatives during the scan are capped at this many bytes;
#: beyond it the remaining representatives are fetched by the second pass instead.
MAX_CANDIDATE_BYTES = 512 * 1024 * 1024

_OPEN_OPTIONS = {"protocol_whitelist": "file"}
_MOV_OPTIONS = {"enable_drefs": "0"}  # never follow a MOV's references to other files
_LUMA_8BIT = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
     "yuv411p", "yuv410p", "nv12", "nv21", "nv16", "gray"}
)  # fmt: skip
# 16-bit little-endian luma planes, with the divisor that brings their samples to 8 bits.
_LUMA_16BIT_LE = {"yuv420p10le": 4, "yuv422p10le": 4, "yuv444p10le": 4, "yuv420p12le": 16, "yuv422p12le": 16,
                  "yuv444p12le": 16, "p010le": 256}  # fmt: skip
_SNIFF_BYTES = 64
_DEFAULT_THRESHOLD = 3.0
_WARMUP_SCORES = 15
_HISTOGRAM_STEP = 0.05
_HISTOGRAM_BINS = 1024
_CANDIDATE_SLOTS = 8
# A header may understate the length; decoding stops with an error past this much extra.
_LENGTH_SLACK = 1.25
# Decoding may legitimately yield a few frames fewer than the container states (edit lists, a
# dropped priming frame); anything beyond this many frames (or this share) short is a cut-off file.
_MISSING_FRAMES_TOLERATED = 3
_MISSING_SHARE_TOLERATED = 0.01
# Without a stated frame count, the decoded length must reach this share of the stated duration
# (minus a second, for a last picture held longer than a frame in variable-frame-rate files).
_COVERED_SHARE = 0.9


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` found; `detect_stage_frames` trusts it only as far as the checks it passed."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count_estimate: int
    has_audio: bool
    #: The exact frame count the container states (an MP4/MOV sample table), None when it states none.
    stated_frames: int | None = None

    def __post_init__(self) -> None:
        if self.container not in DEMUXERS:
            raise ValidationError(f"container {self.container!r} is not one of {', '.join(DEMUXERS)}.")
        if self.codec not in CODECS:
            raise ValidationError(f"codec {self.codec!r} is not one of {', '.join(sorted(CODECS))}.")
        if self.width <= 0 or self.height <= 0:
            raise ValidationError(f"video size {self.width}×{self.height} must be positive.")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValidationError(f"frame rate {self.fps!r} must be a positive number.")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValidationError(f"duration {self.duration_s!r} must be a non-negative number.")
        if self.frame_count_estimate < 0:
            raise ValidationError(f"frame count {self.frame_count_estimate} must not be negative.")
        if self.stated_frames is not None and self.stated_frames < 1:
            raise ValidationError(f"stated frame count {self.stated_frames} must be positive.")


@dataclass(frozen=True)
class CropBox:
    """A rectangle of the video in pixels (x, y = top-left corner); must lie inside the frame."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"crop {name} {value!r} must be a whole number of pixels.")
        if self.x < 0 or self.y < 0:
            raise ValidationError(f"crop origin ({self.x}, {self.y}) must not be negative.")
        if self.w < 16 or self.h < 16:
            raise ValidationError(f"crop size {self.w}×{self.h} is too small; select at least 16×16 pixels.")

    def check_fits(self, width: int, height: int) -> None:
        """ValidationError unless the box lies inside a width × height frame."""
        if self.x + self.w > width or self.y + self.h > height:
            raise ValidationError(
                f"The crop ({self.x}, {self.y}, {self.w}×{self.h}) reaches outside the {width}×{height} "
                "video; select an area inside the picture."
            )


@dataclass(frozen=True, eq=False)
class StageFrame:
    """One detected stage: the middle of its hold at `time_s` seconds, as a full-resolution RGB
    array (cropped when a crop was given), and how long the hold lasted."""

    time_s: float
    frame: np.ndarray
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_s) and self.time_s >= 0):
            raise ValidationError(f"time {self.time_s!r} must be a non-negative number of seconds.")
        frame = self.frame
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValidationError("A stage frame must be an RGB uint8 array.")


# --- probing --------------------------------------------------------------------------------


def probe_video(path: Path, *, limits: ImportLimits = DEFAULT_LIMITS) -> VideoInfo:
    """Check a recording and describe it, without decoding any frame.

    Raises ValidationError when the file is not an MP4/MOV/WebM video, has no or several video
    tracks, uses another codec than H.264, HEVC, VP8, VP9, AV1, MPEG-4 or ProRes, or is longer,
    larger or faster than `limits` allow.
    """
    container_kind = _sniff_container(path)
    with _open(path, container_kind) as container:
        stream = _single_video_stream(container)
        codec = _codec_name(stream)
        if codec not in CODECS:
            raise ValidationError(
                f"The recording uses the {codec or 'unknown'} codec; export or convert it as H.264 MP4 "
                "(QuickTime, the Windows Game Bar and OBS all can)."
            )
        context = stream.codec_context
        width, height = int(context.width), int(context.height)
        if width <= 0 or height <= 0:
            raise ValidationError("The recording does not state its frame size; re-export it as H.264 MP4.")
        _check_size(width, height, limits)
        fps = _frame_rate(stream)
        if fps > limits.max_video_fps:
            raise ValidationError(
                f"The recording runs at {fps:.0f} frames per second; the limit is {limits.max_video_fps}. "
                "Record at 60 fps or less."
            )
        duration = _header_duration(container, stream)
        if duration is None:
            duration = _duration_from_packets(container, stream, limits)
        _check_duration(duration, limits)
        stated = int(stream.frames or 0) or None
        frames = stated or max(1, round(duration * fps))
        has_audio = len(container.streams.audio) > 0
    return VideoInfo(
        container=container_kind,
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        duration_s=duration,
        frame_count_estimate=frames,
        has_audio=has_audio,
        stated_frames=stated,
    )


def _sniff_container(path: Path) -> str:
    try:
        with Path(path).open("rb") as file:
            head = file.read(_SNIFF_BYTES)
    except OSError as error:
        raise ValidationError("The recording could not be opened; upload it again.") from error
    kind = sniff(head)
    if kind not in DEMUXERS:
        raise ValidationError(
            f"The recording is {describe(kind)}, not an MP4, MOV or WebM video; upload the screen recording itself."
        )
    return kind


@contextmanager
def _open(path: Path, kind: str) -> Iterator[av.container.InputContainer]:
    # "file:" pins the protocol (a name like "concat:…" is never interpreted) and the whitelist
    # stops the demuxer from opening anything else on its own.
    url = "file:" + str(Path(path).resolve())
    options = dict(_OPEN_OPTIONS, **(_MOV_OPTIONS if DEMUXERS[kind].startswith("mov") else {}))
    try:
        container = av.open(url, format=DEMUXERS[kind], options=options)
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise ValidationError(
            f"The recording could not be read as a video ({_av_reason(error)}); re-export it."
        ) from error
    try:
        yield container
    finally:
        container.close()


def _single_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    streams = [
        stream
        for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic  # cover art is not a track
    ]
    if not streams:
        raise ValidationError("The file has no video track; upload the screen recording itself.")
    if len(streams) > 1:
        raise ValidationError(f"The recording has {len(streams)} video tracks; export it with a single one.")
    return streams[0]


def _codec_name(stream: av.video.stream.VideoStream) -> str:
    try:
        return str(stream.codec_context.codec.canonical_name)
    except (AttributeError, av.error.FFmpegError, ValueError):
        return ""


def _frame_rate(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0 and math.isfinite(float(rate)):
            return float(rate)
    raise ValidationError("The recording does not state its frame rate; re-export it as H.264 MP4.")


def _header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _duration_from_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, limits: ImportLimits
) -> float:
    """Length from packet timestamps, for files whose header has none (browser WebM recordings).
    Demuxing only: no frame is decoded, and reading stops once the limit is passed."""
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    last = start
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base:
                last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                if last - start > limits.max_video_seconds:
                    break
    except av.error.FFmpegError as error:
        raise ValidationError(f"The recording could not be read ({_av_reason(error)}); re-export it.") from error
    return max(0.0, last - start)


def _check_size(width: int, height: int, limits: ImportLimits) -> None:
    # Orientation-agnostic: a portrait recording of a phone or tablet is as costly as a landscape one.
    long_limit = max(limits.max_video_width, limits.max_video_height)
    short_limit = min(limits.max_video_width, limits.max_video_height)
    if max(width, height) > long_limit or min(width, height) > short_limit:
        raise ValidationError(
            f"The recording is {width}×{height} pixels; the limit is {limits.max_video_width}×"
            f"{limits.max_video_height}. Record at a lower resolution or scale it down."
        )


def _check_duration(duration: float, limits: ImportLimits) -> None:
    if duration > limits.max_video_seconds:
        raise ValidationError(
            f"The recording is {_clock(duration)} long; the limit is {_clock(limits.max_video_seconds)}. "
            "Trim it to the stage walk-through."
        )


# --- detection ------------------------------------------------------------------------------


@dataclass
class _Scan:
    """Per-frame measurements of the single decoding pass (small: a few hundred bytes per frame)."""

    times: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # scores[i]: motion from frame i-1 to i (0 for i = 0)
    grids: list[np.ndarray] = field(default_factory=list)  # block means of each work copy
    candidates: dict[int, av.VideoFrame] = field(default_factory=dict)
    candidate_bytes: int = 0


@dataclass
class _RunBuffer:
    """Decimated references to the decoded frames of the current provisional hold: at most
    `_CANDIDATE_SLOTS` + 1, evenly spread over the hold, so its middle is always close to one."""

    start: int = 0
    step: int = 1
    frames: list[tuple[int, av.VideoFrame]] = field(default_factory=list)

    def reset(self, start: int) -> None:
        self.start, self.step, self.frames = start, 1, []

    def add(self, index: int, frame: av.VideoFrame) -> None:
        if (index - self.start) % self.step:
            return
        self.frames.append((index, frame))
        if len(self.frames) > _CANDIDATE_SLOTS:
            self.step *= 2
            self.frames = [(i, f) for i, f in self.frames if (i - self.start) % self.step == 0]

    def nearest(self, target: float) -> tuple[int, av.VideoFrame] | None:
        return min(self.frames, key=lambda item: abs(item[0] - target), default=None)


def detect_stage_frames(
    path: Path,
    *,
    info: VideoInfo,
    crop: CropBox | None = None,
    min_hold_s: float = 0.4,
    progress: Callable[[float], None] | None = None,
    threads: int = 0,
) -> list[StageFrame]:
    """The stage frames of a recording, in order: one per hold of at least `min_hold_s` seconds
    (see the module docstring for the method).

    `info` must come from `probe_video` for this file. `crop` restricts both detection and the
    returned frames to a rectangle (e.g. the 3D view without the toolbar). `progress` is called
    with 0..1 now and then. `threads` is the decoder's thread count (0: one per CPU).
    Raises ValidationError for an invalid crop, a recording that cannot be decoded or is longer
    than its header said, or more than `MAX_STAGE_FRAMES` holds.
    """
    if not (math.isfinite(min_hold_s) and 0 < min_hold_s <= 60):
        raise ValidationError(f"min_hold_s {min_hold_s!r} must be between 0 and 60 seconds.")
    if crop is not None:
        crop.check_fits(info.width, info.height)
    box = crop or CropBox(0, 0, info.width, info.height)
    scan = _scan(path, info=info, box=box, min_hold_s=min_hold_s, progress=progress, threads=threads)
    if len(scan.times) == 0:
        raise ValidationError("The recording has no frames that could be decoded; re-export it.")
    scores = np.asarray(scan.scores, np.float32)
    threshold = adaptive_threshold(scores[1:])
    holds = _holds(scan, threshold, min_hold_s, info.fps)
    _check_complete(scan, info, stages_found=len(holds))
    if len(holds) > MAX_STAGE_FRAMES:
        raise ValidationError(
            f"The recording has {len(holds)} pauses; at most {MAX_STAGE_FRAMES} stages are read from one "
            "recording. Trim it to the stage walk-through, or crop to the 3D view so other movement is ignored."
        )
    chosen = _choose(scan, holds)
    # Release the decoded frames no hold needs before a possible second pass.
    frames = {index: scan.candidates[index] for index in chosen if index in scan.candidates}
    scan.candidates.clear()
    missing = sorted(index for index in chosen if index not in frames)
    if missing:
        frames.update(_fetch(path, info, missing, threads))
    result = []
    for (start, end), index in zip(holds, chosen, strict=True):
        rgb = _to_rgb(frames[index], box)
        hold = scan.times[end] - scan.times[start] + 1 / info.fps
        result.append(StageFrame(time_s=max(0.0, scan.times[index]), frame=rgb, hold_s=hold))
    if progress is not None:
        progress(1.0)
    return result


def _check_complete(scan: _Scan, info: VideoInfo, *, stages_found: int) -> None:
    """Refuse a recording that ends before its container says it does (cut off by an interrupted
    download or copy, its index intact): the stages after the cut would silently be missing."""
    decoded = len(scan.times)
    covered = scan.times[-1] + 1 / info.fps
    if info.stated_frames is not None:
        allowed = max(_MISSING_FRAMES_TOLERATED, round(info.stated_frames * _MISSING_SHARE_TOLERATED))
        cut = decoded < info.stated_frames - allowed
    else:
        cut = covered < info.duration_s * _COVERED_SHARE - 1.0
    if not cut:
        return
    stated = f"{info.duration_s:.1f} s" + (f" ({info.stated_frames:,} frames)" if info.stated_frames else "")
    found = f"{stages_found} stage{'' if stages_found == 1 else 's'}"
    raise ValidationError(
        f"The recording is cut off: its header states {stated}, but only the first {covered:.1f} s "
        f"({decoded:,} frames) could be decoded, showing {found}. The file is incomplete (an interrupted "
        "download or copy); upload the complete recording."
    )


def adaptive_threshold(scores: np.ndarray) -> float:
    """Motion threshold for one recording: 3 × the 10th percentile of its scores (compression
    noise, as long as at least a tenth of the recording is still) + 1.5, within `THRESHOLD_RANGE`."""
    if scores.size == 0:
        return _DEFAULT_THRESHOLD
    noise = float(np.percentile(scores, 10))
    return float(np.clip(3.0 * noise + 1.5, *THRESHOLD_RANGE))


def _scan(
    path: Path,
    *,
    info: VideoInfo,
    box: CropBox,
    min_hold_s: float,
    progress: Callable[[float], None] | None,
    threads: int,
) -> _Scan:
    scan = _Scan()
    run = _RunBuffer()
    histogram = np.zeros(_HISTOGRAM_BINS, np.int64)
    provisional = _DEFAULT_THRESHOLD
    anchor: np.ndarray | None = None
    previous: np.ndarray | None = None
    max_time = info.duration_s * _LENGTH_SLACK + 5.0
    next_report = 0.0
    origin: float | None = None
    for index, frame in enumerate(_decode(path, info, threads)):
        # Times count from the first frame: containers may start at any timestamp.
        stamp = float(frame.time) if frame.time is not None else index / info.fps
        origin = stamp if origin is None else origin
        time = max(stamp - origin, scan.times[-1] if scan.times else 0.0)
        if time > max_time:
            raise ValidationError("The recording is longer than its header says; re-export it.")
        if frame.width != info.width or frame.height != info.height:
            raise ValidationError("The recording changes its frame size part-way; re-record it at one size.")
        work = _work_copy(frame, box)
        grid = cv2.resize(work, (max(1, work.shape[1] // BLOCK), max(1, work.shape[0] // BLOCK)),
                          interpolation=cv2.INTER_AREA).astype(np.float32)  # fmt: skip
        score = 0.0 if previous is None else _motion(previous, work)
        scan.times.append(time)
        scan.scores.append(score)
        scan.grids.append(grid)
        if index:
            histogram[min(int(score / _HISTOGRAM_STEP), _HISTOGRAM_BINS - 1)] += 1
            if index % _WARMUP_SCORES == 0:
                provisional = _threshold_from_histogram(histogram)
        moved = anchor is None or score > provisional or float(np.abs(grid - anchor).max()) > provisional
        if moved:
            _keep_candidate(scan, run, index - 1, min_hold_s, info.fps)
            run.reset(index)
            anchor = grid
        run.add(index, frame)
        previous = work
        if progress is not None and info.duration_s > 0 and time >= next_report:
            progress(min(0.99, time / info.duration_s))
            next_report = time + info.duration_s / 50
    _keep_candidate(scan, run, len(scan.times) - 1, min_hold_s, info.fps)
    return scan


def _decode(path: Path, info: VideoInfo, threads: int) -> Iterator[av.VideoFrame]:
    """Every frame of the one video track, in presentation order."""
    with _open(path, info.container) as container:
        stream = _single_video_stream(container)
        if _codec_name(stream) != info.codec:
            raise ValidationError("The recording changed since it was checked; upload it again.")
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        seconds = 0.0
        try:
            for frame in container.decode(stream):
                seconds = float(frame.time or seconds)
                yield frame
        except av.error.FFmpegError as error:
            raise ValidationError(
                f"The recording could not be decoded after {_clock(seconds)} of the {_clock(info.duration_s)} its "
                f"header states ({_av_reason(error)}): the file is damaged or incomplete. Upload the complete "
                "recording, or re-export it."
            ) from error


def _work_copy(frame: av.VideoFrame, box: CropBox) -> np.ndarray:
    """A ~`WORK_WIDTH` px wide grayscale copy of the crop, straight from the luma plane when possible."""
    name = frame.format.name
    if name in _LUMA_8BIT:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    elif name in _LUMA_16BIT_LE:
        plane = frame.planes[0]
        samples = np.frombuffer(plane, "<u2").reshape(frame.height, plane.line_size // 2)
        luma = samples[box.y : box.y + box.h, box.x : box.x + box.w] // _LUMA_16BIT_LE[name]
        return _shrink(np.minimum(luma, 255).astype(np.uint8))
    else:
        luma = frame.to_ndarray(format="gray")
    return _shrink(luma[box.y : box.y + box.h, box.x : box.x + box.w])


def _shrink(luma: np.ndarray) -> np.ndarray:
    height, width = luma.shape
    target_w = min(WORK_WIDTH, width)
    target_h = max(1, round(height * target_w / width))
    # Striding first (a view, free) then area-averaging the rest is ~8× faster than area-averaging
    # a full HD plane, and still averages several samples per work pixel.
    step = max(1, width // (3 * target_w))
    strided = luma[::step, ::step]
    return cv2.resize(strided, (target_w, target_h), interpolation=cv2.INTER_AREA)


def _motion(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute difference of the worst BLOCK × BLOCK block (gray levels)."""
    difference = cv2.absdiff(previous, current)
    height, width = difference.shape
    blocks = cv2.resize(difference, (max(1, width // BLOCK), max(1, height // BLOCK)), interpolation=cv2.INTER_AREA)
    return float(blocks.max())


def _threshold_from_histogram(histogram: np.ndarray) -> float:
    total = int(histogram.sum())
    if total < _WARMUP_SCORES:
        return _DEFAULT_THRESHOLD
    tenth = int(np.searchsorted(np.cumsum(histogram), 0.1 * total))
    return float(np.clip(3.0 * tenth * _HISTOGRAM_STEP + 1.5, *THRESHOLD_RANGE))


def _keep_candidate(scan: _Scan, run: _RunBuffer, end: int, min_hold_s: float, fps: float) -> None:
    """At the end of a provisional hold, keep the decoded frame nearest its middle if it might be a stage."""
    if end < run.start or (end - run.start + 1) / fps < min_hold_s / 2:
        return
    picked = run.nearest((run.start + end) / 2)
    if picked is None or scan.candidate_bytes >= MAX_CANDIDATE_BYTES:
        return
    index, frame = picked
    scan.candidates[index] = frame
    scan.candidate_bytes += sum(plane.buffer_size for plane in frame.planes)


def _holds(scan: _Scan, threshold: float, min_hold_s: float, fps: float) -> list[tuple[int, int]]:
    """(first, last) frame indices of each hold, with the whole-recording threshold."""
    runs: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(scan.times)):
        drift = float(np.abs(scan.grids[index] - scan.grids[start]).max())
        if scan.scores[index] > threshold or drift > threshold:
            runs.append((start, index - 1))
            start = index
    runs.append((start, len(scan.times) - 1))
    holds: list[tuple[int, int]] = []
    for start, end in runs:
        if scan.times[end] - scan.times[start] + 1 / fps < min_hold_s - 1e-6:
            continue
        if holds and _same_picture(scan, holds[-1], (start, end), threshold):
            continue
        holds.append((start, end))
    return holds


def _same_picture(scan: _Scan, kept: tuple[int, int], new: tuple[int, int], threshold: float) -> bool:
    middle_kept, middle_new = sum(kept) // 2, sum(new) // 2
    return float(np.abs(scan.grids[middle_new] - scan.grids[middle_kept]).max()) <= threshold


def _choose(scan: _Scan, holds: list[tuple[int, int]]) -> list[int]:
    """Per hold, the kept candidate nearest its middle if one lies inside it, else the exact middle."""
    kept = np.asarray(sorted(scan.candidates), np.int64)
    chosen = []
    for start, end in holds:
        middle = (start + end) // 2
        inside = kept[(kept >= start) & (kept <= end)]
        chosen.append(int(inside[np.argmin(np.abs(inside - middle))]) if inside.size else middle)
    return chosen


def _fetch(path: Path, info: VideoInfo, indices: list[int], threads: int) -> dict[int, av.VideoFrame]:
    """Second pass for the frames the scan did not keep: decode up to the last one, convert none."""
    wanted = set(indices)
    fetched: dict[int, av.VideoFrame] = {}
    for index, frame in enumerate(_decode(path, info, threads)):
        if index in wanted:
            fetched[index] = frame
            if len(fetched) == len(wanted):
                break
    if len(fetched) != len(wanted):
        raise ValidationError("The recording could not be decoded the same way twice; re-export it.")
    return fetched


def _to_rgb(frame: av.VideoFrame, box: CropBox) -> np.ndarray:
    # The colour matrix follows the frame's tag; the range must be passed (PyAV assumes limited range).
    options = {"src_color_range": frame.color_range} if frame.color_range else {}
    rgb = frame.to_ndarray(format="rgb24", **options)
    return np.ascontiguousarray(rgb[box.y : box.y + box.h, box.x : box.x + box.w])


# --- messages -------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    """'9 min 59 s', '45 s': durations for messages."""
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _av_reason(error: BaseException) -> str:
    # FFmpeg's message ends with the file name (a temporary path): keep only the reason.
    args = getattr(error, "args", ())
    reason = args[1] if len(args) > 1 and isinstance(args[1], str) else type(error).__name__
    return reason.strip() or type(error).__name__

