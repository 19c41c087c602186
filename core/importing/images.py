"""Safe decoding of uploaded still images (screenshots, exported stage pictures).

Only PNG, JPEG and WebP are decoded, and only by the matching Pillow plugin: the type is sniffed
from the content first, so a renamed GIF/TIFF/BMP or a file of another kind never reaches a
decoder. The size is checked from the header before any pixel is decoded. The result is a plain
RGB array: EXIF orientation is applied and nothing else of the file's metadata survives.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

from core.errors import ValidationError
from core.importing.limits import DEFAULT_LIMITS, ImportLimits
from core.importing.sniff import STILL_IMAGE_FORMATS, describe, sniff

_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_LABELS = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}
_EXPORT_HINT = "export stills (PNG, JPEG or WebP)"
# Exceptions Pillow raises for damaged files (SyntaxError is its historic "not this format").
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def load_still(data: bytes, *, name: str, limits: ImportLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode one PNG/JPEG/WebP still into an RGB uint8 array (height × width × 3).

    `name` is the name the user uploaded (or "frame 3") and is used only in error messages.
    Raises ValidationError for other types (GIF, TIFF, BMP, …), animated or multi-frame files,
    images over `limits.max_image_pixels`, and truncated or corrupt files. Pillow's own
    process-wide bomb limit (about 89 MP) also refuses anything it flags, so raising
    `max_image_pixels` above it admits nothing larger.
    """
    kind = sniff(data)
    if kind not in STILL_IMAGE_FORMATS:
        if kind == "gif":
            raise ValidationError(f"{name} is a GIF image; {_EXPORT_HINT}.")
        raise ValidationError(f"{name} is {describe(kind)}, not a still image; {_EXPORT_HINT}.")
    image = _open_checked(data, kind=kind, name=name, limits=limits)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except _DECODE_ERRORS as error:
        raise ValidationError(f"{name} could not be read as an image ({_short(error)}); re-export it.") from error
    finally:
        image.close()


def _open_checked(data: bytes, *, kind: str, name: str, limits: ImportLimits) -> Image.Image:
    """Open lazily (header only) with the one allowed plugin, then enforce size and single-frame rules."""
    try:
        # Pillow's own bomb check uses a process-wide limit; turning its warning into an error here
        # makes every size it considers suspicious a rejection. Our per-call limit is checked below.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[kind]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValidationError(
            f"{name} is too large to open safely; the limit is {limits.max_image_pixels:,} pixels. "
            "Export it at a smaller size."
        ) from error
    except _DECODE_ERRORS as error:
        raise ValidationError(f"{name} could not be read as an image ({_short(error)}); re-export it.") from error
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ValidationError(f"{name} has an empty picture ({width}×{height}); re-export it.")
        if width * height > limits.max_image_pixels:
            raise ValidationError(
                f"{name} is {width:,}×{height:,} pixels ({width * height:,}); the limit is "
                f"{limits.max_image_pixels:,} pixels. Export it at a smaller size."
            )
        frames = getattr(image, "n_frames", 1)
        # An MPO JPEG (some cameras) is a primary picture plus previews/depth maps: its first frame
        # is the photo itself, so it is accepted as a still.
        if image.format != "MPO" and (frames > 1 or getattr(image, "is_animated", False)):
            raise ValidationError(f"{name} is an animated {_LABELS[kind]} ({frames} frames); {_EXPORT_HINT}.")
    except BaseException:
        image.close()
        raise
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 from any Pillow mode: alpha is composited on white, 16-bit samples keep their top 8 bits."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's convert("L") clips 16-bit samples at 255; scale instead.
        samples = np.asarray(image)
        gray = (samples >> 8).astype(np.uint8) if samples.max(initial=0) > 255 else samples.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        samples = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(samples[:, :, None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.array(rgb, dtype=np.uint8)


def _short(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 80 else text[:77] + "…"
