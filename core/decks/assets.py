"""Media preparation shared by the deck builders: picture encoding, logo clean-up, video facts.

Picture encoding for PowerPoint (decision): slides keep the full source resolution. Screenshots,
composites and cards (comparison, stage_grid, outcome_card) are always PNG — they carry burned-in
labels, guide lines and flat colour that JPEG would smear. Photos (photo slides, video posters) are
JPEG (quality 90, 4:4:4, the print PDF's encoder) when that is at most half the PNG's size, which it
is for real camera photos (typically 5–10× smaller); a "photo" that is really a flat graphic stays
PNG. Neither encoder writes metadata (OpenCV writes no EXIF or text chunks).

PNGs use zlib's RLE strategy: on 1080p simulation renders it was ~40 % faster than level 3 and
~7 % smaller (52 ms / 860 KB vs 87 ms / 928 KB; smooth synthetic gradients come out ~20 % larger).
`encode_pictures` encodes a deck's pictures on a few threads (OpenCV releases the GIL) and once per
distinct array, since the same picture often appears on several slides.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from core.decks.model import Branding, SlideContent
from core.errors import ValidationError
from core.rendering.pdf import _jpeg
from core.rendering.probe import decode_frames

#: JPEG is used for a photo only when it is at most this fraction of the PNG's size.
JPEG_MAX_FRACTION = 0.5
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
#: Encoder threads: a few help (OpenCV releases the GIL); more would crowd a shared worker host.
ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))


def _png(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise ValidationError("A picture could not be encoded as PNG for the deck.")
    return buffer.tobytes()


def encode_picture(rgb: np.ndarray, *, photo: bool) -> bytes:
    """PNG or JPEG bytes of `rgb` at full resolution; see the module docstring for which."""
    png = _png(rgb)
    if not photo:
        return png
    jpeg = _jpeg(rgb, (rgb.shape[1], rgb.shape[0]))
    return jpeg if len(jpeg) <= JPEG_MAX_FRACTION * len(png) else png


def encode_pictures(pictures: Sequence[tuple[np.ndarray, bool]]) -> dict[tuple[int, bool], bytes]:
    """{(id(array), photo): encoded bytes} for (array, photo) pairs, each distinct pair encoded once.

    Keys use object identity: the caller must keep the arrays alive while it uses the result.
    """
    unique = {(id(rgb), photo): (rgb, photo) for rgb, photo in pictures}
    if len(unique) <= 1:
        return {key: encode_picture(rgb, photo=photo) for key, (rgb, photo) in unique.items()}
    with ThreadPoolExecutor(max_workers=min(ENCODE_THREADS, len(unique))) as pool:
        encoded = pool.map(lambda item: encode_picture(item[0], photo=item[1]), unique.values())
        return dict(zip(unique, encoded, strict=True))


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
