"""Screen recordings: probing with limits, and stage-frame detection on synthetic recordings."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from core.errors import ValidationError
from core.fixtures.recordings import make_test_recording, render_stage_still
from core.importing import recording
from core.importing.limits import ImportLimits
from core.importing.recording import CropBox, StageFrame, VideoInfo, detect_stage_frames, probe_video

STAGES = 7
SIZE = (640, 360)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording") / "walkthrough.mp4"
    make_test_recording(path, stages=STAGES, size=SIZE)
    return path


@pytest.fixture(scope="module")
def info(clip: Path) -> VideoInfo:
    return probe_video(clip)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_stages_match(frames: list[StageFrame], size: tuple[int, int] = SIZE) -> None:
    stills = [render_stage_still(stage, stages=STAGES, size=size) for stage in range(1, STAGES + 1)]
    assert len(frames) == STAGES
    assert [frame.time_s for frame in frames] == sorted(frame.time_s for frame in frames)
    for index, frame in enumerate(frames):
        assert frame.frame.shape == (size[1], size[0], 3) and frame.frame.dtype == np.uint8
        errors = [difference(frame.frame, still) for still in stills]
        assert errors[index] < 3.0, f"stage {index + 1} differs from its still by {errors[index]:.2f}"
        assert int(np.argmin(errors)) == index


def test_probe_describes_the_recording(info: VideoInfo) -> None:
    assert (info.container, info.codec, info.width, info.height, info.fps) == ("mp4", "h264", 640, 360, 30.0)
    expected = STAGES * 0.8 + (STAGES - 1) * 0.5
    assert abs(info.duration_s - expected) < 0.1
    assert abs(info.frame_count_estimate - expected * 30) <= 3
    assert info.has_audio is False


def test_detects_each_stage_once_in_order(clip: Path, info: VideoInfo) -> None:
    seen: list[float] = []
    frames = detect_stage_frames(clip, info=info, progress=seen.append)
    assert_stages_match(frames)
    assert all(0.7 <= frame.hold_s <= 1.0 for frame in frames)
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_second_pass_gives_the_same_stages(clip: Path, info: VideoInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    # With no room for candidates, every stage frame is fetched by the conversion-free second pass.
    monkeypatch.setattr(recording, "MAX_CANDIDATE_BYTES", 0)
    assert_stages_match(detect_stage_frames(clip, info=info))


def test_holds_shorter_than_min_hold_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "quick.mp4"
    make_test_recording(path, stages=5, size=(320, 180), hold_s=0.2, move_s=0.5)
    info = probe_video(path)
    assert detect_stage_frames(path, info=info, min_hold_s=0.4) == []
    assert len(detect_stage_frames(path, info=info, min_hold_s=0.15)) == 5


def test_crop_applies_to_detection_and_frames(clip: Path, info: VideoInfo) -> None:
    box = CropBox(x=100, y=60, w=400, h=260)
    frames = detect_stage_frames(clip, info=info, crop=box)
    assert len(frames) == STAGES
    for index, frame in enumerate(frames):
        still = render_stage_still(index + 1, stages=STAGES, size=SIZE)[60:320, 100:500]
        assert frame.frame.shape == (260, 400, 3)
        assert difference(frame.frame, still) < 3.0


@pytest.mark.parametrize(
    ("box", "message"),
    [
        (lambda: CropBox(600, 0, 100, 100), r"reaches outside the 640×360 video"),
        (lambda: CropBox(0, 0, 8, 8), r"too small"),
        (lambda: CropBox(-1, 0, 100, 100), r"must not be negative"),
    ],
)
def test_invalid_crops_are_refused(clip: Path, info: VideoInfo, box: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        detect_stage_frames(clip, info=info, crop=box())  # type: ignore[operator]


def test_webm_vp9_is_supported(tmp_path: Path) -> None:
    path = tmp_path / "walkthrough.webm"
    make_test_recording(path, stages=3, size=(320, 180), codec="libvpx-vp9")
    info = probe_video(path)
    assert (info.container, info.codec) == ("webm", "vp9")
    assert len(detect_stage_frames(path, info=info)) == 3


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ImportLimits(max_video_seconds=5), r"The recording is 9 s long; the limit is 5 s\. Trim it"),
        (ImportLimits(max_video_width=320, max_video_height=240), r"is 640×360 pixels; the limit is 320×240"),
        (ImportLimits(max_video_fps=24), r"runs at 30 frames per second; the limit is 24"),
    ],
)
def test_probe_limits(clip: Path, limits: ImportLimits, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("frames were decoded")

    monkeypatch.setattr(recording, "_decode", no_decoding)
    with pytest.raises(ValidationError, match=message):
        probe_video(clip, limits=limits)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, r"The recording is a PNG image, not an MP4, MOV or WebM video"),
        (b"hello, this is text", r"The recording is of an unknown type"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1", r"could not be read as a video \(.+\); re-export it"),
    ],
)
def test_non_videos_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "recording.mp4"
    path.write_bytes(content)
    with pytest.raises(ValidationError, match=message) as caught:
        probe_video(path)
    assert str(tmp_path) not in str(caught.value)


def test_a_truncated_recording_is_refused(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "cut.mp4"
    path.write_bytes(clip.read_bytes()[:20_000])
    with pytest.raises(ValidationError):
        detect_stage_frames(path, info=probe_video(path))


@pytest.fixture(scope="module")
def faststart_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording") / "faststart.mp4"
    make_test_recording(path, stages=STAGES, size=SIZE, faststart=True)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index comes first, as in web and phone exports
    return path


def test_a_faststart_recording_probes_its_exact_frame_count(faststart_clip: Path) -> None:
    info = probe_video(faststart_clip)
    assert info.stated_frames == info.frame_count_estimate
    assert len(detect_stage_frames(faststart_clip, info=info)) == STAGES


@pytest.mark.parametrize("kept", [0.45, 0.75])
def test_a_recording_cut_off_after_its_index_is_refused_with_what_was_found(tmp_path: Path, faststart_clip: Path,
                                                                            kept: float) -> None:
    data = faststart_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * kept)])
    info = probe_video(cut)  # the header is intact: it still states the whole length
    full = probe_video(faststart_clip)
    assert (info.duration_s, info.stated_frames) == (full.duration_s, full.stated_frames)
    with pytest.raises(ValidationError) as caught:
        detect_stage_frames(cut, info=info)
    message = str(caught.value)
    assert message.startswith("The recording is cut off: its header states ")
    assert f"({full.stated_frames:,} frames), but only the first " in message
    found = re.search(r"could be decoded, showing (\d+) stages?\. The file is incomplete", message)
    assert found is not None, message
    assert 1 <= int(found[1]) < STAGES
    assert "upload the complete recording" in message


def test_without_a_stated_frame_count_the_duration_decides(clip: Path, info: VideoInfo) -> None:
    longer = VideoInfo(info.container, info.codec, info.width, info.height, info.fps, info.duration_s * 2,
                       info.frame_count_estimate * 2, info.has_audio, stated_frames=None)
    expected = (rf"header states {2 * info.duration_s:.1f} s, but only the first {info.duration_s:.1f} s "
                rf"\({info.frame_count_estimate} frames\) could be decoded, showing {STAGES} stages")
    with pytest.raises(ValidationError, match=expected):
        detect_stage_frames(clip, info=longer)
    same = VideoInfo(info.container, info.codec, info.width, info.height, info.fps, info.duration_s,
                     info.frame_count_estimate, info.has_audio, stated_frames=None)
    assert len(detect_stage_frames(clip, info=same)) == STAGES


@pytest.mark.parametrize("pixel_format", ["yuv420p10le", "p010le", "nv12", "yuv444p", "rgb24"])
def test_work_copies_from_any_pixel_format(pixel_format: str) -> None:
    still = render_stage_still(2, stages=3, size=SIZE)
    frame = av.VideoFrame.from_ndarray(still, format="rgb24")
    box = CropBox(0, 0, *SIZE)
    reference = recording._work_copy(frame.reformat(format="yuv420p"), box)
    work = recording._work_copy(frame.reformat(format=pixel_format), box)
    assert work.shape == reference.shape == (90, 160)
    # Luma copies agree to rounding; the RGB fallback differs only by the luma range (scale), not in shape.
    assert np.corrcoef(work.ravel(), reference.ravel())[0, 1] > 0.999


def test_video_info_validates() -> None:
    with pytest.raises(ValidationError, match="codec 'gif'"):
        VideoInfo("mp4", "gif", 10, 10, 30.0, 1.0, 30, False)
