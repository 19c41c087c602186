"""Read back rendered files: media properties via PyAV, PDF structure via a small reader of our own.

Used by tests and by the app's post-render checks, so everything here reports facts about the file
(never trusts what the renderer meant to write).
"""

from __future__ import annotations

import re
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from core.errors import ValidationError

_MM_PER_PT = 25.4 / 72
# FFmpeg's AVColorSpace / AVColorRange numbers (PyAV reports the raw values).
_COLOR_SPACES = {0: "rgb", 1: "bt709", 2: "unspecified", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
_COLOR_RANGES = {0: "unspecified", 1: "tv", 2: "pc"}


# --------------------------------------------------------------------------- media

def _mp4_atoms(path: Path) -> list[str]:
    """Top-level ISO-BMFF atom types in file order (e.g. ["ftyp", "moov", "mdat"])."""
    atoms: list[str] = []
    with path.open("rb") as handle:
        offset, end = 0, path.stat().st_size
        while offset + 8 <= end:
            handle.seek(offset)
            size, kind = struct.unpack(">I4s", handle.read(8))
            if size == 1:  # 64-bit size follows
                size = struct.unpack(">Q", handle.read(8))[0]
            elif size == 0:  # extends to the end of the file
                size = end - offset
            if size < 8:
                break
            atoms.append(kind.decode("latin-1"))
            offset += size
    return atoms


def _gif_info(path: Path) -> dict:
    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(int(image.info.get("duration", 0)))
        return {"format": "gif", "codec": "gif", "width": image.width, "height": image.height,
                "frames": image.n_frames, "durations_ms": durations, "duration": sum(durations) / 1000,
                "loop": image.info.get("loop"), "metadata": {k: v for k, v in image.info.items()
                                                             if k in ("comment", "xmp", "exif")}}


def probe_media(path: Path) -> dict:
    """Facts about a rendered MP4/WebM/GIF.

    Keys: format (container names as ffmpeg reports them, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or
    "matroska,webm"), codec, profile, pix_fmt, width, height, fps (float), duration (s, from the
    container), frames (counted by decoding every frame), metadata (container + stream tags),
    color_space/color_range ("bt709"/"tv" for ours), and for MP4 "atoms" (top-level atom order) and "faststart" (moov
    before mdat). GIFs are read with Pillow and report frames, per-frame durations_ms and loop.
    """
    path = Path(path)
    with path.open("rb") as handle:
        magic = handle.read(6)
    if magic in (b"GIF87a", b"GIF89a"):
        return _gif_info(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        info: dict = {
            "format": container.format.name,
            "codec": ctx.name,
            "profile": stream.profile,
            "pix_fmt": ctx.pix_fmt,
            "width": ctx.width,
            "height": ctx.height,
            "fps": float(rate),
            "duration": (container.duration or 0) / 1_000_000,
            "metadata": {**dict(container.metadata), **{f"stream:{k}": v for k, v in stream.metadata.items()}},
            "color_space": _COLOR_SPACES.get(int(getattr(ctx, "colorspace", 2) or 2), "other"),
            "color_range": _COLOR_RANGES.get(int(getattr(ctx, "color_range", 0) or 0), "other"),
        }
        info["frames"] = sum(1 for _ in container.decode(stream))
    if "mp4" in info["format"]:
        atoms = _mp4_atoms(path)
        info["atoms"] = atoms
        info["faststart"] = "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat")
    return info


def decode_frames(path: Path, indices: set[int] | None = None) -> dict[int, np.ndarray]:
    """{frame index: RGB uint8 array} of a video or GIF (all frames, or only `indices`)."""
    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if indices is None or index in indices:
                frames[index] = frame.to_ndarray(format="rgb24")
            if indices is not None and len(frames) == len(indices):
                break
    return frames


# --------------------------------------------------------------------------- PDF

_OBJ = re.compile(rb"(\d+) 0 obj\s*")
_STREAM = re.compile(rb">>\s*stream(?:\r\n|\n)")  # the keyword right after a dictionary, not inside a string
_REF = rb"(\d+) 0 R"


def _objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """{object number: (dictionary text, raw stream bytes or None)} of an uncrypted PDF.

    Streams are skipped by their /Length (fpdf2 writes direct lengths), so binary image data can
    never be mistaken for PDF syntax.
    """
    objects: dict[int, tuple[bytes, bytes | None]] = {}
    position = 0
    while (match := _OBJ.search(data, position)) is not None:
        number, start = int(match.group(1)), match.end()
        end_at = data.find(b"endobj", start)
        if end_at < 0:
            break
        stream = _STREAM.search(data, start)
        if stream is not None and stream.start() < end_at:
            stream_at = stream.start() + 2
            head = data[start:stream_at]
            length = re.search(rb"/Length (\d+)", head)
            if length is None:
                raise ValidationError(f"PDF object {number} has a stream without a direct /Length.")
            body_start = stream.end()
            body = data[body_start:body_start + int(length.group(1))]
            objects[number] = (head, body)
            position = data.find(b"endobj", body_start + len(body)) + len(b"endobj")
        else:
            objects[number] = (data[start:end_at], None)
            position = end_at + len(b"endobj")
    return objects


def _decoded(head: bytes, body: bytes) -> bytes:
    return zlib.decompress(body) if b"/FlateDecode" in head else body


def _pdf_string(raw: bytes) -> str:
    raw = raw.strip()
    if raw.startswith(b"<") and not raw.startswith(b"<<"):
        data = bytes.fromhex(raw[1:-1].decode("ascii"))
        return data[2:].decode("utf-16-be") if data.startswith(b"\xfe\xff") else data.decode("latin-1")
    inner = raw[1:-1]
    inner = re.sub(rb"\\([()\\])", rb"\1", inner)
    if inner.startswith(b"\xfe\xff"):
        return inner[2:].decode("utf-16-be")
    return inner.decode("latin-1")


def _info_dict(data: bytes, objects: dict[int, tuple[bytes, bytes | None]]) -> dict[str, str]:
    trailer = data[data.rfind(b"trailer"):]
    match = re.search(rb"/Info " + _REF, trailer)
    if match is None or int(match.group(1)) not in objects:
        return {}
    text = objects[int(match.group(1))][0]
    pairs = re.findall(rb"/(\w+)\s*(\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f]*>)", text)
    return {key.decode(): _pdf_string(value) for key, value in pairs}


def pdf_info(path: Path) -> dict:
    """Page count, page sizes (mm), info dictionary and every image placement of a PDF we wrote.

    Returns {"pages": n, "page_sizes_mm": [(w, h), ...], "info": {key: text}, "images": [{"page",
    "name", "width_px", "height_px", "placed_mm": (w, h), "dpi": min of x/y effective DPI,
    "filter"}]}. Placements are read from the (decompressed) page content streams (`w 0 0 h x y cm
    /Name Do`), pixel sizes from each image XObject's /Width and /Height.
    """
    data = Path(path).read_bytes()
    if not data.startswith(b"%PDF-"):
        raise ValidationError(f"{Path(path).name} is not a PDF.")
    objects = _objects(data)
    xobjects: dict[bytes, int] = {}
    for head, _ in objects.values():
        block = re.search(rb"/XObject\s*<<(.*?)>>", head, re.S)
        if block:
            xobjects.update({name: int(num) for name, num in re.findall(rb"/(\w+) " + _REF, block.group(1))})
    pages, sizes, images = 0, [], []
    for number in sorted(objects):
        head, _ = objects[number]
        if not re.search(rb"/Type /Page\b(?!s)", head):
            continue
        pages += 1
        box = re.search(rb"/MediaBox \[([\d.\s-]+)\]", head)
        if box is None:  # fpdf2 puts the default MediaBox on /Pages
            box = re.search(rb"/MediaBox \[([\d.\s-]+)\]", next(h for h, _ in objects.values() if b"/Type /Pages" in h))
        x0, y0, x1, y1 = (float(v) for v in box.group(1).split())  # type: ignore[union-attr]
        sizes.append((round((x1 - x0) * _MM_PER_PT, 2), round((y1 - y0) * _MM_PER_PT, 2)))
        contents = re.search(rb"/Contents " + _REF, head)
        if contents is None:
            continue
        stream_head, stream = objects[int(contents.group(1))]
        text = _decoded(stream_head, stream or b"")
        for w_pt, h_pt, name in re.findall(rb"([\d.]+) 0 0 ([\d.]+) [\d.-]+ [\d.-]+ cm\s*/(\w+) Do", text):
            image_head = objects[xobjects[name]][0]
            width_px = int(re.search(rb"/Width (\d+)", image_head).group(1))  # type: ignore[union-attr]
            height_px = int(re.search(rb"/Height (\d+)", image_head).group(1))  # type: ignore[union-attr]
            w_in, h_in = float(w_pt) / 72, float(h_pt) / 72
            found = re.search(rb"/Filter /(\w+)", image_head)
            images.append({"page": pages, "name": name.decode(), "width_px": width_px, "height_px": height_px,
                           "placed_mm": (round(w_in * 25.4, 2), round(h_in * 25.4, 2)),
                           "dpi": min(width_px / w_in, height_px / h_in),
                           "filter": found.group(1).decode() if found else None})
    return {"pages": pages, "page_sizes_mm": sizes, "info": _info_dict(data, objects), "images": images}
