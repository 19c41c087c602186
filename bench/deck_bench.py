"""Consult deck build time: a 12-slide deck (1920x1080 pictures, one embedded ~10 s 1080p MP4).

Pure builders only (no servers). The MP4 and the images are generated first and not timed; each
build runs `REPEATS` times and the median is reported. The last two lines are the figures:

    deck12_pptx_seconds: N
    deck12_pdf_seconds: N

Run: cd bench && ../.venv/bin/python deck_bench.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
import numpy as np

from core.decks.model import Branding, SlideContent
from core.decks.pdf import build_pdf
from core.decks.pptx import build_pptx

REPEATS = 3
SIZE = (1920, 1080)
VIDEO_SECONDS, VIDEO_FPS = 10, 25


def gradient(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth RGB test picture that differs per seed (compresses like a photo, not like a flat fill)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    wave = 40 * np.sin((x / 255 * 6 + seed) + (y / 255 * 4))
    red = np.clip(np.broadcast_to(x, (height, width)) + wave, 0, 255)
    green = np.broadcast_to(y, (height, width))
    blue = np.clip(128 + wave * 2, 0, 255)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def make_video(path: Path) -> Path:
    """~10 s of 1080p H.264 (yuv420p) with motion and grain (a few MB, like a real render), encoded
    ultrafast so set-up stays short."""
    width, height = SIZE
    base = gradient(width, height, 0)
    rng = np.random.default_rng(7)
    grain = [rng.integers(-6, 7, (height, width, 3), dtype=np.int16) for _ in range(4)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(VIDEO_SECONDS * VIDEO_FPS):
            moved = np.roll(base, index * 8, axis=1).astype(np.int16) + grain[index % len(grain)]
            frame = np.clip(moved, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def twelve_slides(video: Path) -> list[SlideContent]:
    pictures = [gradient(*SIZE, seed) for seed in range(10)]
    return [
        SlideContent("title", "Your new smile", lines=("Bench Patient", "Consultation")),
        SlideContent("photo", "Today", images=(pictures[0],)),
        SlideContent("comparison", "Before and predicted", images=(pictures[1], pictures[2])),
        SlideContent("comparison", "Composed comparison", images=(pictures[3],)),
        SlideContent("stage_grid", "Stage by stage", images=tuple(pictures[:6])),
        SlideContent("video", "Animated plan", video_path=video, poster=pictures[0]),
        SlideContent("outcome_card", "Predicted outcome", images=(pictures[6],)),
        SlideContent("photo", "Bite", images=(pictures[7],)),
        SlideContent("stage_grid", "Upper arch", images=tuple(pictures[6:10])),
        SlideContent("summary", "Your plan", lines=("Clear aligners, about 14 months", "Check-ups every 8 weeks")),
        SlideContent("summary", "Next steps", lines=("Scan appointment", "Start treatment")),
        SlideContent("disclaimer", "Please note"),
    ]


def median_seconds(build: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        build()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="deck-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        video = make_video(root / "plan.mp4")
        slides = twelve_slides(video)
        print(f"set-up (video {video.stat().st_size / 1e6:.1f} MB, 12 slides): {time.perf_counter() - started:.1f} s")
        branding = Branding("Bench Orthodontics", footer="Bench")
        pptx_s = median_seconds(lambda: build_pptx(slides, branding, root / "deck.pptx"))
        pdf_s = median_seconds(lambda: build_pdf(slides, branding, root / "deck.pdf"))
        print(f"deck.pptx {(root / 'deck.pptx').stat().st_size / 1e6:.1f} MB, "
              f"deck.pdf {(root / 'deck.pdf').stat().st_size / 1e6:.1f} MB (median of {REPEATS})")
        print(f"deck12_pptx_seconds: {pptx_s:.3f}")
        print(f"deck12_pdf_seconds: {pdf_s:.3f}")


if __name__ == "__main__":
    main()
