"""Export encoding: PNG or JPEG with an optional print DPI and no other metadata.

Exports leave the clinic (email, print labs), so they must not leak anything: no EXIF, no XMP, no
text chunks or comments, no ICC profile (untagged files are treated as sRGB, which ours are).
The only header fields are those the format forces plus the DPI when asked for.

DPI precision: JPEG (JFIF) stores whole dots per inch, so 300 reads back as exactly 300. PNG (pHYs)
stores whole pixels per *metre*: 300 DPI is written as 11811 px/m and reads back as 299.9994, and in
general the read-back value is within 0.5 px/m = 0.0127 DPI of the request. Print software rounds
this to 300; `read_dpi` reports the stored value unrounded so tests can verify it.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import ValidationError
from core.imaging import EncodedImage, _check_rgb

FORMATS = ("png", "jpeg")
_ALIASES = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg"}
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
#: JFIF density is a 16-bit field.
MAX_DPI = 65_535
#: PNG pHYs rounding, in DPI: half a pixel per metre (see the module docstring).
PNG_DPI_TOLERANCE = 0.5 * 0.0254


def encode_export(rgb: np.ndarray, fmt: str, *, dpi: int | None = None, quality: int = 92) -> EncodedImage:
    """Encode an RGB uint8 array as "png" or "jpeg" ("jpg" accepted) for download or print.

    `dpi` (e.g. 300 for print presets) is written as PNG pHYs / JFIF density; None writes no
    resolution (JPEG then carries the format's neutral 1:1 aspect density). `quality` (1-100)
    applies to JPEG only; at 90 and above chroma is not subsampled, which keeps burned-in text and
    thin guide lines crisp. Raises ValidationError for a bad array, format, dpi or quality.
    """
    _check_rgb(rgb)
    kind = _ALIASES.get(fmt.strip().lower()) if isinstance(fmt, str) else None
    if kind is None:
        raise ValidationError(f"Export format {fmt!r} is not supported; choose \"png\" or \"jpeg\".")
    if dpi is not None and (isinstance(dpi, bool) or not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI):
        raise ValidationError(f"dpi {dpi!r} must be None or a whole number from 1 to {MAX_DPI}.")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValidationError(f"JPEG quality {quality!r} is outside 1–100.")

    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    # Only explicit, known-clean options: Pillow writes exif/icc/comment/pnginfo only when passed.
    options: dict[str, object] = {}
    if dpi is not None:
        options["dpi"] = (dpi, dpi)
    buffer = io.BytesIO()
    if kind == "png":
        image.save(buffer, "PNG", compress_level=6, **options)
    else:
        image.save(buffer, "JPEG", quality=quality, optimize=True, subsampling=0 if quality >= 90 else 2, **options)
    return EncodedImage(buffer.getvalue(), _CONTENT_TYPES[kind], rgb.shape[1], rgb.shape[0])


def read_dpi(data: bytes) -> tuple[float, float] | None:
    """The (x, y) DPI stored in PNG/JPEG bytes as Pillow reads it, or None when the file has none.

    PNG values carry the pHYs rounding described in the module docstring (300 -> 299.9994).
    Raises ValidationError when the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            dpi = image.info.get("dpi")
    except (UnidentifiedImageError, OSError) as error:
        raise ValidationError("The data is not a readable PNG or JPEG image.") from error
    if dpi is None:
        return None
    return float(dpi[0]), float(dpi[1])
