"""Deterministic synthetic inputs for tests and benchmarks: screen recordings and iTero exports.

Everything here is fictional and drawn procedurally; no patient data is involved.
"""

from __future__ import annotations

import html
import math
import re
import struct
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import av
import cv2
import numpy as np

from core.errors import ValidationError

_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".mkv": "matroska"}
_NOISE_PATTERNS = 4
_NOISE_AMPLITUDE = 3


# --- screen recordings ----------------------------------------------------------------------


def render_stage_still(stage: int, *, stages: int, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """The noise-free RGB picture shown while stage `stage` (1-based) of `stages` is held."""
    _check_size(size)
    if not 1 <= stage <= stages:
        raise ValidationError(f"stage {stage} is outside 1–{stages}.")
    return _draw(_background(size), _stage_position(stage, stages), stage)


def make_test_recording(
    path: Path,
    *,
    stages: int,
    size: tuple[int, int] = (640, 360),
    fps: int = 30,
    hold_s: float = 0.8,
    move_s: float = 0.5,
    codec: str = "libx264",
    preset: str = "veryfast",
    crf: int = 20,
    seed: int = 0,
) -> None:
    """Write a screen-recording-like video: each stage's still (`render_stage_still`) held for
    `hold_s`, joined by a smooth `move_s` movement to the next, with light per-frame noise.

    The container follows the suffix (.mp4, .mov, .webm, .mkv). Output is deterministic for equal
    arguments. `preset` and `crf` are x264's speed preset (veryfast keeps CABAC and B-frames, like
    real screen recorders) and quality (lower: more bits, slower to decode).
    """
    _check_size(size)
    if stages < 1 or fps < 1 or hold_s <= 0 or move_s < 0:
        raise ValidationError("stages and fps must be ≥ 1, hold_s > 0 and move_s ≥ 0.")
    container_format = _CONTAINERS.get(path.suffix.lower())
    if container_format is None:
        raise ValidationError(f"Use one of {', '.join(_CONTAINERS)} as the recording's suffix.")
    width, height = size
    background = _background(size)
    rng = np.random.default_rng(seed)
    noise = [rng.integers(-_NOISE_AMPLITUDE, _NOISE_AMPLITUDE + 1, (height, width, 3), np.int16) for _ in range(4)]
    positive = [np.clip(pattern, 0, None).astype(np.uint8) for pattern in noise]
    negative = [np.clip(-pattern, 0, None).astype(np.uint8) for pattern in noise]
    hold_frames = max(1, round(hold_s * fps))
    move_frames = round(move_s * fps)

    def frames() -> list[tuple[float, int]]:
        plan: list[tuple[float, int]] = []
        for stage in range(1, stages + 1):
            plan += [(_stage_position(stage, stages), stage)] * hold_frames
            if stage < stages:
                start, end = _stage_position(stage, stages), _stage_position(stage + 1, stages)
                for step in range(1, move_frames + 1):
                    t = step / (move_frames + 1)
                    eased = t * t * (3 - 2 * t)
                    plan.append((start + (end - start) * eased, stage if t < 0.5 else stage + 1))
        return plan

    with av.open(str(path), "w", format=container_format) as output:
        stream = output.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": preset, "crf": str(crf)}
        for index, (position, label) in enumerate(frames()):
            picture = _draw(background, position, label)
            k = index % _NOISE_PATTERNS
            cv2.add(picture, positive[k], dst=picture)
            cv2.subtract(picture, negative[k], dst=picture)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValidationError(f"size {size} must be even and at least 64×64 (H.264 needs even sizes).")


def _stage_position(stage: int, stages: int) -> float:
    """Horizontal position (0..1 of the width) of the arch at a stage."""
    return 0.3 + 0.4 * (stage - 1) / max(stages - 1, 1)


def _background(size: tuple[int, int]) -> np.ndarray:
    width, height = size
    ramp = np.linspace(40, 110, height, dtype=np.float32)[:, None]
    image = np.empty((height, width, 3), np.uint8)
    image[:, :, 0] = ramp.astype(np.uint8)
    image[:, :, 1] = (ramp * 0.9 + 10).astype(np.uint8)
    image[:, :, 2] = (ramp * 0.6 + 60).astype(np.uint8)
    step = max(16, width // 24)
    for x in range(0, width, step):
        cv2.line(image, (x, 0), (x, height - 1), (70, 80, 100), 1)
    for y in range(0, height, step):
        cv2.line(image, (0, y), (width - 1, y), (70, 80, 100), 1)
    return image


def _draw(background: np.ndarray, position: float, label: int) -> np.ndarray:
    """The arch (a crescent of "teeth") centred at `position` of the width, and a stage label."""
    height, width = background.shape[:2]
    picture = background.copy()
    scale = height / 360
    shift = 4  # sub-pixel drawing so the movement is smooth
    factor = 1 << shift
    cx, cy = position * width, height * 0.55
    radius_x, radius_y = width * 0.16, height * 0.28
    for tooth in range(14):
        angle = math.pi * (0.08 + 0.84 * tooth / 13)
        x = cx - radius_x * math.cos(angle)
        y = cy - radius_y * math.sin(angle) + radius_y * 0.5
        size = (8 + 3 * math.sin(angle)) * scale
        center = (round(x * factor), round(y * factor))
        axes = (round(size * factor), round(size * 1.3 * factor))
        cv2.ellipse(picture, center, axes, 0, 0, 360, (235, 232, 220), -1, cv2.LINE_AA, shift)
        cv2.ellipse(picture, center, axes, 0, 0, 360, (150, 140, 120), max(1, round(scale)), cv2.LINE_AA, shift)
    cv2.putText(
        picture, f"Stage {label}", (round(16 * scale), round(40 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
        1.0 * scale, (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA,
    )  # fmt: skip
    return picture


# --- binary STL -----------------------------------------------------------------------------


def tiny_stl(*, offset: tuple[float, float, float] = (0.0, 0.0, 0.0), label: bytes = b"synthetic") -> bytes:
    """A valid binary STL: a closed tetrahedron shell (4 triangles) shifted by `offset` (mm)."""
    ox, oy, oz = offset
    points = [(ox, oy, oz), (ox + 10, oy, oz), (ox, oy + 10, oz), (ox, oy, oz + 10)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    body = bytearray(label[:80].ljust(80, b" "))
    body += struct.pack("<I", len(faces))
    for a, b, c in faces:
        pa, pb, pc = (np.array(points[i], np.float64) for i in (a, b, c))
        normal = np.cross(pb - pa, pc - pa)
        normal /= np.linalg.norm(normal)
        body += struct.pack("<12fH", *normal, *pa, *pb, *pc, 0)
    return bytes(body)


# --- iTero exports --------------------------------------------------------------------------

_ORDER_ID = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_PENTA_SIZE = (1920, 1080)


def make_itero_export(
    folder: Path,
    *,
    order_id: str,
    patient: tuple[str, str],
    doctor: str,
    stl: dict[str, bytes] | None = None,
) -> Path:
    """Write a synthetic MyiTero export into `folder` (created if needed) and return the manifest's path.

    Files: `itero_export_#<order>_v30.xml`, `Rx_<order>.html`, `gallery_#<order>.jpg`, five
    `gallery_#<order>_penta_<view>_m.jpg` views (1920×1080, a different drawn arch per view) and
    `itero_<order>_u.stl` / `_l.stl` (`stl` maps "upper"/"lower" to STL bytes; tiny valid shells
    by default). `patient` is (last, first). Use fictional data only.
    """
    if not _ORDER_ID.match(order_id):
        raise ValidationError("order_id must be 1–32 letters, digits or dashes.")
    folder.mkdir(parents=True, exist_ok=True)
    default_jaws = {"upper": tiny_stl(label=b"upper"), "lower": tiny_stl(offset=(0, 0, -12), label=b"lower")}
    jaws = stl if stl is not None else default_jaws
    if set(jaws) - {"upper", "lower"}:
        raise ValidationError("stl keys must be 'upper' and/or 'lower'.")
    gallery = f"gallery_#{order_id}.jpg"
    penta = {view: f"gallery_#{order_id}_penta_{view}_m.jpg" for view in ("front", "left", "right", "upper", "lower")}
    jaw_files = {arch: f"itero_{order_id}_{arch[0]}.stl" for arch in jaws}

    (folder / gallery).write_bytes(_jpeg(_penta_picture("front", order_id, size=(1280, 720))))
    for view, name in penta.items():
        (folder / name).write_bytes(_jpeg(_penta_picture(view, order_id, size=_PENTA_SIZE)))
    for arch, name in jaw_files.items():
        (folder / name).write_bytes(jaws[arch])
    (folder / f"Rx_{order_id}.html").write_text(_rx_html(order_id, patient, doctor), encoding="utf-8")

    root = ElementTree.Element("iTeroExport", Version="3.0")
    info = ElementTree.SubElement(root, "RxInfo")
    fields = {
        "OrderID": order_id,
        "OrderCode": f"OC-{order_id}",
        "CaseTypeName": "iRecord",
        "Patient": f"{patient[0]}, {patient[1]}",
        "Doctor": doctor,
        "ExportTime": "2024-03-05T14:22:10",
        "iTeroVersion": "2.1.0.412",
    }
    for tag, text in fields.items():
        ElementTree.SubElement(info, tag).text = text
    objects = ElementTree.SubElement(root, "ExportedObjects")
    for name in (gallery, *penta.values()):
        ElementTree.SubElement(objects, "Object", ObjectType="Image", SubType="Gallery", FileName=name)
    for arch, name in jaw_files.items():
        attributes = {"ObjectType": "Surface", "SubType": "Jaw", "JawId": arch.title(), "FileName": name}
        ElementTree.SubElement(objects, "Object", attributes)
    ElementTree.indent(root)
    manifest = folder / f"itero_export_#{order_id}_v30.xml"
    manifest.write_bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))
    return manifest


def _penta_picture(view: str, order_id: str, *, size: tuple[int, int]) -> np.ndarray:
    """A recognisable drawing per view: the arch seen from the front, a side, or occlusally."""
    width, height = size
    picture = np.full((height, width, 3), (30, 34, 40), np.uint8)
    s = height / 1080
    cx, cy = width // 2, height // 2
    tooth, outline = (236, 232, 218), (120, 110, 95)
    if view in ("upper", "lower"):
        # Occlusal view: a U of teeth, opening down for the upper arch and up for the lower.
        sign = 1 if view == "upper" else -1
        for index in range(14):
            angle = math.pi * index / 13
            x = cx + round(420 * s * math.cos(angle))
            y = cy - sign * round(330 * s * math.sin(angle)) + sign * round(160 * s)
            cv2.circle(picture, (x, y), round(48 * s), tooth, -1, cv2.LINE_AA)
            cv2.circle(picture, (x, y), round(48 * s), outline, max(1, round(3 * s)), cv2.LINE_AA)
    else:
        # Front or side view: two rows of teeth; the side views are offset and mirrored.
        count = 10 if view == "front" else 7
        shift = {"front": 0, "left": -220, "right": 220}[view] * s
        for row, (y, h) in enumerate(((cy - round(120 * s), round(110 * s)), (cy + round(10 * s), round(95 * s)))):
            for index in range(count):
                x = round(cx + shift + (index - (count - 1) / 2) * 86 * s * (1 if view != "left" else -1))
                w = round((40 - abs(index - (count - 1) / 2) * 2) * s)
                center, axes = (x, y + h // 2), (w, h // 2)
                cv2.ellipse(picture, center, axes, 0, 0, 360, tooth, -1, cv2.LINE_AA)
                cv2.ellipse(picture, center, axes, 0, 0, 360, outline, max(1, round(3 * s)), cv2.LINE_AA)
            if row == 0:
                gum_left, gum_right = round(cx + shift - 500 * s), round(cx + shift + 500 * s)
                cv2.line(picture, (gum_left, y - 8), (gum_right, y - 8), (160, 80, 90), 6)
    cv2.putText(picture, f"{view} #{order_id}", (round(40 * s), round(80 * s)), cv2.FONT_HERSHEY_SIMPLEX,
                2 * s, (255, 255, 255), max(1, round(3 * s)), cv2.LINE_AA)  # fmt: skip
    return picture


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValidationError("JPEG encoding failed.")
    return encoded.tobytes()


def _rx_html(order_id: str, patient: tuple[str, str], doctor: str) -> str:
    last, first = (html.escape(part) for part in patient)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Rx</title></head><body>\n"
        f"<h1>Rx #{html.escape(order_id)}</h1>\n<table>\n"
        f"<tr><th>Patient</th><td>{last}, {first}</td></tr>\n"
        f"<tr><th>Doctor</th><td>{html.escape(doctor)}</td></tr>\n"
        "<tr><th>Case type</th><td>iRecord</td></tr>\n</table>\n</body></html>\n"
    )
