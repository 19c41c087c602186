"""Content sniffing: what a file *is*, from its first bytes, whatever its name says.

Uploads are accepted by content, never by extension: a PNG renamed `.jpg` is a PNG, and a text
file renamed `.png` is nothing. Only magic bytes and header structure are looked at; nothing is
decoded, so sniffing is safe on any input and costs microseconds.
"""

from __future__ import annotations

import re
import struct

#: Still images the importers accept (everything else is refused with the detected type).
STILL_IMAGE_FORMATS = ("png", "jpeg", "webp")

#: Every value `sniff` can return.
FORMATS = (
    "png",
    "jpeg",
    "webp",
    "gif",
    "tiff",
    "bmp",
    "zip",
    "mp4",
    "mov",
    "webm",
    "mkv",
    "stl-binary",
    "stl-ascii",
    "ply",
    "obj",
    "xml",
    "html",
    "pdf",
)

#: Human names for messages ("frame 3 is a GIF image").
DESCRIPTIONS = {
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "webp": "a WebP image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "bmp": "a BMP image",
    "zip": "a ZIP archive",
    "mp4": "an MP4 video",
    "mov": "a QuickTime (MOV) video",
    "webm": "a WebM video",
    "mkv": "a Matroska (MKV) video",
    "stl-binary": "a binary STL model",
    "stl-ascii": "an ASCII STL model",
    "ply": "a PLY model",
    "obj": "an OBJ model",
    "xml": "an XML document",
    "html": "an HTML page",
    "pdf": "a PDF document",
}

# ISO-BMFF major/compatible brands of MP4-family video (HEIC/AVIF stills and M4A audio are not listed).
_MP4_BRANDS = frozenset(
    {
        b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
        b"mp41", b"mp42", b"mp71", b"avc1", b"hvc1", b"hev1", b"av01", b"dash", b"mmp4",
        b"M4V ", b"M4VH", b"M4VP", b"f4v ", b"msnv", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"XAVC",
    }
)  # fmt: skip
_QUICKTIME_BRAND = b"qt  "
# Old QuickTime files may start straight with one of these atoms instead of `ftyp`.
_QUICKTIME_FIRST_ATOMS = (b"moov", b"mdat", b"wide")
_BMP_DIB_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID = b"\x42\x82"
# Text formats are judged from this much of the start of the file.
_TEXT_WINDOW = 64 * 1024
_OBJ_KEYWORDS = frozenset(
    {"v", "vn", "vt", "vp", "f", "l", "p", "o", "g", "s", "mtllib", "usemtl", "cstype", "deg", "curv", "surf"}
)
_STL_FACET = re.compile(r"^\s*facet\s+normal\b", re.IGNORECASE | re.MULTILINE)
_OBJ_VERTEX = re.compile(r"v\s+[-+0-9.eE]+\s+[-+0-9.eE]+\s+[-+0-9.eE]+")


def sniff(data: bytes) -> str | None:
    """The format of `data` (one of `FORMATS`), judged from its content only; None when unknown.

    Pass the whole file or at least its first 64 KiB; binary STL is recognised only from the whole
    file (its size must equal 84 + 50 × the triangle count in its header).
    """
    head = bytes(data[:64])
    found = _sniff_magic(head) or _sniff_media_container(head)
    if found:
        return found
    if _is_binary_stl(data):
        return "stl-binary"
    return _sniff_text(bytes(data[:_TEXT_WINDOW]))


def describe(kind: str | None) -> str:
    """'a PNG image', 'an MP4 video', … or 'of an unknown type' for None: for user messages."""
    return DESCRIPTIONS.get(kind or "", "of an unknown type")


def _sniff_magic(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in _BMP_DIB_HEADER_SIZES:
        return "bmp"
    # Local file header, empty archive, or the spanning marker some tools write first.
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        return "ply"
    return None


def _sniff_media_container(head: bytes) -> str | None:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        box_size = struct.unpack_from(">I", head, 0)[0]
        major = head[8:12]
        # Compatible brands follow the minor version, up to the end of the ftyp box.
        compatible = [head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)]
        if major == _QUICKTIME_BRAND:
            return "mov"
        if major in _MP4_BRANDS or any(brand in _MP4_BRANDS for brand in compatible):
            return "mp4"
        if _QUICKTIME_BRAND in compatible:
            return "mov"
        return None
    if len(head) >= 8 and head[4:8] in _QUICKTIME_FIRST_ATOMS and struct.unpack_from(">I", head, 0)[0] >= 8:
        return "mov"
    if head.startswith(_EBML_MAGIC):
        doctype = _ebml_doctype(head)
        if doctype == b"webm":
            return "webm"
        if doctype == b"matroska":
            return "mkv"
    return None


def _read_vint(data: bytes, pos: int) -> tuple[int, int] | None:
    """An EBML variable-length integer at `pos`: (value with the length marker removed, its length)."""
    if pos >= len(data) or data[pos] == 0:
        return None
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if pos + length > len(data):
        return None
    value = first & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, length


def _ebml_doctype(head: bytes) -> bytes | None:
    """The DocType string of the EBML header that starts `head`, if it lies within `head`."""
    size = _read_vint(head, 4)
    if size is None:
        return None
    pos = 4 + size[1]
    end = min(len(head), pos + size[0])
    while pos < end:
        # Header element IDs are two bytes (0x42xx), followed by a vint data size.
        element_id = head[pos : pos + 2]
        data_size = _read_vint(head, pos + 2)
        if data_size is None:
            return None
        start = pos + 2 + data_size[1]
        if element_id == _EBML_DOCTYPE_ID:
            return head[start : start + data_size[0]].rstrip(b"\x00")
        pos = start + data_size[0]
    return None


def _is_binary_stl(data: bytes) -> bool:
    if len(data) < 84:
        return False
    count = struct.unpack_from("<I", data, 80)[0]
    return len(data) == 84 + 50 * count


def _sniff_text(window: bytes) -> str | None:
    if b"\x00" in window:
        return None
    text = window.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    lowered = text[:2048].lower()
    if lowered.startswith("solid") and _STL_FACET.search(text):
        return "stl-ascii"
    if lowered.startswith("<"):
        if lowered.startswith(("<!doctype html", "<html")) or re.search(r"<!doctype html|<html[\s>]", lowered):
            return "html"
        if lowered.startswith(("<?xml", "<!--")) or re.match(r"<[a-z_][\w.:-]*[\s>/]", lowered):
            return "xml"
        return None
    return "obj" if _looks_like_obj(text) else None


def _looks_like_obj(text: str) -> bool:
    """Every meaningful line starts with an OBJ keyword and at least one is a 3-number vertex."""
    lines = text.splitlines()
    if len(text) >= _TEXT_WINDOW and lines:
        lines = lines[:-1]  # the window may cut the last line in half
    vertices = 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword = line.split(None, 1)[0]
        if keyword not in _OBJ_KEYWORDS:
            return False
        if keyword == "v":
            if not _OBJ_VERTEX.match(line):
                return False
            vertices += 1
    return vertices > 0
