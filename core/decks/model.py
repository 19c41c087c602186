"""What a consult deck is made of: slides, clinic branding, default sequences and the build result.

Everything here is validated on construction (`ValidationError` with a message the presenter can act
on), so the renderers in `core.decks.pptx` and `core.decks.pdf` can trust their input.

Images are RGB uint8 arrays (height, width, 3) of any size; the renderers decide pixels per output.
Text is plain Unicode. Nothing in a `SlideContent` ever reaches document metadata — only the slide
pages themselves show it — so patient names may appear in slide text if the caller puts them there.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import ValidationError
from core.rendering import check_frame

SLIDE_KINDS = ("title", "comparison", "stage_grid", "outcome_card", "video", "photo", "summary", "disclaimer")
#: Kinds that show simulated (predicted) material; a deck with any of them must carry a disclaimer slide.
SIMULATION_KINDS = ("comparison", "stage_grid", "outcome_card", "video")
#: Kinds that show `SlideContent.lines`; other kinds put their text into caption and notes.
TEXT_KINDS = ("title", "summary", "disclaimer")
DISCLAIMER = "Simulated outcomes are illustrations, not guarantees."

#: Default slide sequences (kinds in order); each ends with the mandatory "disclaimer".
#:
#: * new_patient_consult — title; photo (the patient's current smile); comparison (before vs
#:   predicted); stage_grid (how the teeth move, stage by stage); video (the animated plan);
#:   outcome_card (the predicted result); summary (plan, duration, next steps); disclaimer.
#: * progress_update — title; photo (today); comparison (start vs today, or today vs predicted);
#:   stage_grid (stages done and still to come); summary; disclaimer.
#: * treatment_complete — title; comparison (before vs after); photo (final smile);
#:   outcome_card (predicted vs achieved); summary (retention instructions); disclaimer.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "new_patient_consult": ("title", "photo", "comparison", "stage_grid", "video", "outcome_card", "summary",
                            "disclaimer"),
    "progress_update": ("title", "photo", "comparison", "stage_grid", "summary", "disclaimer"),
    "treatment_complete": ("title", "comparison", "photo", "outcome_card", "summary", "disclaimer"),
}

MAX_TITLE = 120
MAX_LINE = 200
MAX_LINES = 12
MAX_NOTES = 5000
MAX_SLIDES = 60
MAX_GRID_IMAGES = 12
MAX_VIDEO_BYTES = 512 * 1024 * 1024
MAX_LOGO_BYTES = 2 * 1024 * 1024
LOGO_SIDES = (16, 4000)
#: (min, max) images per slide kind.
IMAGE_COUNTS: dict[str, tuple[int, int]] = {
    "title": (0, 0), "comparison": (1, 2), "stage_grid": (2, MAX_GRID_IMAGES), "outcome_card": (1, 1),
    "video": (0, 0), "photo": (1, 1), "summary": (0, 0), "disclaimer": (0, 0),
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_line(name: str, value: object, *, limit: int = MAX_LINE, required: bool = False) -> str:
    """`value` if it is single-line text of at most `limit` characters (non-empty when `required`)."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text, got {type(value).__name__}.")
    if len(value) > limit:
        raise ValidationError(f"{name} is {len(value)} characters long; shorten it to at most {limit}.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError(f"{name} must be a single line: remove line breaks, tabs and control characters.")
    if required and not value.strip():
        raise ValidationError(f"{name} is empty; enter some text.")
    return value


def _check_notes(value: object) -> None:
    if not isinstance(value, str):
        raise ValidationError(f"Speaker notes must be text, got {type(value).__name__}.")
    if len(value) > MAX_NOTES:
        raise ValidationError(f"Speaker notes are {len(value)} characters long; keep them to {MAX_NOTES}.")
    # Line breaks and tabs are fine in notes; other control characters are not valid in the XML.
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in value):
        raise ValidationError("Speaker notes contain control characters; remove them (line breaks are fine).")


def _as_tuple(name: str, value: object) -> tuple:
    if isinstance(value, list):
        return tuple(value)
    if not isinstance(value, tuple):
        raise ValidationError(f"{name} must be a tuple (or list), got {type(value).__name__}.")
    return value


def _check_color(value: object) -> tuple[int, int, int]:
    if (not isinstance(value, tuple | list) or len(value) != 3
            or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255 for c in value)):
        raise ValidationError(f"primary_color {value!r} must be three whole numbers 0–255 (R, G, B).")
    return int(value[0]), int(value[1]), int(value[2])


def _check_logo(data: object) -> None:
    if not isinstance(data, bytes):
        raise ValidationError("logo_png must be the bytes of a PNG file (or None for no logo).")
    if not data.startswith(_PNG_SIGNATURE):
        raise ValidationError("The logo is not a PNG file; export it as PNG (transparency is kept).")
    if len(data) > MAX_LOGO_BYTES:
        raise ValidationError(f"The logo is {len(data) // 1024} KB; use a PNG of at most "
                              f"{MAX_LOGO_BYTES // (1024 * 1024)} MB.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValidationError(f"The logo PNG cannot be read ({error}); export it again.") from error
    low, high = LOGO_SIDES
    if not (low <= width <= high and low <= height <= high):
        raise ValidationError(f"The logo is {width}×{height} px; each side must be {low} to {high} px.")


@dataclass(frozen=True)
class Branding:
    """The clinic's look: name and footer text on every slide, the accent colour, an optional PNG logo.

    primary_color is (R, G, B) 0–255, used for the thin bar at the top of each slide. The logo is
    shown bottom-right, re-encoded without any PNG text chunks.
    """

    clinic_name: str
    primary_color: tuple[int, int, int] = (15, 118, 110)
    footer: str = ""
    logo_png: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_line("Clinic name", self.clinic_name, limit=80, required=True)
        check_line("Footer", self.footer, limit=120)
        object.__setattr__(self, "primary_color", _check_color(self.primary_color))
        if self.logo_png is not None:
            _check_logo(self.logo_png)


def _check_video_file(value: object) -> Path:
    if not isinstance(value, str | Path):
        raise ValidationError("A video slide needs video_path: the MP4 file to embed.")
    path = Path(value)
    if not path.is_file():
        raise ValidationError(f"The video file {path.name} does not exist; render the video first.")
    size = path.stat().st_size
    if size > MAX_VIDEO_BYTES:
        raise ValidationError(f"The video {path.name} is {size // (1024 * 1024)} MB; decks take videos of at most "
                              f"{MAX_VIDEO_BYTES // (1024 * 1024)} MB — render a shorter or smaller MP4.")
    with path.open("rb") as handle:
        head = handle.read(12)
    # ISO-BMFF starts with a box size and "ftyp"; PowerPoint and Keynote only play MP4 (H.264) reliably.
    if len(head) < 12 or head[4:8] != b"ftyp":
        raise ValidationError(f"{path.name} is not an MP4 file; render the video as MP4 (H.264) for decks.")
    return path


@dataclass(frozen=True)
class SlideContent:
    """One slide. Which fields a kind uses (anything else must stay empty):

    * title — `lines` under the title (clinic, patient, date...).
    * comparison — 1 composed image, or 2 images (before, predicted) shown side by side.
    * stage_grid — 2 to 12 stage images in a grid.
    * outcome_card, photo — exactly 1 image.
    * video — `video_path` (an MP4, embedded in the PowerPoint deck) and an optional `poster`
      (shown before playback and in the PDF); without a poster the video's first frame is used.
    * summary — 1 to 12 `lines` (bullet points).
    * disclaimer — `DISCLAIMER` is always shown first; `lines` add to it.

    `caption` is one line under the picture area; `notes` are the presenter's talking points (a
    default is written when empty). Every kind needs a `title`.
    """

    kind: str
    title: str
    caption: str = ""
    notes: str = ""
    images: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)
    video_path: Path | None = None
    poster: np.ndarray | None = field(default=None, compare=False, repr=False)
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SLIDE_KINDS:
            raise ValidationError(f"Slide kind {self.kind!r} is not supported; choose one of {', '.join(SLIDE_KINDS)}.")
        check_line("Slide title", self.title, limit=MAX_TITLE, required=True)
        check_line(f"Caption of {self.title!r}", self.caption)
        _check_notes(self.notes)
        object.__setattr__(self, "images", _as_tuple("images", self.images))
        object.__setattr__(self, "lines", _as_tuple("lines", self.lines))
        self._check_images()
        self._check_lines()
        self._check_video()

    def _check_images(self) -> None:
        for index, image in enumerate(self.images):
            check_frame(image, index)
        low, high = IMAGE_COUNTS[self.kind]
        count = len(self.images)
        if not low <= count <= high:
            need = f"exactly {low}" if low == high else f"{low} to {high}"
            what = {"comparison": " (one composed image, or before and predicted)"}.get(self.kind, "")
            raise ValidationError(f"A {self.kind} slide ({self.title!r}) needs {need} images{what}; got {count}.")

    def _check_lines(self) -> None:
        if self.lines and self.kind not in TEXT_KINDS:
            raise ValidationError(f"Text lines are shown on {', '.join(TEXT_KINDS)} slides only; put the text of the "
                                  f"{self.kind} slide {self.title!r} into its caption or notes.")
        if len(self.lines) > MAX_LINES:
            raise ValidationError(f"A slide takes at most {MAX_LINES} text lines; {self.title!r} has "
                                  f"{len(self.lines)}. Split it over two slides.")
        for number, line in enumerate(self.lines, 1):
            check_line(f"Line {number} of {self.title!r}", line)
        if self.kind == "summary" and not self.lines:
            raise ValidationError(f"The summary slide {self.title!r} needs at least one text line.")

    def _check_video(self) -> None:
        if self.kind != "video":
            if self.video_path is not None or self.poster is not None:
                raise ValidationError(f"Only video slides take video_path and poster; {self.title!r} is a "
                                      f"{self.kind} slide.")
            return
        object.__setattr__(self, "video_path", _check_video_file(self.video_path))
        if self.poster is not None:
            check_frame(self.poster, 0)


@dataclass(frozen=True)
class DeckResult:
    """What a builder wrote: the number of slides, the file size, and the embedded media part names.

    media lists the files under `ppt/media/` of a PowerPoint deck (images and videos, e.g.
    "ppt/media/media1.mp4"); a PDF embeds no media files, so it is empty there.
    """

    slides: int
    bytes: int
    media: tuple[str, ...] = ()


def check_deck(slides: Sequence[SlideContent], branding: Branding) -> tuple[SlideContent, ...]:
    """`slides` as a tuple after deck-level checks (count, types, a disclaimer for simulated material)."""
    if not isinstance(branding, Branding):
        raise ValidationError("A deck needs a Branding (clinic name, colour, optional logo).")
    if isinstance(slides, SlideContent) or not isinstance(slides, Sequence) or not slides:
        raise ValidationError("A deck needs at least one slide (a list of SlideContent).")
    if any(not isinstance(slide, SlideContent) for slide in slides):
        raise ValidationError("Every slide must be a SlideContent.")
    if len(slides) > MAX_SLIDES:
        raise ValidationError(f"A deck takes at most {MAX_SLIDES} slides; got {len(slides)}. Split it into two decks.")
    kinds = {slide.kind for slide in slides}
    # Simulated outcomes must never leave the clinic without the disclaimer next to them.
    if kinds & set(SIMULATION_KINDS) and "disclaimer" not in kinds:
        raise ValidationError("This deck shows simulated outcomes; add a \"disclaimer\" slide (e.g. as the last "
                              "slide).")
    return tuple(slides)


def default_notes(slide: SlideContent) -> str:
    """Speaker notes for a slide whose `notes` are empty: a short talking point for its kind."""
    if slide.notes.strip():
        return slide.notes
    points = {
        "title": "Welcome the patient and outline what the consultation will cover.",
        "comparison": "Walk through the current teeth first, then the predicted result.",
        "stage_grid": "Explain how the teeth move step by step through the treatment stages.",
        "outcome_card": "Present the predicted outcome and what it means for the patient.",
        "video": "Play the video and pause on the stages the patient asks about.",
        "photo": "Discuss the patient's current situation shown in the photo.",
        "summary": "Recap the plan and agree on the next steps.",
        "disclaimer": "",
    }
    text = points[slide.kind]
    if slide.caption:
        text = f"{text}\n{slide.caption}".strip()
    if slide.kind in SIMULATION_KINDS or slide.kind == "disclaimer":
        text = f"{text}\n{DISCLAIMER}".strip()
    return text
