"""Consult decks: PowerPoint (embedded MP4, notes, 16:9, clean metadata), PDF / handout, consult pack.

Pure builders only (no servers): run with --noconftest.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pptx import Presentation

from core.decks.model import DISCLAIMER, TEMPLATES, Branding, SlideContent, default_notes
from core.decks.pack import INDEX_NAME, build_pack
from core.decks.pdf import build_pdf
from core.decks.pptx import build_pptx
from core.errors import ValidationError
from core.rendering.probe import pdf_info

FAKE_PATIENT = "Zebulon Quillfeather"
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SLIDE_NS = {"p": "http://schemas.openxmlformats.org/presentationml/2006/main",
            "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
            "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}


def gradient(width: int, height: int, seed: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    red = np.broadcast_to(x, (height, width))
    green = np.broadcast_to(y, (height, width))
    blue = np.full((height, width), (seed * 37) % 256, np.float32)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def make_mp4(path: Path, size: tuple[int, int] = (320, 180), seconds: float = 1.0, fps: int = 25) -> Path:
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(gradient(width, height, index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def logo_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (240, 80), (15, 118, 110, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def twelve_slides(video: Path) -> list[SlideContent]:
    full_hd = [gradient(1920, 1080, seed) for seed in range(8)]
    return [
        SlideContent("title", "Your new smile", lines=(FAKE_PATIENT, "Consultation, 2 January 2025")),
        SlideContent("photo", "Today", images=(full_hd[0],), caption="Current smile"),
        SlideContent("comparison", "Before and predicted", images=(full_hd[1], full_hd[2]),
                     notes="Point out the midline."),
        SlideContent("comparison", "Composed comparison", images=(full_hd[3],)),
        SlideContent("stage_grid", "Stage by stage", images=tuple(full_hd[:6]), caption="Stages 1-6"),
        SlideContent("video", "Animated plan", video_path=video, poster=gradient(320, 180, 0),
                     caption="About 1 second"),
        SlideContent("outcome_card", "Predicted outcome", images=(full_hd[4],)),
        SlideContent("photo", "Bite", images=(gradient(1080, 1920, 3),)),
        SlideContent("stage_grid", "Upper arch", images=tuple(full_hd[4:8])),
        SlideContent("summary", "Your plan", lines=("Clear aligners, about 14 months", "Check-ups every 8 weeks")),
        SlideContent("summary", "Next steps", lines=("Scan appointment", "Start treatment"), caption="Questions?"),
        SlideContent("disclaimer", "Please note", lines=("Results depend on wearing the aligners as directed.",)),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("decks")
    # A patient-looking file name: it must not leak into the deck (shape names, metadata).
    video = make_mp4(root / f"{FAKE_PATIENT.replace(' ', '_')}.mp4")
    slides = twelve_slides(video)
    branding = Branding("Bright Smiles Orthodontics", footer="Tel 555 0100", logo_png=logo_png())
    calls: list[tuple[float, str]] = []
    pptx = build_pptx(slides, branding, root / "deck.pptx", created=WHEN, progress=lambda f, m: calls.append((f, m)))
    pdf = build_pdf(slides, branding, root / "deck.pdf", created=WHEN)
    handout = build_pdf(slides, branding, root / "handout.pdf", handout=True, per_page=3, created=WHEN)
    return {"root": root, "video": video, "slides": slides, "branding": branding, "pptx": pptx, "pdf": pdf,
            "handout": handout, "progress": calls}


# --------------------------------------------------------------------------- PowerPoint

def test_pptx_slides_in_order_with_notes_and_16_9(built):
    prs = Presentation(str(built["root"] / "deck.pptx"))
    slides = built["slides"]
    assert built["pptx"].slides == len(prs.slides) == 12
    assert (prs.slide_width, prs.slide_height) == (12_192_000, 6_858_000)
    assert abs(prs.slide_width / prs.slide_height - 16 / 9) < 1e-9
    assert [slide.shapes.title.text for slide in prs.slides] == [content.title for content in slides]
    for slide, content in zip(prs.slides, slides, strict=True):
        assert slide.has_notes_slide
        notes = slide.notes_slide.notes_text_frame.text
        assert notes.strip() and notes == default_notes(content)
        for shape in slide.shapes:  # nothing hangs off the slide
            assert shape.left >= 0 and shape.top >= 0
            assert shape.left + shape.width <= prs.slide_width and shape.top + shape.height <= prs.slide_height
    assert prs.slides[2].notes_slide.notes_text_frame.text == "Point out the midline."
    assert DISCLAIMER in prs.slides[11].notes_slide.notes_text_frame.text
    texts = " ".join(shape.text_frame.text for shape in prs.slides[11].shapes if shape.has_text_frame)
    assert DISCLAIMER in texts
    assert [f for f, _ in built["progress"]] == sorted(f for f, _ in built["progress"])
    assert built["progress"][-1] == (1.0, "Deck ready")


def test_pptx_embeds_the_movie_with_poster(built):
    path = built["root"] / "deck.pptx"
    with zipfile.ZipFile(path) as package:
        movies = [name for name in package.namelist() if re.fullmatch(r"ppt/media/[^/]+\.mp4", name)]
        assert len(movies) == 1 and movies[0] in built["pptx"].media
        assert package.read(movies[0]) == built["video"].read_bytes()
        names = " ".join(package.namelist())
        assert FAKE_PATIENT.replace(" ", "_") not in names
    prs = Presentation(str(path))
    video_slide = prs.slides[5]
    xml = video_slide._element
    assert xml.findall(".//a:videoFile", SLIDE_NS) and xml.findall(".//p:video", SLIDE_NS)
    assert FAKE_PATIENT.replace(" ", "_").encode() not in video_slide.part.blob
    movie = next(shape for shape in video_slide.shapes if shape._element.findall(".//a:videoFile", SLIDE_NS))
    link = movie._element.find(".//a:videoFile", SLIDE_NS).get(f"{{{SLIDE_NS['r']}}}link")
    assert video_slide.part.related_part(link).partname.endswith(".mp4")
    blip = movie._element.find(".//a:blip", SLIDE_NS).get(f"{{{SLIDE_NS['r']}}}embed")
    poster = video_slide.part.related_part(blip)
    assert poster.content_type.startswith("image/")
    assert Image.open(io.BytesIO(poster.blob)).size == (320, 180)
    assert abs(movie.width / movie.height - 16 / 9) < 0.01


def test_pptx_pictures_keep_full_resolution(built):
    prs = Presentation(str(built["root"] / "deck.pptx"))
    pictures = [shape for shape in prs.slides[3].shapes if shape.shape_type == 13]  # PICTURE
    composed = [p for p in pictures if p.image.size == (1920, 1080)]
    assert composed and composed[0].image.content_type == "image/png"  # composites stay lossless
    grid = [shape for shape in prs.slides[4].shapes if shape.shape_type == 13 and shape.image.size == (1920, 1080)]
    assert len(grid) == 6


def test_pptx_metadata_has_no_slide_text(built):
    prs = Presentation(str(built["root"] / "deck.pptx"))
    props = prs.core_properties
    for name in ("author", "title", "subject", "keywords", "comments", "last_modified_by", "category",
                 "content_status", "identifier", "language", "version"):
        value = getattr(props, name) or ""
        assert FAKE_PATIENT not in value and "Quillfeather" not in value
        assert "python-pptx" not in value and "Steve Canny" not in value
    assert props.created == props.modified == WHEN.replace(tzinfo=None)
    with zipfile.ZipFile(built["root"] / "deck.pptx") as package:
        for name in package.namelist():
            if name.startswith("docProps/"):
                assert b"Quillfeather" not in package.read(name)
        assert b"Quillfeather" in package.read("ppt/slides/slide1.xml")  # the text is on the slide itself


# --------------------------------------------------------------------------- PDF

def test_pdf_pages_size_dpi_and_metadata(built):
    info = pdf_info(built["root"] / "deck.pdf")
    assert built["pdf"].slides == 12 and built["pdf"].media == ()
    assert info["pages"] == 12
    assert set(info["page_sizes_mm"]) == {(297.0, 210.0)}
    assert len(info["images"]) >= 12 + 12  # pictures and posters, plus a logo on every page
    assert min(image["dpi"] for image in info["images"]) >= 300
    assert all(FAKE_PATIENT not in value for value in info["info"].values())
    assert set(info["info"]) <= {"Creator", "Producer", "CreationDate"}
    assert info["info"]["CreationDate"].startswith("D:20250102030405")


def page_text(path: Path) -> str:
    """The text a PDF reader extracts from every page (through the fonts' ToUnicode maps)."""
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(path).pages).replace("\x00", "")


def test_pdf_letter_and_video_caption(built, tmp_path):
    slides = [built["slides"][5], built["slides"][11]]
    result = build_pdf(slides, built["branding"], tmp_path / "letter.pdf", paper="letter")
    info = pdf_info(tmp_path / "letter.pdf")
    assert result.slides == info["pages"] == 2
    assert set(info["page_sizes_mm"]) == {(279.4, 215.9)}
    assert min(image["dpi"] for image in info["images"]) >= 300
    text = page_text(tmp_path / "letter.pdf")
    assert "Video: Animated plan (in the PowerPoint deck)" in text
    assert DISCLAIMER in text
    assert FAKE_PATIENT in page_text(built["root"] / "deck.pdf")  # on the title page, not in the metadata


def test_handout_pages(built, tmp_path):
    info = pdf_info(built["root"] / "handout.pdf")
    assert info["pages"] == math.ceil(12 / 3)
    assert set(info["page_sizes_mm"]) == {(210.0, 297.0)}
    assert min(image["dpi"] for image in info["images"]) >= 300
    assert all(FAKE_PATIENT not in value for value in info["info"].values())
    build_pdf(built["slides"], built["branding"], tmp_path / "h4.pdf", handout=True, per_page=4, paper="letter")
    info4 = pdf_info(tmp_path / "h4.pdf")
    assert info4["pages"] == 3 and set(info4["page_sizes_mm"]) == {(215.9, 279.4)}


# --------------------------------------------------------------------------- pack

def test_pack_contents_and_index(built, tmp_path):
    root = built["root"]
    files = [("consult-deck.pptx", root / "deck.pptx"), ("consult-deck.pdf", root / "deck.pdf"),
             ("handout.pdf", root / "handout.pdf"), ("plan.mp4", built["video"])]
    size = build_pack(files, ["Consult pack", "Bright Smiles Orthodontics"], tmp_path / "pack.zip")
    assert size == (tmp_path / "pack.zip").stat().st_size
    with zipfile.ZipFile(tmp_path / "pack.zip") as archive:
        assert archive.namelist() == [name for name, _ in files] + [INDEX_NAME]
        assert all(archive.getinfo(name).compress_type == zipfile.ZIP_STORED for name, _ in files)
        index = archive.read(INDEX_NAME).decode("utf-8")
        assert index.startswith("Consult pack\nBright Smiles Orthodontics\n\nFiles:\n")
        for name, path in files:
            data = path.read_bytes()
            assert archive.read(name) == data
            assert f"{name}  {len(data)} bytes  SHA-256 {hashlib.sha256(data).hexdigest()}" in index
        assert archive.testzip() is None


# --------------------------------------------------------------------------- validation

def test_bad_slides_are_rejected(built, tmp_path):
    image = gradient(64, 36, 1)
    with pytest.raises(ValidationError, match="Slide kind 'poster' is not supported"):
        SlideContent("poster", "X")
    with pytest.raises(ValidationError, match=r"comparison slide .* needs 1 to 2 images"):
        SlideContent("comparison", "Before and after")
    with pytest.raises(ValidationError, match="video slide needs video_path"):
        SlideContent("video", "Plan")
    with pytest.raises(ValidationError, match="does not exist; render the video first"):
        SlideContent("video", "Plan", video_path=tmp_path / "missing.mp4")
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValidationError, match="is not an MP4 file"):
        SlideContent("video", "Plan", video_path=tmp_path / "fake.mp4")
    with pytest.raises(ValidationError, match="Text lines are shown on title, summary, disclaimer slides only"):
        SlideContent("photo", "Today", images=(image,), lines=("x",))
    with pytest.raises(ValidationError, match="frame 0 must be an RGB uint8 array"):
        SlideContent("photo", "Today", images=(image.astype(np.float32),))
    with pytest.raises(ValidationError, match="Slide title is empty"):
        SlideContent("photo", " ", images=(image,))
    with pytest.raises(ValidationError, match="primary_color"):
        Branding("Clinic", primary_color=(0, 0, 300))
    with pytest.raises(ValidationError, match="logo is not a PNG"):
        Branding("Clinic", logo_png=b"GIF89a....")
    compare = SlideContent("comparison", "Compare", images=(image,))
    with pytest.raises(ValidationError, match="add a \"disclaimer\" slide"):
        build_pptx([compare], built["branding"], tmp_path / "x.pptx")
    with pytest.raises(ValidationError, match="per_page 5 is not supported"):
        build_pdf([compare, SlideContent("disclaimer", "Note")], built["branding"], tmp_path / "x.pdf",
                  handout=True, per_page=5)
    with pytest.raises(ValidationError, match="Paper 'a3' is not supported"):
        build_pdf([compare, SlideContent("disclaimer", "Note")], built["branding"], tmp_path / "x.pdf", paper="a3")
    with pytest.raises(ValidationError, match="is not allowed in the pack"):
        build_pack([("../deck.pptx", built["root"] / "deck.pptx")], [], tmp_path / "p.zip")
    with pytest.raises(ValidationError, match="does not exist; build it before packing"):
        build_pack([("deck.pptx", tmp_path / "missing.pptx")], [], tmp_path / "p.zip")
    assert not any(tmp_path.glob("x.*")) and not (tmp_path / "p.zip").exists()


def test_video_without_poster_uses_first_frame(built, tmp_path):
    slides = [SlideContent("video", "Plan", video_path=built["video"]), SlideContent("disclaimer", "Note")]
    result = build_pptx(slides, Branding("Clinic"), tmp_path / "v.pptx", created=WHEN)
    assert result.slides == 2 and any(name.endswith(".mp4") for name in result.media)
    slide = Presentation(str(tmp_path / "v.pptx")).slides[0]
    movie = next(shape for shape in slide.shapes if shape._element.findall(".//a:videoFile", SLIDE_NS))
    blip = movie._element.find(".//a:blip", SLIDE_NS).get(f"{{{SLIDE_NS['r']}}}embed")
    assert Image.open(io.BytesIO(slide.part.related_part(blip).blob)).size == (320, 180)


def test_templates_end_with_disclaimer():
    for name, kinds in TEMPLATES.items():
        assert kinds[-1] == "disclaimer", name
        assert kinds[0] == "title", name
