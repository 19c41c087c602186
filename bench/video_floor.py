"""How close the video renderer gets to the encoder's own cost, and how it compares to a naive pipeline.

`measure()` renders 40 in-memory 1920x1080 demo stages (1080p30, 0.5 s per stage, crossfade,
stage caption + outcome stamp burned in) three ways:

1. ours — `core.rendering.video.render_video`.
2. the floor — ffmpeg alone encoding exactly the frames `render_video` sends (precomputed I420,
   piped raw from one thread with the identical argv from `video.ffmpeg_args`). Nothing can be
   faster than this with the same encoder settings, so ours ÷ floor is pure pipeline overhead.
3. naive — a moviepy-style per-frame composition: every output frame is built from scratch with
   Pillow (Image.resize LANCZOS of the source, Image.blend for transitions, ImageDraw caption
   and stamp drawn per frame, converted to numpy) and written through imageio-ffmpeg's writer
   (rgb24 on the pipe). moviepy itself cannot be installed next to Pillow 13, so this equivalent
   stands in for it. The headline `naive_over_video_job` uses *our* encoder settings (libx264
   veryfast, CRF 20, High), so it measures the pipeline alone; it is bounded by naive ÷ floor,
   because ours cannot beat the floor. A second run with the settings moviepy's `write_videofile`
   uses by default (`-preset medium`, x264's default CRF 23) — what a straightforward moviepy
   export would cost — is printed as `naive_moviepy_defaults_over_video_job`.

It also times a GIF of the same stages and a 10-page 300-DPI A4 PDF of 1920x1080 sources.
Video timings are the best of three runs (ours and the floor alternate, so both see the same machine
load). Run: `.venv/bin/python bench/video_floor.py`. Goals: ours/floor <= 1.15, naive/ours >= 3,
PDF <= 2 s.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.demo.arches import ArchCase, render_stage
from core.imaging.overlays import OverlaySpec, apply_overlays, font
from core.rendering import ListSource, Overlay
from core.rendering._ffmpeg import ffmpeg_exe
from core.rendering.gif import GifSpec, render_gif
from core.rendering.pdf import PdfPage, PdfSpec, render_pdf
from core.rendering.video import Plan, VideoSpec, ffmpeg_args, iter_frames, plan, render_video


def demo_stages(stages: int, size: tuple[int, int]) -> list[np.ndarray]:
    """`stages` distinct demo frames at `size` (rendered at half size and upscaled: 4x faster to make)."""
    case = ArchCase(seed=5, crowding=1.2)
    half = (size[0] // 2, size[1] // 2)
    return [cv2.resize(render_stage(case, s, stages, "front", half), size, interpolation=cv2.INTER_CUBIC)
            for s in range(stages)]


def caption_overlay(stages: int) -> Overlay:
    def overlay(rgb: np.ndarray, stage: int) -> np.ndarray:
        return apply_overlays(rgb, OverlaySpec(stage_label=f"Stage {stage + 1} of {stages}"))

    return overlay


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def precomputed_frames(frames: list[np.ndarray], spec: VideoSpec, overlay: Overlay) -> list[np.ndarray]:
    """Exactly the I420 frames render_video pipes, materialised (repeats share one array)."""
    out: list[np.ndarray] = []
    previous = None
    for frame in iter_frames(ListSource(frames), spec, overlay=overlay):
        # Transition frames come from a reused ring buffer, so keep copies; a repeated still is shared.
        out.append(out[-1] if frame is previous else frame.copy())
        previous = frame
    return out


def ffmpeg_floor(i420: list[np.ndarray], spec: VideoSpec, out_path: Path) -> float:
    """Seconds for ffmpeg alone to encode the precomputed frames (same argv as render_video)."""
    start = time.perf_counter()
    proc = subprocess.Popen([ffmpeg_exe(), *ffmpeg_args(spec, out_path)], stdin=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    for frame in i420:
        proc.stdin.write(frame.data)
    proc.stdin.close()
    if proc.wait(timeout=600) != 0:
        raise RuntimeError("ffmpeg failed")
    return time.perf_counter() - start


#: moviepy's write_videofile defaults (preset "medium", no CRF -> x264's 23) vs our settings.
MOVIEPY_DEFAULTS = ["-preset", "medium"]
OUR_ENCODER = ["-preset", "veryfast", "-crf", "20", "-profile:v", "high"]


def naive_render(frames: list[np.ndarray], the_plan: Plan, size: tuple[int, int], out_path: Path,
                 encoder: list[str]) -> None:
    """The moviepy-style pipeline described in the module docstring."""
    import imageio_ffmpeg
    from PIL import Image, ImageDraw

    caption_font, stamp_font = font(35), font(35)
    writer = imageio_ffmpeg.write_frames(str(out_path), size, fps=the_plan.fps, codec="libx264", quality=None,
                                         macro_block_size=1, ffmpeg_log_level="error",
                                         output_params=[*encoder, "-movflags", "+faststart"])
    writer.send(None)

    def build(stage: int) -> Image.Image:
        return Image.fromarray(frames[stage]).resize(size, Image.Resampling.LANCZOS)

    for item in the_plan.frames:
        stage = the_plan.slides[item.slide].stage
        image = build(stage)
        if item.weight:
            image = Image.blend(image, build(the_plan.slides[item.slide + 1].stage), item.weight)
        draw = ImageDraw.Draw(image)
        shown = the_plan.overlay_stage(item)
        draw.rounded_rectangle((20, size[1] - 150, 380, size[1] - 90), radius=14, fill=(40, 48, 60))
        draw.text((40, size[1] - 140), f"Stage {shown + 1} of {len(frames)}", font=caption_font, fill="white")
        draw.rectangle((0, size[1] - 70, size[0], size[1]), fill=(40, 48, 60))
        draw.text((size[0] // 2 - 380, size[1] - 58), "Simulated outcome - not a guarantee of results",
                  font=stamp_font, fill="white")
        writer.send(np.asarray(image))
    writer.close()


def pdf10(frames: list[np.ndarray], out_path: Path) -> float:
    pages = [PdfPage("cover", "Treatment simulation", ("Demo clinic", "Simulation v1", "Approved"))]
    pages += [PdfPage("comparison", f"Stage {i} vs final", images=(frames[i], frames[-1]),
                      captions=(f"Stage {i + 1}", "Predicted")) for i in range(0, 20, 4)]
    pages += [PdfPage("image", f"Stage {i + 1}", images=(frames[i],)) for i in (10, 20, 30)]
    pages += [PdfPage("grid", "Overview", images=tuple(frames[::5]), captions=tuple(f"Stage {i + 1}" for i in
                                                                                   range(0, len(frames), 5)))]
    start = time.perf_counter()
    result = render_pdf(pages, PdfSpec("a4", "portrait"), out_path, footer="Demo clinic")
    seconds = time.perf_counter() - start
    assert result.pages == 10, result.pages
    assert result.min_effective_dpi is not None and result.min_effective_dpi >= 300
    return seconds


def measure(stages: int = 40, size: tuple[int, int] = (1920, 1080), fps: int = 30,
            seconds_per_stage: float = 0.5) -> dict[str, float]:
    """Run all measurements and print them; the last five lines are the headline figures."""
    start = time.perf_counter()
    frames = demo_stages(stages, size)
    print(f"made {stages} stages at {size[0]}x{size[1]} in {time.perf_counter() - start:.1f} s")
    spec = VideoSpec(size=size, fps=fps, seconds_per_stage=seconds_per_stage, transition="crossfade")
    overlay = caption_overlay(stages)
    source = ListSource(frames)
    the_plan = plan(spec, stages)
    i420 = precomputed_frames(frames, spec, overlay)
    with tempfile.TemporaryDirectory(prefix="video-floor-") as tmp:
        root = Path(tmp)
        ours_runs, floor_runs = [], []
        for _ in range(3):
            ours_runs.append(_timed(lambda: render_video(source, spec, root / "ours.mp4", overlay=overlay)))
            floor_runs.append(ffmpeg_floor(i420, spec, root / "floor.mp4"))
        ours, floor = min(ours_runs), min(floor_runs)
        naive = _timed(lambda: naive_render(frames, the_plan, size, root / "naive.mp4", OUR_ENCODER))
        naive_moviepy = _timed(lambda: naive_render(frames, the_plan, size, root / "naive2.mp4", MOVIEPY_DEFAULTS))
        gif_start = time.perf_counter()
        gif = render_gif(source, GifSpec(), root / "stages.gif", overlay=overlay)
        gif_seconds = time.perf_counter() - gif_start
        pdf_seconds = pdf10(frames, root / "ten.pdf")
    print(f"frames: {the_plan.frame_count} ({the_plan.duration_s:.1f} s of video)")
    print(f"video_job_seconds: {ours:.2f} (runs {', '.join(f'{r:.2f}' for r in ours_runs)})")
    print(f"ffmpeg_floor_seconds: {floor:.2f} (runs {', '.join(f'{r:.2f}' for r in floor_runs)})")
    print(f"naive_seconds: {naive:.2f} (our encoder settings); with moviepy's defaults: {naive_moviepy:.2f}")
    print(f"naive_moviepy_defaults_over_video_job: {naive_moviepy / ours:.2f}")
    print(f"gif: {gif.width}x{gif.height} @ {gif.fps} fps, {gif.frames} frames, attempts: {list(gif.attempts)}")
    figures = {"video_job_over_ffmpeg_floor": ours / floor, "naive_over_video_job": naive / ours,
               "gif_seconds": gif_seconds, "gif_megabytes": gif.bytes / 2**20, "pdf10_seconds": pdf_seconds}
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    return figures


if __name__ == "__main__":
    measure()
