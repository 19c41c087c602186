"""Media preparation shared by the deck builders: picture encoding, logo clean-up, video facts.

Picture encoding for PowerPoint (decision): slides keep the full source resolution. Screenshots,
composites and cards (comparison, stage_grid, outcome_card) are always PNG — they carry burned-in
labels, guide lines and flat colour that JPEG would smear. Photos (photo slides, video posters) are
JPEG (quality 90, 4:4:4, the print PDF's encoder) when that is at most half the PNG's size, which it
is for real camera photos (typically 5–10× smaller); a "photo" that is really a flat graphic stays
PNG. Neither encoder writes metadata (OpenCV writes no EXIF or text chunks).
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

from core.decks.model import Branding, SlideContent
from core.errors import ValidationError
from core.imaging import encode_png
from core.rendering.pdf import _jpeg
from core.rendering.probe import decode_frames

#: JPEG is used for a photo only when it is at most this fraction of the PNG's size.
JPEG_MAX_FRACTION = 0.5
#: zlib level 3: within ~5 % of level 9's size on photos/gradients at a fraction of the time.
PNG_COMPRESSION = 3


def encode_picture(rgb: np.ndarray, *, photo: bool) -> tuple[bytes, str]:
    """(file bytes, extension "png" or "jpg") of `rgb` at full resolution; see the module docstring."""
    png = encode_png(rgb, compression=PNG_COMPRESSION).data
    if not photo:
        return png, "png"
    jpeg = _jpeg(rgb, (rgb.shape[1], rgb.shape[0]))
    return (jpeg, "jpg") if len(jpeg) <= JPEG_MAX_FRACTION * len(png) else (png, "png")


def logo_rgba(branding: Branding) -> Image.Image | None:
    """The clinic logo as a fresh RGBA image (no metadata survives), or None without a logo."""
    if branding.logo_png is None:
        return None
    with Image.open(io.BytesIO(branding.logo_png)) as image:
        return image.convert("RGBA")


def png_bytes(image: Image.Image) -> bytes:
    """`image` as a PNG with no text, EXIF or colour-profile chunks."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def video_size(path: Path) -> tuple[int, int]:
    """(width, height) px of the first video stream of `path`; ValidationError if it has none."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValidationError(f"{path.name} has no video stream; render the video again.")
            context = container.streams.video[0].codec_context
            width, height = int(context.width), int(context.height)
    except av.FFmpegError as error:
        raise ValidationError(f"{path.name} cannot be read as a video ({error}); render it again.") from error
    if width < 1 or height < 1:
        raise ValidationError(f"{path.name} reports no frame size; render the video again.")
    return width, height


def poster_for(slide: SlideContent) -> np.ndarray:
    """The poster of a video slide: its `poster`, else the video's first frame."""
    if slide.poster is not None:
        return slide.poster
    assert slide.video_path is not None  # guaranteed for video slides by SlideContent
    try:
        frames = decode_frames(slide.video_path, {0})
    except av.FFmpegError as error:
        raise ValidationError(f"{slide.video_path.name} cannot be decoded ({error}); render it again or pass a "
                              "poster image.") from error
    if 0 not in frames:
        raise ValidationError(f"{slide.video_path.name} has no frames; render it again or pass a poster image.")
    return frames[0]
