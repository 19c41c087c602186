"""Video rendering: the pure plan, and probed properties of real encodes of a moving coloured disc.

Assertions are about what a player sees (codec, profile, size, fps, frame count, pixels of decoded
frames), never about bytes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import ValidationError
from core.rendering import ListSource, RenderCancelled, RenderError
from core.rendering._ffmpeg import FfmpegPipe, file_url
from core.rendering._yuv import i420_to_rgb, rgb_to_i420
from core.rendering.probe import decode_frames, probe_media
from core.rendering.video import (
    PRESETS,
    PlanFrame,
    TitleCard,
    VideoSpec,
    plan,
    render_video,
    render_wipe,
    wipe_positions,
)

W, H = 320, 180
BACKGROUND = (230, 235, 240)
DISC = (200, 30, 40)
RADIUS, START_X, STEP_X, Y = 20, 60, 16, 90
STAGES = 10


def disc_frame(stage: int) -> np.ndarray:
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BACKGROUND
    cv2.circle(image, (START_X + STEP_X * stage, Y), RADIUS, DISC, -1, cv2.LINE_AA)
    return image


@pytest.fixture(scope="module")
def source() -> ListSource:
    return ListSource([disc_frame(i) for i in range(STAGES)])


def small(**changes: object) -> VideoSpec:
    return VideoSpec(preset="720p", size=(W, H), **changes)  # type: ignore[arg-type]


def disc_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of (nearly) the full disc colour — a half-faded crossfade ghost does not count."""
    distance = np.linalg.norm(rgb.astype(np.float32) - np.array(DISC, np.float32), axis=2)
    return distance < 45


def ghost_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels halfway between disc and background (what a crossfade leaves)."""
    half = (np.array(DISC, np.float32) + np.array(BACKGROUND, np.float32)) / 2
    return np.linalg.norm(rgb.astype(np.float32) - half, axis=2) < 30


def first_transition(the_plan, slide: int) -> tuple[int, int, int]:
    """(index of the last still before, index of the weight-0.5 frame, index of the first still after)."""
    indices = [i for i, f in enumerate(the_plan.frames) if f.slide == slide and f.weight > 0]
    middle = next(i for i in indices if abs(the_plan.frames[i].weight - 0.5) < 1e-9)
    return indices[0] - 1, middle, indices[-1] + 1


# --------------------------------------------------------------------------- plan (pure)

def test_plan_of_forty_stages_is_645_frames_with_9_frame_crossfades() -> None:
    the_plan = plan(VideoSpec(), 40)
    assert the_plan.frame_count == 645 and the_plan.duration_s == pytest.approx(21.5)
    blends = [f for f in the_plan.frames if f.weight > 0]
    assert len(blends) == 39 * 9 and {f.mode for f in blends} == {"crossfade"}
    assert [round(f.weight, 3) for f in blends[:9]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert the_plan.frames[-1] == PlanFrame(39)
    assert sum(1 for f in the_plan.frames if f.slide == 39) == 60  # 0.5 s + 1.5 s hold


def test_plan_cut_and_cards() -> None:
    cut = plan(VideoSpec(transition="cut"), 5)
    assert all(f.weight == 0 for f in cut.frames) and cut.frame_count == 5 * 15 + 45
    card = TitleCard(("Brightside Orthodontics", "Treatment simulation", "28 Nov 2026"), seconds=2.0)
    carded = plan(VideoSpec(transition="morph", title_card=card, end_card=TitleCard(("Thank you",), 1.0)), 5)
    assert carded.frame_count == cut.frame_count + 60 + 30
    assert [s.kind for s in carded.slides] == ["title", "stage", "stage", "stage", "stage", "stage", "end"]
    modes = {(carded.slides[f.slide].kind, f.mode) for f in carded.frames if f.weight}
    assert modes == {("title", "crossfade"), ("stage", "morph"), ("stage", "crossfade")}  # cards never morph
    assert carded.overlay_stage(PlanFrame(0, 0.3, "crossfade")) == -1
    assert carded.overlay_stage(PlanFrame(0, 0.7, "crossfade")) == 0


def test_spec_validation_messages() -> None:
    with pytest.raises(ValidationError, match=r"1023×768 has an odd width.*even sizes.*1024×768 \(pad\)"):
        VideoSpec(size=(1023, 768))
    with pytest.raises(ValidationError, match=r"transition_seconds 0\.6 is longer than seconds_per_stage 0\.5"):
        VideoSpec(transition_seconds=0.6)
    with pytest.raises(ValidationError, match="choose one of 720p"):
        VideoSpec(preset="8k")
    with pytest.raises(ValidationError, match=r"crf 60 .* 0 to 51"):
        VideoSpec(crf=60)
    assert VideoSpec(codec="vp9").effective_crf == 31 and VideoSpec().output_size == PRESETS["1080p"]


def test_wipe_positions_sweep_out_and_back() -> None:
    positions = wipe_positions(4.0, 30)
    assert len(positions) == 120 and positions[0] == 0 and positions[-1] == pytest.approx(0, abs=1e-12)
    assert max(positions) == pytest.approx(1, abs=1e-3)


def test_i420_round_trip_is_close() -> None:
    rgb = disc_frame(3)
    back = i420_to_rgb(rgb_to_i420(rgb), W, H)
    assert np.abs(back.astype(int) - rgb).mean() < 1.5


# --------------------------------------------------------------------------- real encodes

def test_h264_mp4_properties(tmp_path: Path, source: ListSource) -> None:
    spec = small()
    out = tmp_path / "render.tmp"  # any name: the container is chosen by the spec, not the suffix
    result = render_video(source, spec, out)
    the_plan = plan(spec, STAGES)
    info = probe_media(out)
    assert (info["codec"], info["profile"], info["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert "mp4" in info["format"] and info["faststart"] is True
    assert (info["color_space"], info["color_range"]) == ("bt709", "tv")
    assert (info["width"], info["height"], info["fps"]) == (W, H, 30.0)
    assert info["frames"] == the_plan.frame_count == result.frames
    assert info["duration"] == pytest.approx(the_plan.duration_s, abs=1 / 30)
    assert result.bytes == out.stat().st_size and result.codec == "h264"
    assert not {"title", "comment", "artist", "author", "description"} & {k.lower() for k in info["metadata"]}


def test_vp9_webm(tmp_path: Path, source: ListSource) -> None:
    spec = small(codec="vp9", transition="cut")
    result = render_video(source, spec, tmp_path / "render.webm")
    info = probe_media(tmp_path / "render.webm")
    assert info["codec"] == "vp9" and "webm" in info["format"] and info["pix_fmt"] == "yuv420p"
    assert info["frames"] == plan(spec, STAGES).frame_count == result.frames
    assert spec.container == "webm"


def test_crossfade_middle_frame_is_a_blend_and_overlay_runs_once_per_stage(tmp_path: Path,
                                                                           source: ListSource) -> None:
    calls: list[int] = []

    def overlay(rgb: np.ndarray, stage: int) -> np.ndarray:
        calls.append(stage)
        return rgb

    spec = small(crf=10)
    render_video(source, spec, tmp_path / "xf.mp4", overlay=overlay)
    assert sorted(calls) == list(range(STAGES))
    before, middle, after = first_transition(plan(spec, STAGES), 0)
    frames = decode_frames(tmp_path / "xf.mp4", {before, middle, after})
    expected = (frames[before].astype(np.float32) + frames[after]) / 2
    assert np.abs(frames[middle] - expected).mean() < 2.0
    assert ghost_mask(frames[middle]).sum() > 0.3 * math.pi * RADIUS**2  # two half-faded discs


def test_morph_glides_the_disc_to_the_midpoint(tmp_path: Path, source: ListSource) -> None:
    render_video(source, small(transition="morph", crf=10), tmp_path / "morph.mp4")
    render_video(source, small(crf=10), tmp_path / "xf.mp4")
    _, middle, _ = first_transition(plan(small(transition="morph"), STAGES), 2)  # stage 2 -> 3
    morph = decode_frames(tmp_path / "morph.mp4", {middle})[middle]
    crossfade = decode_frames(tmp_path / "xf.mp4", {middle})[middle]
    assert np.abs(morph.astype(int) - crossfade).mean() > 0.5
    disc_area = math.pi * RADIUS**2
    mask = disc_mask(morph)
    ys, xs = np.nonzero(mask)
    assert mask.sum() > 0.85 * disc_area  # one whole disc, not two ghosts
    assert xs.mean() == pytest.approx(START_X + STEP_X * 2.5, abs=2.0)
    assert ys.mean() == pytest.approx(Y, abs=2.0)
    assert ghost_mask(morph).sum() < 0.15 * disc_area
    assert disc_mask(crossfade).sum() < 0.75 * disc_area  # crossfade: only the overlap is full colour


def test_title_and_end_cards_add_their_frames(tmp_path: Path, source: ListSource) -> None:
    spec = small(title_card=TitleCard(("Brightside Orthodontics", "Treatment simulation"), seconds=1.0),
                 end_card=TitleCard(("Thank you",), seconds=1.0), transition="cut")
    result = render_video(source, spec, tmp_path / "cards.mp4")
    assert result.frames == plan(small(transition="cut"), STAGES).frame_count + 60
    assert probe_media(tmp_path / "cards.mp4")["frames"] == result.frames
    frames = decode_frames(tmp_path / "cards.mp4", {0, 15, 40, result.frames - 1})
    title = frames[15]
    assert (title.astype(int).sum(axis=2) < 300).sum() > 100  # dark heading text on the white card
    assert not disc_mask(title).any() and disc_mask(frames[40]).any()
    assert np.abs(frames[0].astype(int) - title).mean() < 1.0  # the card holds still


def test_odd_output_size_is_rejected_before_encoding(tmp_path: Path, source: ListSource) -> None:
    with pytest.raises(ValidationError, match=r"321×180 has an odd width.*choose 322×180 \(pad\)"):
        render_video(source, VideoSpec(size=(321, 180)), tmp_path / "odd.mp4")
    assert not (tmp_path / "odd.mp4").exists()


def test_bad_frame_names_its_index(tmp_path: Path) -> None:
    frames = [disc_frame(0), disc_frame(1), np.zeros((H, W), np.uint8)]
    with pytest.raises(ValidationError, match="frame 2 must be an RGB uint8 array"):
        render_video(ListSource(frames), small(transition="cut"), tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


def test_cancel_stops_and_deletes_the_partial_file(tmp_path: Path, source: ListSource) -> None:
    out = tmp_path / "cancel.mp4"
    polls = {"n": 0}

    def cancelled() -> bool:
        polls["n"] += 1
        if polls["n"] <= 40:
            return False
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:  # let ffmpeg create the partial file
            time.sleep(0.01)
        assert out.exists()
        return True

    progress: list[float] = []
    with pytest.raises(RenderCancelled):
        render_video(source, small(), out, cancelled=cancelled, progress=lambda f, _m: progress.append(f))
    assert not out.exists() and polls["n"] == 41
    assert progress and progress[-1] < 0.5


def test_wipe_reveals_predicted_left_of_the_divider(tmp_path: Path) -> None:
    before, after = disc_frame(0), disc_frame(STAGES - 1)
    spec = small(transition="cut")
    result = render_wipe(before, after, spec, tmp_path / "wipe.mp4", seconds=2.0)
    assert result.frames == 60 and probe_media(tmp_path / "wipe.mp4")["frames"] == 60
    frames = decode_frames(tmp_path / "wipe.mp4", {0, 30})
    start_x = np.nonzero(disc_mask(frames[0]))[1].mean()
    assert start_x == pytest.approx(START_X, abs=2)  # all "before"
    xs = np.nonzero(disc_mask(frames[30]))[1]
    assert xs.mean() == pytest.approx(START_X + STEP_X * (STAGES - 1), abs=2)  # fully revealed at the peak

    def has_plate(rgb: np.ndarray, side: str) -> bool:
        corner = rgb[:30, -100:] if side == "right" else rgb[:30, :100]
        return bool((corner.astype(int).sum(axis=2) < 250).sum() > 50)  # the dark label plate

    # Each label belongs to its picture: "Before" top-right at the start, "Predicted" top-left at the peak.
    assert has_plate(frames[0], "right") and not has_plate(frames[0], "left")
    assert has_plate(frames[30], "left") and not has_plate(frames[30], "right")


def test_encoder_failure_and_timeout_raise_render_errors(tmp_path: Path, caplog) -> None:
    raw = ["-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "16x16", "-i", "pipe:0"]
    frame = np.zeros((16, 16), np.uint8)
    broken = FfmpegPipe([*raw, "-f", "no_such_muxer", file_url(tmp_path / "x")], timeout_s=30)
    with pytest.raises(RenderError, match="encoder could not make this file") as failure:
        for _ in range(2000):  # ffmpeg exits at once; a write or the final wait reports it
            broken.write(frame)
        broken.finish()
    broken.abort()
    assert "no_such_muxer" not in str(failure.value)  # the user gets a short message ...
    assert "no_such_muxer" in caplog.text  # ... and the encoder's own words go to the log
    slow = FfmpegPipe([*raw, "-f", "null", "-"], timeout_s=0.3)
    time.sleep(0.6)  # the watchdog kills ffmpeg at the deadline
    with pytest.raises(RenderError, match="took longer than"):
        for _ in range(2000):
            slow.write(frame)
        slow.finish()
    slow.abort()
