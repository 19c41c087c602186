"""GIF budget fitting, PDF page sizes / effective DPI / metadata, and the frames ZIP manifest."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import ValidationError
from core.imaging import encode_png
from core.rendering import ListSource
from core.rendering.archive import frames_zip
from core.rendering.gif import MIN_FPS, MIN_WIDTH, GifSpec, render_gif
from core.rendering.pdf import CREATOR, PdfPage, PdfSpec, place_image, render_pdf
from core.rendering.probe import pdf_info, probe_media
from core.rendering.video import VideoSpec, plan

PATIENT = "Jane Q. Patient"
FIXED_DATE = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def disc_frame(stage: int, width: int = 320, height: int = 180) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (230, 235, 240)
    cv2.circle(image, (width // 5 + 16 * stage, height // 2), height // 9, (200, 30, 40), -1, cv2.LINE_AA)
    return image


def noisy_frame(stage: int) -> np.ndarray:
    """Incompressible content: forces the GIF budget logic to act."""
    return np.random.default_rng(stage).integers(0, 256, (270, 480, 3), dtype=np.uint8)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic 'photo' (gradients + discs) of the given size."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.dstack([xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1),
                       np.full((height, width), 90 + seed * 20)]).astype(np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 4, (250, 250, 240), -1, cv2.LINE_AA)
    return image


# --------------------------------------------------------------------------- GIF

def test_gif_fits_the_budget_first_time(tmp_path: Path) -> None:
    source = ListSource([disc_frame(i) for i in range(8)])
    spec = GifSpec(max_width=320)
    result = render_gif(source, spec, tmp_path / "a.gif")
    assert result.bytes == (tmp_path / "a.gif").stat().st_size <= spec.max_bytes
    assert (result.width, result.height, result.fps) == (320, 180, 10)
    assert len(result.attempts) == 1 and "fits" in result.attempts[0]
    info = probe_media(tmp_path / "a.gif")
    assert (info["width"], info["height"], info["loop"]) == (320, 180, 0)
    expected = plan(VideoSpec(size=(320, 180), fps=10, seconds_per_stage=0.5, hold_final_seconds=1.5), 8)
    assert info["frames"] == result.frames == expected.frame_count
    assert info["duration"] == pytest.approx(expected.duration_s, abs=0.05)


QUICK = {"max_width": 480, "transition": "cut", "seconds_per_stage": 0.2, "hold_final_seconds": 0.0}


def test_gif_shrinks_width_then_fps_to_fit_a_tiny_budget(tmp_path: Path) -> None:
    source = ListSource([noisy_frame(i) for i in range(3)])
    big = render_gif(source, GifSpec(**QUICK), tmp_path / "big.gif")
    budget = big.bytes // 3
    small = render_gif(source, GifSpec(**QUICK, max_bytes=budget), tmp_path / "small.gif")
    assert small.bytes <= budget and small.width < big.width
    assert len(small.attempts) >= 2 and "over" in small.attempts[0] and "fits" in small.attempts[-1]
    assert probe_media(tmp_path / "small.gif")["width"] == small.width


def test_gif_that_cannot_fit_raises_and_leaves_no_file(tmp_path: Path) -> None:
    source = ListSource([noisy_frame(i) for i in range(3)])
    with pytest.raises(ValidationError, match=f"even at {MIN_WIDTH} px and {MIN_FPS} fps"):
        render_gif(source, GifSpec(**QUICK, max_bytes=10_000), tmp_path / "none.gif")
    assert not (tmp_path / "none.gif").exists()


def test_gif_spec_validation() -> None:
    with pytest.raises(ValidationError, match="morph needs video"):
        GifSpec(transition="morph")
    with pytest.raises(ValidationError, match="max_width 100"):
        GifSpec(max_width=100)


# --------------------------------------------------------------------------- PDF

def document() -> list[PdfPage]:
    frames = [photo(1920, 1080, i % 4) for i in range(8)]
    return [
        PdfPage("cover", "Treatment simulation", ("Brightside Orthodontics", "Simulation v3 — approved 28 Nov 2026")),
        PdfPage("comparison", f"{PATIENT} — before and predicted", ("Simulated outcome",), (frames[0], frames[7]),
                ("Before", "Predicted")),
        PdfPage("grid", "All stages", images=tuple(frames), captions=tuple(f"Stage {i + 1}" for i in range(8)),
                columns=2),
        PdfPage("image", "Predicted outcome", images=(frames[7],), captions=("Stage 8",)),
    ]


@pytest.mark.parametrize(("paper", "orientation", "size_mm"), [("a4", "portrait", (210.0, 297.0)),
                                                               ("a4", "landscape", (297.0, 210.0)),
                                                               ("letter", "portrait", (215.9, 279.4))])
def test_pdf_pages_sizes_and_dpi(tmp_path: Path, paper: str, orientation: str, size_mm: tuple[float, float]) -> None:
    out = tmp_path / "doc.pdf"
    result = render_pdf(document(), PdfSpec(paper, orientation), out, footer=f"{PATIENT} · Brightside",
                        creation_date=FIXED_DATE)
    info = pdf_info(out)
    assert info["pages"] == result.pages >= 4
    assert all(size == pytest.approx(size_mm, abs=0.01) for size in info["page_sizes_mm"])
    assert len(info["images"]) == len(result.placements) == 2 + 8 + 1
    assert all(image["dpi"] >= 300 and image["filter"] == "DCTDecode" for image in info["images"])
    assert result.min_effective_dpi is not None and result.min_effective_dpi >= 300
    assert min(image["dpi"] for image in info["images"]) == pytest.approx(result.min_effective_dpi, rel=1e-3)
    assert result.bytes == out.stat().st_size


def test_pdf_grid_paginates(tmp_path: Path) -> None:
    images = tuple(photo(800, 450, i % 4) for i in range(20))
    result = render_pdf([PdfPage("grid", "Stages", images=images, columns=3)], PdfSpec(), tmp_path / "grid.pdf")
    info = pdf_info(tmp_path / "grid.pdf")
    assert result.pages == info["pages"] >= 2
    assert sorted({image["page"] for image in info["images"]}) == list(range(1, result.pages + 1))


def test_pdf_metadata_has_no_patient_data(tmp_path: Path) -> None:
    out = tmp_path / "doc.pdf"
    render_pdf(document(), PdfSpec(), out, footer=PATIENT, creation_date=FIXED_DATE)
    metadata = pdf_info(out)["info"]
    assert set(metadata) <= {"Creator", "Producer", "CreationDate"}
    assert metadata["Creator"] == CREATOR and metadata["CreationDate"].startswith("D:20261128093000")
    assert not any(word in value for value in metadata.values() for word in ("Jane", "Patient", "Brightside"))
    assert b"/Title" not in out.read_bytes() and b"/Author" not in out.read_bytes()


def test_small_images_shrink_instead_of_upscaling(tmp_path: Path) -> None:
    tiny = photo(300, 200)
    result = render_pdf([PdfPage("image", "Small source", images=(tiny,))], PdfSpec(), tmp_path / "small.pdf")
    (placement,) = result.placements
    assert (placement.width_px, placement.height_px) == (300, 200)  # never upscaled
    assert placement.width_mm == pytest.approx(25.4, rel=0.01) and placement.dpi >= 300
    (image,) = pdf_info(tmp_path / "small.pdf")["images"]
    assert (image["width_px"], image["height_px"]) == (300, 200) and image["dpi"] >= 300


def test_place_image_downscales_to_exactly_the_needed_pixels() -> None:
    (x, y, w, h), (px_w, px_h) = place_image((1920, 1080), (10.0, 20.0, 80.0, 200.0), 300)
    assert (w, x) == (pytest.approx(80.0), pytest.approx(10.0))
    assert px_w == pytest.approx(80 / 25.4 * 300, abs=2) and px_w / (w / 25.4) >= 300
    assert px_h / (h / 25.4) >= 300 and y > 20.0  # centred vertically in the tall cell


def test_pdf_page_validation() -> None:
    with pytest.raises(ValidationError, match="comparison page needs exactly 2 images"):
        PdfPage("comparison", "x", images=(photo(10, 10),))
    with pytest.raises(ValidationError, match="2 images but 1 captions"):
        PdfPage("comparison", "x", images=(photo(10, 10), photo(10, 10)), captions=("a",))
    with pytest.raises(ValidationError, match="Paper 'a3'"):
        PdfSpec(paper="a3")


NAMES = ("José Müller-Łukasz", "Ελένη Παπαδοπούλου", "Анна Иванова", "山田太郎", "김민준", "张伟")


def embedded_fonts(data: bytes) -> tuple[list[bytes], int]:
    """(BaseFont names, how many font descriptors carry an embedded font file) of a PDF."""
    names = re.findall(rb"/BaseFont\s*/([^\s/<>\[\]]+)", data)
    objects = re.findall(rb"\d+ 0 obj\s*<<(.*?)>>\s*(?:stream|endobj)", data, re.S)
    descriptors = [o for o in objects if re.search(rb"/Type\s*/FontDescriptor", o)]
    return names, sum(1 for d in descriptors if re.search(rb"/FontFile[23]?\b", d))


def test_pdf_text_in_every_script_is_printed_with_embedded_fonts(tmp_path: Path) -> None:
    pages = [PdfPage("cover", "Treatment simulation", lines=tuple(f"Patient: {n}" for n in NAMES)),
             PdfPage("image", "Σύγκριση — сравнение", images=(photo(800, 600),), captions=("山田 · Анна",))]
    out = tmp_path / "names.pdf"
    render_pdf(pages, PdfSpec(), out, footer="Clínica Ñandú")
    data = out.read_bytes()
    names, embedded = embedded_fonts(data)
    assert b"Helvetica" not in data and names, names
    descriptors = len(re.findall(rb"/Type\s*/FontDescriptor", data))
    assert descriptors >= 2 and embedded == descriptors  # the main face and the CJK fallback, both embedded
    if shutil.which("pdffonts"):
        table = subprocess.run(["pdffonts", str(out)], capture_output=True, text=True, check=True).stdout
        rows = table.splitlines()[2:]
        assert rows and all(" yes " in row for row in rows), table  # emb = yes for every font
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
        for name in NAMES:
            assert name in text, (name, text)


def test_a_latin_only_pdf_does_not_carry_the_large_cjk_font(tmp_path: Path) -> None:
    out = tmp_path / "latin.pdf"
    render_pdf([PdfPage("cover", "Treatment simulation", lines=("Patient: José Müller",))], PdfSpec(), out)
    assert out.stat().st_size < 100_000 and b"CJK" not in out.read_bytes()


def test_pdf_is_deterministic_with_a_fixed_date(tmp_path: Path) -> None:
    pages = document()[:2]
    render_pdf(pages, PdfSpec(), tmp_path / "a.pdf", creation_date=FIXED_DATE)
    render_pdf(pages, PdfSpec(), tmp_path / "b.pdf", creation_date=FIXED_DATE)
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


# --------------------------------------------------------------------------- ZIP

def test_frames_zip_manifest_hashes(tmp_path: Path) -> None:
    items = [(f"stage-{i:02d}.png", encode_png(disc_frame(i)).data) for i in range(3)] + [("notes.txt", b"hello")]
    out = tmp_path / "frames.zip"
    written = frames_zip(items, {"simulation": "v3", "stages": 3}, out)
    assert written == out.stat().st_size
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [name for name, _ in items] + ["manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.getinfo("stage-00.png").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("notes.txt").compress_type == zipfile.ZIP_DEFLATED
        for entry, (name, data) in zip(manifest["files"], items, strict=True):
            assert entry == {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            assert archive.read(name) == data
    assert manifest["simulation"] == "v3" and manifest["stages"] == 3


@pytest.mark.parametrize("name", ["../evil.png", "dir/a.png", "manifest.json", "", ".hidden"])
def test_frames_zip_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError):
        frames_zip([(name, b"x")], {}, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
