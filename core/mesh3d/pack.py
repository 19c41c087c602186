"""The compact binary format of one decimated arch at one stage ("TSMESH1").

Vertices are quantised to uint16 on a grid shared by every stage and arch of a model set (an
isotropic step of ~1 µm for a dental model), so the viewer can hand the integers to the browser as
they are: the scene keeps its proportions because all three axes share one step. Layout, all
little-endian::

    0   8s   magic b"TSMESH1\\n"
    8   u32  vertex count n            12  u32  triangle count m
    16  u8   index bytes (2 or 4)      17  u8   flags (bit 0: movement present)
    18  u16  reserved (0)              20  u32  reserved (0)
    24  3×f8 origin (mm)               48  f8   step (mm per unit)
    56  n×3 u16 vertices, then m×3 u16/u32 triangle indices, then n u16 movement in µm (optional)

Decoding checks every size against the header before reading, so a truncated or forged blob is
refused with ValidationError instead of producing garbage.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from core.errors import ValidationError

MAGIC: Final = b"TSMESH1\n"
CONTENT_TYPE: Final = "application/vnd.treatment-studio.mesh"
_HEADER: Final = struct.Struct("<8sIIBBHI3dd")
assert _HEADER.size == 56
_QUANT_MAX: Final = 65535
#: Movement is stored in whole micrometres, so up to 65.535 mm (far beyond any tooth movement).
MAX_MOVEMENT_MM: Final = _QUANT_MAX / 1000


@dataclass(frozen=True)
class QuantFrame:
    """The grid vertices are stored on: millimetres = origin + integer × step (same step on every axis)."""

    origin: tuple[float, float, float]
    step: float

    def __post_init__(self) -> None:
        if len(self.origin) != 3 or not all(math.isfinite(v) for v in self.origin):
            raise ValidationError(f"A quantisation origin needs three finite coordinates, got {self.origin!r}.")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValidationError(f"The quantisation step must be a positive number of mm, got {self.step!r}.")

    @classmethod
    def covering(cls, points: list[np.ndarray], *, margin_mm: float = 0.5) -> QuantFrame:
        """The tightest frame holding all `points` arrays (n, 3) plus a margin on every side."""
        filled = [p for p in points if len(p)]
        if not filled:
            raise ValidationError("There are no vertices to quantise.")
        low = np.min([p.min(axis=0) for p in filled], axis=0).astype(np.float64) - margin_mm
        high = np.max([p.max(axis=0) for p in filled], axis=0).astype(np.float64) + margin_mm
        extent = float((high - low).max())
        return cls((float(low[0]), float(low[1]), float(low[2])), extent / _QUANT_MAX)

    def quantize(self, vertices: np.ndarray) -> np.ndarray:
        """(n, 3) millimetres → (n, 3) uint16 grid coordinates (nearest grid point)."""
        units = np.rint((np.asarray(vertices, np.float64) - np.asarray(self.origin)) / self.step)
        if len(units) and (units.min() < 0 or units.max() > _QUANT_MAX):
            raise ValidationError("A vertex lies outside the quantisation frame; build the frame from every stage.")
        return units.astype(np.uint16)

    def to_mm(self, quantized: np.ndarray) -> np.ndarray:
        """(n, 3) uint16 grid coordinates → (n, 3) float32 millimetres."""
        return (quantized.astype(np.float64) * self.step + np.asarray(self.origin)).astype(np.float32)


@dataclass(frozen=True)
class PackedMesh:
    """One arch at one stage as stored: quantised vertices, triangles and optional per-vertex movement.

    `quantized` uint16 (n, 3); `faces` uint16 or uint32 (m, 3) indexing the vertices; `movement_um`
    uint16 (n,) micrometres moved since the first stage, or None. Validated on construction.
    """

    quantized: np.ndarray = field(compare=False, repr=False)
    faces: np.ndarray = field(compare=False, repr=False)
    frame: QuantFrame
    movement_um: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        q, f, m = self.quantized, self.faces, self.movement_um
        if not isinstance(q, np.ndarray) or q.dtype != np.uint16 or q.ndim != 2 or q.shape[1] != 3 or len(q) == 0:
            raise ValidationError("Packed vertices must be a non-empty uint16 array of shape (n, 3).")
        if (not isinstance(f, np.ndarray) or f.dtype not in (np.uint16, np.uint32) or f.ndim != 2
                or f.shape[1] != 3 or len(f) == 0):
            raise ValidationError("Packed triangles must be a non-empty uint16/uint32 array of shape (m, 3).")
        if int(f.max()) >= len(q):
            raise ValidationError(f"A packed triangle refers to vertex {int(f.max())}, but there are {len(q)}.")
        if f.dtype == np.uint16 and len(q) > _QUANT_MAX + 1:
            raise ValidationError("More than 65,536 vertices need uint32 triangle indices.")
        if m is not None and (not isinstance(m, np.ndarray) or m.dtype != np.uint16 or m.shape != (len(q),)):
            raise ValidationError("Packed movement must be a uint16 array with one value per vertex.")

    @classmethod
    def build(cls, vertices_mm: np.ndarray, faces: np.ndarray, frame: QuantFrame,
              movement_mm: np.ndarray | None = None) -> PackedMesh:
        """Quantise float vertices (and movement in mm) into a PackedMesh with the smallest index type."""
        faces = np.asarray(faces)
        index_type = np.uint16 if len(vertices_mm) <= _QUANT_MAX + 1 else np.uint32
        movement = None
        if movement_mm is not None:
            clipped = np.clip(np.asarray(movement_mm, np.float64), 0, MAX_MOVEMENT_MM)
            movement = np.rint(clipped * 1000).astype(np.uint16)
        return cls(frame.quantize(vertices_mm), np.ascontiguousarray(faces, dtype=index_type), frame, movement)

    @property
    def vertex_count(self) -> int:
        return len(self.quantized)

    @property
    def triangle_count(self) -> int:
        return len(self.faces)

    def vertices_mm(self) -> np.ndarray:
        return self.frame.to_mm(self.quantized)

    def movement_mm(self) -> np.ndarray | None:
        return None if self.movement_um is None else self.movement_um.astype(np.float32) / 1000


def encode(mesh: PackedMesh) -> bytes:
    """The blob of `mesh` (see the module docstring for the layout)."""
    flags = 1 if mesh.movement_um is not None else 0
    header = _HEADER.pack(MAGIC, mesh.vertex_count, mesh.triangle_count, mesh.faces.dtype.itemsize, flags, 0, 0,
                          *mesh.frame.origin, mesh.frame.step)
    index_type = "<u2" if mesh.faces.dtype == np.uint16 else "<u4"
    parts = [header, mesh.quantized.astype("<u2").tobytes(), mesh.faces.astype(index_type).tobytes()]
    if mesh.movement_um is not None:
        parts.append(mesh.movement_um.astype("<u2").tobytes())
    return b"".join(parts)


def decode(data: bytes) -> PackedMesh:
    """Parse a blob written by `encode`; ValidationError when it is not one, or is truncated or corrupt."""
    if len(data) < _HEADER.size or data[:8] != MAGIC:
        raise ValidationError("This is not a stored 3D model (wrong header); prepare the 3D view again.")
    _, n, m, index_bytes, flags, _, _, ox, oy, oz, step = _HEADER.unpack_from(data, 0)
    if index_bytes not in (2, 4) or flags > 1:
        raise ValidationError("The stored 3D model has an unknown layout; prepare the 3D view again.")
    expected = _HEADER.size + 6 * n + 3 * index_bytes * m + (2 * n if flags else 0)
    if len(data) != expected:
        raise ValidationError(f"The stored 3D model is {len(data):,} bytes but its header needs {expected:,}: it is "
                              "truncated or corrupt; prepare the 3D view again.")
    offset = _HEADER.size
    quantized = np.frombuffer(data, "<u2", 3 * n, offset).reshape(n, 3).astype(np.uint16)
    offset += 6 * n
    index_type = "<u2" if index_bytes == 2 else "<u4"
    faces = np.frombuffer(data, index_type, 3 * m, offset).reshape(m, 3)
    faces = faces.astype(np.uint16 if index_bytes == 2 else np.uint32)
    offset += 3 * index_bytes * m
    movement = np.frombuffer(data, "<u2", n, offset).astype(np.uint16) if flags else None
    return PackedMesh(quantized, faces, QuantFrame((ox, oy, oz), step), movement)
