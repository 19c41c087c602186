"""Staged 3D models from aligner software: parse one STL/PLY/OBJ per arch and stage, render clinical views.

In-house aligner planning software (3Shape Ortho System, OnyxCeph, uLab, ArchForm) exports one
surface mesh per arch per stage (``Upper_Stage_07.stl``, ``subsetup7_lower.stl``, ...). This module

* parses such a file from bytes into a validated :class:`Mesh` (:func:`load_mesh`); the format is
  decided from the content, never from the file name;
* renders the standard clinical views of one stage offscreen on the CPU (:class:`StageRenderer`,
  VTK through PyVista on Mesa's EGL software driver), so per-stage videos can be made.

Rendering is optional: :func:`rendering_available` says what is missing, and pyvista/vtk are only
imported inside the functions that render, so importing this module never fails.

Orientation assumed for the exports (the common convention of dental scans, right-handed, "RAS"):
``+X`` is the patient's right, ``+Y`` anterior (towards the incisors), ``+Z`` superior (the lower
arch's teeth point to ``+Z``, the upper arch's to ``-Z``, the upper arch sits above the lower one).
Small deviations are tolerated: the cameras are set up from the reference meshes' bounding boxes in
a frame whose "up" is the arches' own occlusal normal (principal axis of least spread), so a
slightly tilted or off-centre export is still framed and levelled.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import numpy as np

from core.errors import ConfigurationError, ValidationError
from core.importing.sniff import describe, sniff

# VTK picks its OpenGL window class when it is first imported; EGL renders offscreen without an X
# server (Mesa's llvmpipe on the CPU). Respect an explicit choice (e.g. vtkOSOpenGLRenderWindow).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

__all__ = [
    "CLINICAL_VIEWS",
    "MAX_EXTENT_MM",
    "Mesh",
    "MeshSummary",
    "RenderSpec",
    "StageRenderer",
    "anatomical_axes",
    "inspect_mesh",
    "load_mesh",
    "rendering_available",
]

#: Largest plausible size of a dental model along any axis; bigger means wrong units (µm, 0.1 mm).
MAX_EXTENT_MM: Final = 500.0
#: No coordinate of a model in millimetres lies this far from the origin (a kilometre): larger values
#: are corrupt numbers, refused before they are narrowed to float32 (where 1e39 would become inf).
MAX_COORDINATE: Final = 1_000_000.0
#: Face indices and element counts must fit the int32 index arrays a Mesh keeps.
MAX_INDEX: Final = 2**31 - 1

# ----------------------------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------------------------


def _check_geometry(vertices: np.ndarray, faces: np.ndarray, label: str) -> None:
    """Raise ValidationError naming `label` unless vertices/faces form a usable triangle mesh."""
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValidationError(f"{label}: vertices must have shape (n, 3), got {vertices.shape}.")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValidationError(f"{label}: faces must have shape (m, 3), got {faces.shape}.")
    if len(faces) == 0 or len(vertices) == 0:
        raise ValidationError(f"{label} contains no triangles: export the arch again as a surface mesh.")
    if not np.isfinite(vertices).all():
        raise ValidationError(f"{label} has NaN or infinite vertex coordinates: the export is corrupt; "
                              "export it again.")
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= len(vertices):
        bad = low if low < 0 else high
        raise ValidationError(f"{label} has a face referring to vertex {bad}, but only vertices 0–{len(vertices) - 1} "
                              "exist: the file is corrupt; export it again.")


@dataclass(frozen=True)
class Mesh:
    """A triangle surface: `vertices` float32 (n, 3) in millimetres, `faces` int32 (m, 3) vertex indices.

    Validated on construction (shapes, finite coordinates, indices in range, not empty); the arrays
    are stored as read-only views so a Mesh cannot change after it was checked. Arrays are excluded
    from equality (compare identity or the arrays themselves).
    """

    vertices: np.ndarray = field(compare=False, repr=False)
    faces: np.ndarray = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        vertices = np.asarray(self.vertices)
        faces = np.asarray(self.faces)
        if vertices.dtype != np.float32:
            raise ValidationError(f"Mesh vertices must be float32, got {vertices.dtype}.")
        if faces.dtype != np.int32:
            raise ValidationError(f"Mesh faces must be int32, got {faces.dtype}.")
        _check_geometry(vertices, faces, "The mesh")
        # Read-only views: the caller's own arrays keep their flags, ours can't be written through.
        vertices = np.ascontiguousarray(vertices).view()
        faces = np.ascontiguousarray(faces).view()
        vertices.flags.writeable = False
        faces.flags.writeable = False
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "faces", faces)

    @property
    def triangle_count(self) -> int:
        return len(self.faces)

    @property
    def vertex_count(self) -> int:
        return len(self.vertices)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min xyz, max xyz) as float64 arrays."""
        return self.vertices.min(axis=0).astype(np.float64), self.vertices.max(axis=0).astype(np.float64)

    def __repr__(self) -> str:
        return f"Mesh(vertices={self.vertex_count}, triangles={self.triangle_count})"


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------

_STL_RECORD: Final = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
assert _STL_RECORD.itemsize == 50
_FORMATS_HINT: Final = "expected a binary or ASCII STL, an ASCII or binary PLY, or an OBJ file"


def load_mesh(data: bytes, *, name: str, max_triangles: int = 2_000_000) -> Mesh:
    """Parse one exported arch (binary/ASCII STL, ASCII/binary PLY, OBJ) into a validated Mesh.

    The format is decided from the content (binary STL by its exact size, ASCII STL by
    ``solid`` … ``facet``, PLY by its ``ply`` magic, OBJ by ``v``/``f`` lines); `name` is only used
    in messages. STL duplicates every vertex per triangle, so coincident vertices are merged to
    let the renderer shade smoothly. Polygons (PLY/OBJ quads etc.) are split into triangles.

    Raises ValidationError (message names the file and says what to do) for empty or unreadable
    files, NaN/inf coordinates, face indices out of range, models larger than 500 mm (wrong
    units) and more than `max_triangles` triangles.
    """
    if isinstance(max_triangles, bool) or not isinstance(max_triangles, int) or max_triangles < 1:
        raise ValidationError(f"max_triangles must be a positive integer, got {max_triangles!r}.")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"{name}: expected the file's bytes, got {type(data).__name__}.")
    data = bytes(data)
    if not data[:4096].strip() and not data.strip():  # strip (a copy) only when the head is blank
        raise ValidationError(f"{name} is empty: upload the exported STL, PLY or OBJ file of the arch.")

    fmt = _detect_format(data, name)
    if fmt == "stl-binary":
        vertices, faces = _parse_stl_binary(data, name, max_triangles)
    elif fmt == "stl-ascii":
        vertices, faces = _parse_stl_ascii(data, name, max_triangles)
    elif fmt == "ply":
        vertices, faces = _parse_ply(data, name, max_triangles)
    else:
        vertices, faces = _parse_obj(data, name, max_triangles)
    return _finish(vertices, faces, name, max_triangles)


@dataclass(frozen=True)
class MeshSummary:
    """What a mesh file is, checked by content: its format, triangle count and MIME type."""

    format: str  # "binary STL", "ASCII STL", "PLY"
    triangles: int
    content_type: str

    def __post_init__(self) -> None:
        if self.triangles < 1:
            raise ValidationError("A mesh summary needs at least one triangle.")


def inspect_mesh(data: bytes, *, name: str, max_triangles: int = 2_000_000) -> MeshSummary:
    """Check that `data` is a usable STL (binary or ASCII) or PLY surface and count its triangles,
    without building a Mesh (no vertex merging): for files that are stored, not rendered, such as
    the jaw scans of an iTero export. Coordinates are checked to be finite and in range.

    Raises ValidationError saying what the file is instead (empty, an HTML page, truncated, …).
    """
    if not data:
        raise ValidationError(f"{name} is empty (0 bytes).")
    kind = sniff(data)
    if kind == "stl-binary":
        count = struct.unpack_from("<I", data, 80)[0]
        if count == 0:
            raise ValidationError(f"{name} is a binary STL with no triangles.")
        if count > max_triangles:
            raise _too_many(name, count, max_triangles)
        records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
        _check_coordinates(records["v"], name)
        return MeshSummary("binary STL", count, "model/stl")
    if kind == "stl-ascii":
        corners = _stl_ascii_corners(data, name, max_triangles)
        _check_coordinates(corners, name)
        return MeshSummary("ASCII STL", len(corners) // 3, "model/stl")
    if kind == "ply":
        return MeshSummary("PLY", load_mesh(data, name=name, max_triangles=max_triangles).triangle_count, "model/ply")
    if kind is None and len(data) >= 84 and _is_binary(data[:4096]):
        _detect_format(data, name)  # raises: names the announced and the real size of a cut-off STL
    raise ValidationError(f"{name} is {describe(kind)}, not an STL or PLY model.")


_CONTROL_BYTES: Final = bytes(range(9)) + bytes(range(14, 32))


def _is_binary(chunk: bytes) -> bool:
    """True when `chunk` has control bytes: text exports (STL/PLY/OBJ) never do, while a binary
    STL's float payload (and usually its header padding) is full of them."""
    return len(chunk.translate(None, _CONTROL_BYTES)) != len(chunk)


def _detect_format(data: bytes, name: str) -> str:
    head = data[:4096]
    if head.startswith(b"ply") and head[3:4] in (b"\n", b"\r", b" "):
        return "ply"
    # Exact size first: many binary STLs start their 80-byte header with "solid" too.
    if len(data) >= 84:
        count = struct.unpack_from("<I", data, 80)[0]
        if len(data) == 84 + 50 * count:
            return "stl-binary"
    stripped = head.lstrip()
    binary = _is_binary(head)
    if stripped[:5].lower() == b"solid" and b"facet" in data[:65536] and not binary:
        return "stl-ascii"
    if not binary and re.search(rb"(?m)^[ \t]*v[ \t]", data) and re.search(rb"(?m)^[ \t]*f[ \t]", data):
        return "obj"
    if len(data) >= 84 and binary:
        # Binary but not the size its header promises: a truncated download or a corrupt count.
        count = struct.unpack_from("<I", data, 80)[0]
        expected = 84 + 50 * count
        raise ValidationError(
            f"{name} looks like a binary STL whose header announces {count:,} triangles ({expected:,} bytes), "
            f"but the file has {len(data):,} bytes: it is truncated or corrupt. Export or upload it again.")
    raise ValidationError(f"{name} is not a 3D mesh this app can read ({_FORMATS_HINT}).")


def _parse_stl_binary(data: bytes, name: str, max_triangles: int) -> tuple[np.ndarray, np.ndarray]:
    count = struct.unpack_from("<I", data, 80)[0]
    # Both checks happen before any array is allocated from the announced count.
    if len(data) != 84 + 50 * count:
        raise ValidationError(f"{name}: binary STL size {len(data):,} does not match its {count:,} triangles.")
    if count > max_triangles:
        raise _too_many(name, count, max_triangles)
    if count == 0:
        raise ValidationError(f"{name} contains no triangles: export the arch again as a surface mesh.")
    records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
    return _merge_vertices(records["v"].reshape(-1, 3), name)


_STL_VERTEX = re.compile(rb"vertex\s+(\S+)\s+(\S+)\s+(\S+)")


def _parse_stl_ascii(data: bytes, name: str, max_triangles: int) -> tuple[np.ndarray, np.ndarray]:
    return _merge_vertices(_stl_ascii_corners(data, name, max_triangles), name)


def _stl_ascii_corners(data: bytes, name: str, max_triangles: int) -> np.ndarray:
    """The (3 × triangles, 3) corner coordinates of an ASCII STL, as float64."""
    facets = data.count(b"endfacet")
    if facets > max_triangles:  # cheap count before tokenising a huge file
        raise _too_many(name, facets, max_triangles)
    tokens = _STL_VERTEX.findall(data)
    if not tokens:
        raise ValidationError(f"{name} contains no triangles: export the arch again as a surface mesh.")
    if len(tokens) % 3:
        raise ValidationError(f"{name}: an ASCII STL facet must have exactly 3 vertices; the file is corrupt or "
                              "truncated. Export it again.")
    return _floats(tokens, name)


def _floats(tokens: list[Any], name: str) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.bytes_).astype(np.float64)
    except ValueError as error:
        raise ValidationError(f"{name} has a coordinate that is not a number ({error}); the file is corrupt.") from None


def _merge_vertices(corners: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Merge coincident corners (STL repeats each vertex for every triangle around it).

    Coordinates are snapped to a grid of 1/2**20 of the model's extent (≈0.1 µm for an arch,
    independent of the units) and packed into one int64 key per vertex, so np.unique sorts
    integers instead of rows; float32 copies of one vertex are bit-identical and always merge.
    """
    _check_coordinates(corners, name)
    low = corners.min(axis=0).astype(np.float64)
    extent = float((corners.max(axis=0) - low).max())
    _check_extent(extent, name)
    step = max(extent, 1e-12) / float(1 << 20)
    keys = np.zeros(len(corners), np.int64)
    for axis in range(3):  # one axis at a time: at the triangle cap, full (n, 3) int64 copies are big
        keys <<= 21
        keys |= np.rint((corners[:, axis] - low[axis]) / step).astype(np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return corners[first].astype(np.float64), inverse.reshape(-1, 3)


def _check_coordinates(values: np.ndarray, name: str) -> None:
    """Finite and within ±MAX_COORDINATE, checked on the parsed (float64 or float32) values."""
    if not np.isfinite(values).all():
        raise ValidationError(f"{name} has NaN or infinite vertex coordinates: the export is corrupt; "
                              "export it again.")
    if values.size:
        largest = float(np.abs(values).max())
        if largest > MAX_COORDINATE:
            raise ValidationError(
                f"{name} has a vertex coordinate of {largest:.3g}, far outside any dental model in millimetres "
                f"(±{MAX_COORDINATE:,.0f}): the file is corrupt or not in millimetres. Export it again.")


def _check_extent(extent: float, name: str) -> None:
    if extent > MAX_EXTENT_MM:
        raise ValidationError(
            f"{name} is {extent:,.0f} units across; a dental arch is well under {MAX_EXTENT_MM:.0f} mm. "
            "Export it in millimetres.")


def _too_many(name: str, count: int, max_triangles: int) -> ValidationError:
    return ValidationError(
        f"{name} has {count:,} triangles, more than the {max_triangles:,} allowed: decimate the mesh "
        "(or export at a lower resolution) and upload it again.")


def _fan(indices: np.ndarray, sizes: np.ndarray, name: str) -> np.ndarray:
    """Triangulate polygons given as a flat index array and per-polygon vertex counts (fan from the first)."""
    if len(sizes) and int(sizes.min()) < 3:
        raise ValidationError(f"{name} has a face with fewer than 3 vertices; the file is corrupt. Export it again.")
    if len(sizes) and int(sizes.max()) == 3 and int(sizes.min()) == 3:
        return indices.reshape(-1, 3)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    per_polygon = sizes - 2
    polygon = np.repeat(np.arange(len(sizes)), per_polygon)
    # k-th triangle of a polygon: (first, first + k + 1, first + k + 2)
    k = np.arange(len(polygon)) - np.repeat(np.cumsum(per_polygon) - per_polygon, per_polygon)
    first = starts[polygon]
    return np.stack([indices[first], indices[first + k + 1], indices[first + k + 2]], axis=1)


# --- PLY -------------------------------------------------------------------------------------

_PLY_TYPES: Final = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass(frozen=True)
class _PlyProperty:
    name: str
    dtype: str  # numpy type code without byte order
    count_dtype: str | None = None  # set for list properties


@dataclass(frozen=True)
class _PlyElement:
    name: str
    count: int
    properties: tuple[_PlyProperty, ...]


def _parse_ply(data: bytes, name: str, max_triangles: int) -> tuple[np.ndarray, np.ndarray]:
    end = re.search(rb"end_header[ \t]*\r?\n", data[:65536])
    if end is None:
        raise ValidationError(f"{name}: the PLY header has no end_header line; the file is corrupt or truncated.")
    header = data[:end.start()].decode("ascii", errors="replace").splitlines()
    body = data[end.end():]
    fmt: str | None = None
    elements: list[_PlyElement] = []
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(_PlyElement(words[1], _ply_count(words[1], words[2], name), ()))
        elif words[0] == "property" and elements:
            prop = _ply_property(words, name)
            last = elements[-1]
            elements[-1] = _PlyElement(last.name, last.count, (*last.properties, prop))
        else:
            raise ValidationError(f"{name}: unexpected PLY header line {line.strip()!r}; the file is corrupt.")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValidationError(f"{name}: unsupported PLY format {fmt!r}; export as ASCII or binary little-endian PLY.")
    names = [element.name for element in elements]
    if "vertex" not in names or "face" not in names:
        raise ValidationError(f"{name}: the PLY file has no vertex and face elements (a point cloud?); export the "
                              "arch as a triangle mesh.")
    vertex_element = elements[names.index("vertex")]
    if not {"x", "y", "z"} <= {p.name for p in vertex_element.properties}:
        raise ValidationError(f"{name}: the PLY vertices have no x/y/z properties.")
    face_element = elements[names.index("face")]
    list_props = [p for p in face_element.properties if p.count_dtype is not None]
    if not any(p.name in ("vertex_indices", "vertex_index") for p in list_props):
        raise ValidationError(f"{name}: the PLY faces have no vertex_indices list.")
    if face_element.count > max_triangles:  # every face is at least one triangle
        raise _too_many(name, face_element.count, max_triangles)
    if fmt == "ascii":
        parsed = _ply_ascii_body(body, elements, name)
    else:
        parsed = _ply_binary_body(body, elements, "<" if fmt == "binary_little_endian" else ">", name)
    vertex_columns = parsed["vertex"][0]
    vertices = np.stack([vertex_columns["x"], vertex_columns["y"], vertex_columns["z"]], axis=1).astype(np.float64)
    indices, sizes = parsed["face"][1]
    if int(sizes.sum() - 2 * len(sizes)) > max_triangles:
        raise _too_many(name, int(sizes.sum() - 2 * len(sizes)), max_triangles)
    return vertices, _fan(indices, sizes, name)


def _ply_count(element: str, digits: str, name: str) -> int:
    """An element count from the header, range-checked before anything is sized from it."""
    if len(digits) > len(str(MAX_INDEX)) or int(digits) > MAX_INDEX:
        shown = f"{int(digits):,}" if len(digits) <= 30 else f"a {len(digits)}-digit number of"
        raise ValidationError(f"{name}: the PLY header announces {shown} {element} records; at most {MAX_INDEX:,} "
                              "are accepted. The file is corrupt; export it again.")
    return int(digits)


def _ply_property(words: list[str], name: str) -> _PlyProperty:
    if len(words) == 5 and words[1] == "list":
        if words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
            raise ValidationError(f"{name}: unknown PLY list type {words[2]}/{words[3]}.")
        return _PlyProperty(words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]])
    if len(words) == 3 and words[1] in _PLY_TYPES:
        return _PlyProperty(words[2], _PLY_TYPES[words[1]])
    raise ValidationError(f"{name}: unsupported PLY property line {' '.join(words)!r}.")


# Each parsed element: (scalar columns by name, (flat indices of its vertex list, list sizes)).
_Parsed = dict[str, tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]]
_EMPTY_LIST: Final = (np.zeros(0, np.int64), np.zeros(0, np.int64))


def _ply_ascii_body(body: bytes, elements: list[_PlyElement], name: str) -> _Parsed:
    lines = [line for line in body.splitlines() if line.strip()]
    parsed: _Parsed = {}
    row = 0
    for element in elements:
        rows = lines[row:row + element.count]
        if len(rows) < element.count:
            raise ValidationError(f"{name}: the PLY file ends after {len(rows)} of {element.count} {element.name} "
                                  "lines; it is truncated. Export it again.")
        row += element.count
        if element.name in ("vertex", "face"):
            parsed[element.name] = _ply_ascii_rows(rows, element, name)
    return parsed


def _ply_ascii_rows(rows: list[bytes], element: _PlyElement, name: str) -> tuple[dict[str, np.ndarray],
                                                                                  tuple[np.ndarray, np.ndarray]]:
    split = [line.split() for line in rows]
    has_list = any(p.count_dtype for p in element.properties)
    try:
        if not has_list or len({len(tokens) for tokens in split}) == 1:
            # Every row has the same layout (all triangles, or no list at all): parse as one table.
            table = np.array(split, dtype=np.bytes_).astype(np.float64) if split else np.zeros((0, 0))
            return _columns_from_table(table, element, name)
        return _ply_rows_one_by_one(split, element, name)
    except (ValueError, IndexError):
        raise ValidationError(f"{name}: a PLY {element.name} line is malformed; the file is corrupt.") from None


def _columns_from_table(table: np.ndarray, element: _PlyElement, name: str) -> tuple[dict[str, np.ndarray],
                                                                                     tuple[np.ndarray, np.ndarray]]:
    columns: dict[str, np.ndarray] = {}
    lists = _EMPTY_LIST
    col = 0
    for prop in element.properties:
        if prop.count_dtype is None:
            columns[prop.name] = table[:, col]
            col += 1
            continue
        if len(table) == 0:
            continue
        size = int(table[0, col])
        if not (table[:, col] == size).all():
            raise ValueError("mixed list sizes")
        values = table[:, col + 1:col + 1 + size]
        if values.shape[1] != size:
            raise ValueError("short list")
        if prop.name in ("vertex_indices", "vertex_index"):
            lists = (_as_indices(values.reshape(-1), name), np.full(len(table), size, np.int64))
        col += 1 + size
    if len(table) and col != table.shape[1]:
        raise ValueError("extra values")
    return columns, lists


def _ply_rows_one_by_one(split: list[list[bytes]], element: _PlyElement,
                         name: str) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    # Mixed polygon sizes: the slow path, a Python loop per row.
    columns: dict[str, list[float]] = {p.name: [] for p in element.properties if p.count_dtype is None}
    flat: list[bytes] = []
    sizes: list[int] = []
    for tokens in split:
        col = 0
        for prop in element.properties:
            if prop.count_dtype is None:
                columns[prop.name].append(float(tokens[col]))
                col += 1
                continue
            size = int(tokens[col])
            values = tokens[col + 1:col + 1 + size]
            if len(values) != size:
                raise ValueError("short list")
            if prop.name in ("vertex_indices", "vertex_index"):
                flat.extend(values)
                sizes.append(size)
            col += 1 + size
        if col != len(tokens):
            raise ValueError("extra values")
    indices = _as_indices(np.array(flat, dtype=np.bytes_).astype(np.float64), name)
    return {key: np.array(values) for key, values in columns.items()}, (indices, np.array(sizes, np.int64))


def _as_indices(values: np.ndarray, name: str) -> np.ndarray:
    """Face indices as int64, refused unless they are whole numbers in 0..MAX_INDEX (checked on the
    float64 values, before the conversion that would turn 1e20 into an arbitrary integer)."""
    if not len(values):
        return values.astype(np.int64)
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValidationError(f"{name}: a face index is not an integer; the file is corrupt.")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > MAX_INDEX:
        bad = low if low < 0 else high
        raise ValidationError(f"{name}: a face refers to vertex {bad:.0f}, outside the range a mesh can index "
                              f"(0–{MAX_INDEX:,}); the file is corrupt. Export it again.")
    return values.astype(np.int64)


def _ply_binary_body(body: bytes, elements: list[_PlyElement], order: str, name: str) -> _Parsed:
    parsed: _Parsed = {}
    offset = 0
    for element in elements:
        scalars = [p for p in element.properties if p.count_dtype is None]
        lists = [p for p in element.properties if p.count_dtype is not None]
        if not lists:
            dtype = np.dtype([(p.name, order + p.dtype) for p in scalars])
            needed = element.count * dtype.itemsize
            if offset + needed > len(body):  # checked before frombuffer allocates anything
                raise _ply_truncated(name, element)
            table = np.frombuffer(body, dtype=dtype, count=element.count, offset=offset)
            offset += needed
            parsed[element.name] = ({p.name: table[p.name] for p in scalars}, _EMPTY_LIST)
            continue
        result, offset = _ply_binary_lists(body, offset, element, order, name)
        parsed[element.name] = result
    return parsed


def _ply_truncated(name: str, element: _PlyElement) -> ValidationError:
    return ValidationError(f"{name}: the PLY file ends inside its {element.count:,} {element.name} records; it is "
                           "truncated. Export or upload it again.")


def _ply_binary_lists(body: bytes, offset: int, element: _PlyElement, order: str,
                      name: str) -> tuple[tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]], int]:
    # Fast path: when the first record's list sizes hold for every record (all triangles, or all
    # quads), the element is a fixed-size table numpy can read in one go.
    if element.count == 0:
        return ({}, _EMPTY_LIST), offset
    fields: list[tuple[str, str] | tuple[str, str, tuple[int]]] = []
    probe = offset
    for index, prop in enumerate(element.properties):
        if prop.count_dtype is None:
            fields.append((f"s{index}", order + prop.dtype))
            probe += np.dtype(prop.dtype).itemsize
            continue
        count_type = np.dtype(order + prop.count_dtype)
        if probe + count_type.itemsize > len(body):
            raise _ply_truncated(name, element)
        size = int(np.frombuffer(body, count_type, count=1, offset=probe)[0])
        fields.append((f"n{index}", order + prop.count_dtype))
        fields.append((f"l{index}", order + prop.dtype, (size,)))
        probe += count_type.itemsize + size * np.dtype(prop.dtype).itemsize
    dtype = np.dtype(fields)  # type: ignore[arg-type]
    fits = offset + element.count * dtype.itemsize <= len(body)
    table = np.frombuffer(body, dtype=dtype, count=element.count, offset=offset) if fits else None
    if table is not None and all(
            (table[f"n{i}"] == table[f"l{i}"].shape[1]).all()
            for i, p in enumerate(element.properties) if p.count_dtype is not None):
        columns = {p.name: table[f"s{i}"] for i, p in enumerate(element.properties) if p.count_dtype is None}
        lists = _EMPTY_LIST
        for i, prop in enumerate(element.properties):
            if prop.name in ("vertex_indices", "vertex_index"):
                values = table[f"l{i}"]
                lists = (_as_indices(values.reshape(-1).astype(np.float64), name),
                         np.full(element.count, values.shape[1], np.int64))
        return (columns, lists), offset + element.count * dtype.itemsize
    return _ply_binary_lists_slow(body, offset, element, order, name)


def _ply_binary_lists_slow(body: bytes, offset: int, element: _PlyElement, order: str,
                           name: str) -> tuple[tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]], int]:
    columns: dict[str, list[float]] = {p.name: [] for p in element.properties if p.count_dtype is None}
    flat: list[np.ndarray] = []
    sizes: list[int] = []
    formats = {p.name: (struct.Struct(order + np.dtype(p.dtype).char),
                        struct.Struct(order + np.dtype(p.count_dtype).char) if p.count_dtype else None)
               for p in element.properties}
    for _ in range(element.count):
        for prop in element.properties:
            value_struct, count_struct = formats[prop.name]
            try:
                if count_struct is None:
                    columns[prop.name].append(value_struct.unpack_from(body, offset)[0])
                    offset += value_struct.size
                    continue
                size = count_struct.unpack_from(body, offset)[0]
                offset += count_struct.size
                end = offset + size * value_struct.size
                if end > len(body):
                    raise _ply_truncated(name, element)
                values = np.frombuffer(body, order + prop.dtype, count=size, offset=offset)
                offset = end
            except struct.error:
                raise _ply_truncated(name, element) from None
            if prop.name in ("vertex_indices", "vertex_index"):
                flat.append(values.astype(np.int64))
                sizes.append(size)
    indices = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    return ({k: np.array(v) for k, v in columns.items()}, (indices, np.array(sizes, np.int64))), offset


# --- OBJ -------------------------------------------------------------------------------------

_OBJ_SLASH_TAIL = re.compile(rb"/\S*")


def _parse_obj(data: bytes, name: str, max_triangles: int) -> tuple[np.ndarray, np.ndarray]:
    vertex_rows: list[list[bytes]] = []
    face_rows: list[list[bytes]] = []
    vertices_before: list[int] = []  # vertices defined before each face (for negative indices)
    for raw in data.splitlines():
        line = raw.split(b"#", 1)[0]
        words = line.split()
        if not words:
            continue
        if words[0] == b"v":
            if len(words) < 4:
                raise ValidationError(f"{name}: an OBJ vertex line has fewer than 3 coordinates: {raw[:60]!r}.")
            vertex_rows.append(words[1:4])
        elif words[0] == b"f":
            face_rows.append(words[1:])
            vertices_before.append(len(vertex_rows))
    if not face_rows or not vertex_rows:
        raise ValidationError(f"{name} contains no triangles: export the arch again as a surface mesh.")
    sizes = np.fromiter((len(row) for row in face_rows), np.int64, len(face_rows))
    triangles = int((sizes - 2).clip(min=0).sum())
    if triangles > max_triangles:
        raise _too_many(name, triangles, max_triangles)
    vertices = _floats(vertex_rows, name)
    # "7/3/5", "7//5", "7/3" -> "7": only the position index matters here.
    tokens = _OBJ_SLASH_TAIL.sub(b"", b" ".join(b" ".join(row) for row in face_rows)).split()
    if len(tokens) != int(sizes.sum()):
        raise ValidationError(f"{name}: an OBJ face has an empty vertex index; the file is corrupt.")
    indices = _obj_indices(tokens, len(vertex_rows), name)
    if (indices == 0).any():
        raise ValidationError(f"{name}: an OBJ face has a zero vertex index (indices start at 1); the "
                              "file is corrupt.")
    defined = np.repeat(np.array(vertices_before, np.int64), sizes)
    if (indices < -defined).any():
        bad = int(indices[indices < -defined][0])
        raise ValidationError(f"{name}: an OBJ face refers to vertex {bad}, counting back further than the vertices "
                              "defined before it; the file is corrupt. Export it again.")
    # Positive indices are 1-based; negative ones count back from the last vertex defined so far.
    indices = np.where(indices > 0, indices - 1, defined + indices)
    return vertices, _fan(indices, sizes, name)


def _obj_indices(tokens: list[bytes], vertex_count: int, name: str) -> np.ndarray:
    """OBJ vertex indices as int64, each checked against the vertices the file defines before it is
    converted: a 20-digit index is a clear error, not an OverflowError."""
    longest = len(str(vertex_count)) + 1  # a sign and the digits of the largest valid index
    for token in tokens:
        if len(token) <= longest:
            continue
        shown = token[:24].decode("ascii", "replace") + ("…" if len(token) > 24 else "")
        if not re.fullmatch(rb"[-+]?\d+", token):
            raise ValidationError(f"{name}: an OBJ face has a vertex index that is not an integer ({shown}); the "
                                  "file is corrupt.")
        if abs(int(token)) > vertex_count:  # Python ints: no overflow, however long the number
            raise ValidationError(f"{name}: an OBJ face refers to vertex {shown}, but the file defines only "
                                  f"{vertex_count:,} vertices; the file is corrupt. Export it again.")
    padded = any(len(token) > longest for token in tokens)  # in range, but written with leading zeros
    try:
        if padded:
            indices = np.array([int(token) for token in tokens], np.int64)
        else:
            indices = np.array(tokens, dtype=np.bytes_).astype(np.int64)
    except ValueError:
        raise ValidationError(f"{name}: an OBJ face has a vertex index that is not an integer; the file is "
                              "corrupt.") from None
    if len(indices) and int(indices.max()) > vertex_count:
        raise ValidationError(f"{name}: an OBJ face refers to vertex {int(indices.max()):,}, but the file defines "
                              f"only {vertex_count:,} vertices; the file is corrupt. Export it again.")
    return indices


def _finish(vertices: np.ndarray, faces: np.ndarray, name: str, max_triangles: int) -> Mesh:
    if len(faces) > max_triangles:
        raise _too_many(name, len(faces), max_triangles)
    if len(vertices):
        _check_coordinates(vertices, name)
    if len(faces) and len(vertices):
        # Only the vertices the faces use count (PLY/OBJ may carry stray points).
        _check_geometry(vertices, faces, name)
        used = vertices[np.unique(faces)]
        _check_extent(float((used.max(axis=0) - used.min(axis=0)).max()), name)
    else:
        _check_geometry(vertices, faces, name)
    return Mesh(vertices.astype(np.float32), faces.astype(np.int32))


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

CLINICAL_VIEWS: Final[tuple[str, ...]] = ("front", "left", "right", "upper", "lower")
"""front: incisors with both arches in occlusion; left/right: buccal views from the patient's left/
right; upper: occlusal view of the upper arch from below; lower: occlusal view of the lower arch
from above."""

ARCHES: Final[tuple[str, ...]] = ("upper", "lower")

#: Gradient background, top and bottom (RGB 0..1): a neutral blue-grey like planning software.
BACKGROUND_TOP: Final = (0.60, 0.66, 0.73)
BACKGROUND_BOTTOM: Final = (0.24, 0.28, 0.34)
#: Off-white, slightly warm enamel.
TOOTH_COLOR: Final = (0.94, 0.92, 0.86)
#: Translucent overlays (e.g. the first stage over a movement map): pale blue, mostly see-through.
GHOST_COLOR: Final = (0.62, 0.78, 0.95)
GHOST_OPACITY: Final = 0.28

_MAX_SIDE: Final = 7680
_MAX_INTERNAL_PIXELS: Final = 8192 * 8192  # GL renderbuffer limits of Mesa's llvmpipe


def _positive_int(label: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{label} must be an integer from {low} to {high}, got {value!r}.")
    return value


@dataclass(frozen=True)
class RenderSpec:
    """What to render per stage: output size in pixels, which clinical views (in this order) and the
    supersampling factor (1 = off; 2 renders at twice the size and averages 2×2 pixels)."""

    width: int = 1920
    height: int = 1080
    views: tuple[str, ...] = CLINICAL_VIEWS
    ssaa: int = 2

    def __post_init__(self) -> None:
        _positive_int("width", self.width, 16, _MAX_SIDE)
        _positive_int("height", self.height, 16, _MAX_SIDE)
        _positive_int("ssaa", self.ssaa, 1, 4)
        if self.width * self.height * self.ssaa**2 > _MAX_INTERNAL_PIXELS or max(self.width,
                                                                                 self.height) * self.ssaa > 16384:
            raise ValidationError(f"{self.width}×{self.height} with ssaa {self.ssaa} is too large to render; "
                                  "lower the size or the ssaa factor.")
        if not isinstance(self.views, tuple) or not self.views:
            raise ValidationError(f"views must be a non-empty tuple of {', '.join(CLINICAL_VIEWS)}.")
        unknown = [view for view in self.views if view not in CLINICAL_VIEWS]
        if unknown:
            raise ValidationError(f"Unknown view(s) {unknown}; choose from {', '.join(CLINICAL_VIEWS)}.")
        if len(set(self.views)) != len(self.views):
            raise ValidationError(f"views {self.views} lists a view twice.")


_PROBE_CODE: Final = """
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkRenderer, vtkWindowToImageFilter
import vtkmodules.vtkRenderingOpenGL2  # registers the OpenGL factories
window = vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(8, 8)
renderer = vtkRenderer()
renderer.SetBackground(1.0, 0.0, 0.0)
window.AddRenderer(renderer)
window.Render()
grab = vtkWindowToImageFilter()
grab.SetInput(window)
grab.Update()
assert grab.GetOutput().GetDimensions()[:2] == (8, 8)
print("ok", window.GetClassName())
"""

_MESA_HINT: Final = "3D rendering needs Mesa: apt-get install libegl1 libgl1-mesa-dri"


@functools.cache
def rendering_available() -> str | None:
    """None when offscreen 3D rendering works here, else a message naming what is missing.

    Checks the pip packages, then renders one tiny frame in a subprocess (a broken OpenGL stack
    can abort the process, which must not take the app down). Cached for the process lifetime.
    """
    for package in ("vtk", "pyvista"):
        if importlib.util.find_spec(package) is None:
            return f"pip package {package} is not installed: pip install vtk pyvista"
    if os.environ.get("VTK_DEFAULT_OPENGL_WINDOW") == "vtkEGLRenderWindow":
        import ctypes.util

        if ctypes.util.find_library("EGL") is None:
            return f"{_MESA_HINT} (libEGL was not found)"
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE_CODE], capture_output=True, text=True, timeout=120,
                                check=False, env={**os.environ})
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{_MESA_HINT} (the offscreen OpenGL test did not finish: {error})"
    if result.returncode != 0 or not result.stdout.startswith("ok"):
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return f"{_MESA_HINT} (the offscreen OpenGL test failed: {detail[:300]})"
    return None


@dataclass(frozen=True)
class _Frame:
    """An orthonormal anatomical frame fitted to the reference meshes: right (+X), anterior (+Y), up (+Z)."""

    right: np.ndarray
    anterior: np.ndarray
    up: np.ndarray

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        return points @ np.stack([self.right, self.anterior, self.up], axis=1)

    def world(self, local: np.ndarray) -> np.ndarray:
        return local[0] * self.right + local[1] * self.anterior + local[2] * self.up


def anatomical_axes(meshes: list[Mesh]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, anterior, up) unit vectors of the arches' own frame, as the clinical views use it."""
    frame = _fit_frame(meshes)
    return frame.right, frame.anterior, frame.up


def _fit_frame(meshes: list[Mesh]) -> _Frame:
    """Level the camera frame on the arches' occlusal plane.

    A single arch is a flat horseshoe: its principal axis of least spread is the occlusal normal.
    We only trust it when it is within ~35° of +Z (the export convention); otherwise the export
    uses another convention and the plain axes are used. Anterior stays +Y projected onto the
    occlusal plane: width and depth of an arch are too similar for PCA to tell them apart.
    """
    z_axis = np.array([0.0, 0.0, 1.0])
    normals = []
    for mesh in meshes:
        points = mesh.vertices.astype(np.float64)
        if len(points) > 50_000:  # a stride sample is plenty for a 3×3 covariance
            points = points[:: len(points) // 50_000 + 1]
        centred = points - points.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        normal = vectors[:, 0]
        normals.append(normal if normal @ z_axis >= 0 else -normal)
    up = np.mean(normals, axis=0)
    up = up / np.linalg.norm(up)
    if up @ z_axis < math.cos(math.radians(35)):
        up = z_axis
    anterior = np.array([0.0, 1.0, 0.0]) - up[1] * up
    anterior /= np.linalg.norm(anterior)
    right = np.cross(anterior, up)  # RAS is right-handed: right = anterior × up
    return _Frame(right, anterior, up)


@dataclass(frozen=True)
class _ViewSetup:
    arches: tuple[str, ...]  # which arches are visible
    position: np.ndarray
    focal_point: np.ndarray
    view_up: np.ndarray
    view_angle: float


# Mild perspective: enough depth cue for the buccal views without distorting the arch form.
_VIEW_ANGLE: Final = 14.0
# The model fills this share of the limiting image dimension on the reference stage, leaving room
# for the teeth to move in later stages without leaving the frame.
_FILL: Final = 0.84


def _view_setups(frame: _Frame, reference: dict[str, Mesh], aspect: float) -> dict[str, _ViewSetup]:
    local = {arch: frame.coordinates(mesh.vertices.astype(np.float64)) for arch, mesh in reference.items()}

    def box(arches: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        present = [local[a] for a in arches if a in local] or list(local.values())
        low = np.min([points.min(axis=0) for points in present], axis=0)
        high = np.max([points.max(axis=0) for points in present], axis=0)
        return (low + high) / 2, (high - low) / 2

    # (visible arches, direction from the model to the camera, view-up, screen-right axis index,
    # screen-up axis index, depth axis index) in the local frame (0 right, 1 anterior, 2 up).
    layout: dict[str, tuple[tuple[str, ...], tuple[float, float, float], tuple[float, float, float], int, int, int]] = {
        "front": (ARCHES, (0, 1, 0), (0, 0, 1), 0, 2, 1),
        "left": (ARCHES, (-1, 0, 0), (0, 0, 1), 1, 2, 0),
        "right": (ARCHES, (1, 0, 0), (0, 0, 1), 1, 2, 0),
        # Occlusal views as in clinical photographs: upper with the incisors at the top, lower
        # with the incisors at the bottom; in both the patient's right is on the viewer's left.
        "upper": (("upper",), (0, 0, -1), (0, 1, 0), 0, 1, 2),
        "lower": (("lower",), (0, 0, 1), (0, -1, 0), 0, 1, 2),
    }
    tan_half = math.tan(math.radians(_VIEW_ANGLE / 2))
    setups: dict[str, _ViewSetup] = {}
    for view, (arches, towards_camera, view_up, across, vertical, depth) in layout.items():
        centre, half = box(arches)
        # The near face of the box is closest to the camera, so fit it there (conservative).
        needed = max(half[vertical], half[across] / aspect) / (_FILL * tan_half)
        distance = needed + half[depth]
        focal = frame.world(centre)
        direction = frame.world(np.array(towards_camera, dtype=np.float64))
        setups[view] = _ViewSetup(arches, focal + distance * direction, focal,
                                  frame.world(np.array(view_up, dtype=np.float64)), _VIEW_ANGLE)
    return setups


def _import_pyvista() -> Any:
    problem = rendering_available()
    if problem is not None:
        raise ConfigurationError(problem)
    import pyvista

    pyvista.OFF_SCREEN = True
    return pyvista


class StageRenderer:
    """Offscreen renderer of the clinical views of one treatment, stage after stage.

    Build it once per import with the first stage's meshes (``reference``: ``{"upper": Mesh,
    "lower": Mesh}``, either key may be missing): the camera of every view is fixed from them, so
    a video of the stages does not jump. Then call :meth:`render` per stage; it updates the mesh
    geometry in place in one reused offscreen plotter. Use as a context manager (or call
    :meth:`close`) to free the OpenGL context.

    Raises ConfigurationError when offscreen rendering is unavailable (see
    :func:`rendering_available`) and ValidationError for bad arguments.
    """

    def __init__(self, spec: RenderSpec, reference: dict[str, Mesh]) -> None:
        if not isinstance(spec, RenderSpec):
            raise ValidationError(f"spec must be a RenderSpec, got {type(spec).__name__}.")
        _check_arches(reference, "reference")
        if not reference:
            raise ValidationError("The reference stage has no arch: give at least an upper or a lower mesh.")
        self.spec = spec
        self._pv = _import_pyvista()
        frame = _fit_frame(list(reference.values()))
        self._setups = _view_setups(frame, reference, spec.width / spec.height)
        self._plotter: Any = None
        self._normals: Any = None
        # Actors by slot: "upper"/"lower", and "ghost-upper"/"ghost-lower" for translucent overlays.
        self._polys: dict[str, Any] = {}
        self._actors: dict[str, Any] = {}
        self._shown: dict[str, tuple[Mesh, int] | None] = {}  # what each slot holds (mesh, id of its colours)
        try:
            self._build_scene()
            self._update(reference)
        except BaseException:
            self.close()  # never leak an OpenGL context from a half-built renderer
            raise

    # -- scene ---------------------------------------------------------------------------------

    def _build_scene(self) -> None:
        pv = self._pv
        from vtkmodules.vtkFiltersCore import vtkPolyDataNormals

        # Smooth vertex normals, split at creases sharper than 60° (the flat cut base of a model
        # must not be shaded as if rounded). Exports are consistently wound, so skip the costly
        # consistency pass; points are only appended where split, faces keep their order.
        normals = vtkPolyDataNormals()
        normals.SetFeatureAngle(60.0)
        normals.SplittingOn()
        normals.ConsistencyOff()
        normals.AutoOrientNormalsOff()
        normals.ComputeCellNormalsOff()
        self._normals = normals
        factor = self.spec.ssaa
        plotter = pv.Plotter(off_screen=True, window_size=(self.spec.width * factor, self.spec.height * factor),
                             lighting="none")
        self._plotter = plotter
        # PyVista defaults to 8× MSAA, which is costly on a CPU rasteriser; we supersample instead.
        plotter.render_window.SetMultiSamples(0)
        # We place the camera ourselves per view; without this PyVista resets it to its default
        # isometric position on the first render.
        plotter.renderer.camera_set = True
        plotter.set_background(BACKGROUND_BOTTOM, top=BACKGROUND_TOP)
        # Camera-attached key + fill + rim lights: every view is lit the same way, like a studio
        # setup moving with the camera (positions are in camera coordinates, +Z towards the viewer).
        # A warm key and a cool fill read as "studio" and model the crowns' curvature.
        for position, intensity, color in (((0.45, 0.75, 1.0), 0.72, (1.0, 0.98, 0.95)),  # key: upper right
                                           ((-0.8, -0.1, 0.7), 0.34, (0.88, 0.93, 1.0)),  # fill: left, softer
                                           ((0.0, -0.6, 1.0), 0.16, (1.0, 1.0, 1.0)),  # low fill: lifts shadows
                                           ((0.0, 1.0, -0.6), 0.18, (1.0, 1.0, 1.0))):  # rim: separates edges
            light = pv.Light(position=position, focal_point=(0, 0, 0), intensity=intensity, light_type="camera light",
                             color=color)
            light.positional = False
            plotter.add_light(light)

    def _actor_for(self, slot: str) -> Any:
        if slot in self._actors:
            return self._actors[slot]
        pv = self._pv
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        poly = pv.PolyData()
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(poly)
        mapper.ScalarVisibilityOff()
        mapper.SetScalarModeToUsePointFieldData()
        mapper.SelectColorArray("rgb")
        mapper.SetColorModeToDirectScalars()  # per-vertex RGB (movement maps) used as they are
        actor = vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetInterpolationToPhong()  # per-pixel lighting with the smooth normals
        if slot.startswith("ghost-"):
            prop.SetColor(*GHOST_COLOR)
            prop.SetOpacity(GHOST_OPACITY)
            prop.SetAmbient(0.3)
            prop.SetDiffuse(0.7)
            prop.SetSpecular(0.0)
        else:
            prop.SetColor(*TOOTH_COLOR)
            prop.SetAmbient(0.24)
            prop.SetDiffuse(0.78)
            prop.SetSpecular(0.28)
            prop.SetSpecularPower(38.0)
            prop.SetSpecularColor(1.0, 1.0, 1.0)
        self._plotter.renderer.AddActor(actor)
        self._polys[slot] = poly
        self._actors[slot] = actor
        self._shown[slot] = None
        return actor

    def _update(self, meshes: dict[str, Mesh], colors: dict[str, np.ndarray] | None = None,
                ghosts: dict[str, Mesh] | None = None) -> None:
        slots: dict[str, tuple[Mesh | None, np.ndarray | None]] = {}
        for arch in ARCHES:
            slots[arch] = (meshes.get(arch), (colors or {}).get(arch))
            slots[f"ghost-{arch}"] = ((ghosts or {}).get(arch), None)
        pv = self._pv
        for slot, (mesh, rgb) in slots.items():
            if mesh is None:
                if slot in self._actors:
                    self._actors[slot].SetVisibility(False)
                    self._shown[slot] = None
                continue
            actor = self._actor_for(slot)
            shown = self._shown.get(slot)
            if shown is not None and shown[0] is mesh and shown[1] == id(rgb):  # unchanged between stages
                continue
            # Replace the geometry of the existing vtkPolyData in place: actor, mapper and
            # material stay, only the buffers are re-uploaded.
            poly = pv.PolyData.from_regular_faces(mesh.vertices, mesh.faces)
            if rgb is not None:
                poly.point_data["rgb"] = rgb  # the normals filter carries it to split vertices
            normals = self._normals
            normals.SetInputData(poly)
            normals.Update()
            self._polys[slot].ShallowCopy(normals.GetOutput())
            self._polys[slot].Modified()
            actor.GetMapper().SetScalarVisibility(rgb is not None)
            self._shown[slot] = (mesh, id(rgb))

    # -- public --------------------------------------------------------------------------------

    def render(self, meshes: dict[str, Mesh], *, colors: dict[str, np.ndarray] | None = None,
               ghosts: dict[str, Mesh] | None = None) -> dict[str, np.ndarray]:
        """Render one stage: an RGB uint8 (height, width, 3) image per view of the spec, in its order.

        `meshes` has the stage's "upper" and/or "lower" Mesh; a missing arch is not drawn (and an
        arch missing from the reference is drawn with the reference's framing). Passing the same
        Mesh object as in the previous call skips its re-upload. `colors` optionally gives an arch
        per-vertex uint8 RGB (n, 3) instead of the enamel colour (movement maps); `ghosts` are
        meshes drawn translucent over the stage (e.g. the first stage, to show what moved).
        """
        if self._plotter is None:
            raise ValidationError("This StageRenderer is closed; create a new one.")
        _check_arches(meshes, "meshes")
        _check_arches(ghosts or {}, "ghosts")
        for arch, rgb in (colors or {}).items():
            mesh = meshes.get(arch)
            if mesh is None or not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 \
                    or rgb.shape != (mesh.vertex_count, 3):
                raise ValidationError(f"colors[{arch!r}] must be uint8 RGB with one row per vertex of that arch.")
        self._update(meshes, colors, ghosts)
        import cv2

        plotter = self._plotter
        # Translucent ghosts need depth peeling to blend in the right order; it costs time, so only then.
        plotter.renderer.SetUseDepthPeeling(bool(ghosts))
        camera = plotter.renderer.GetActiveCamera()
        images: dict[str, np.ndarray] = {}
        for view in self.spec.views:
            setup = self._setups[view]
            for slot, actor in self._actors.items():
                actor.SetVisibility(slot.removeprefix("ghost-") in setup.arches and self._shown.get(slot) is not None)
            camera.SetPosition(*setup.position)
            camera.SetFocalPoint(*setup.focal_point)
            camera.SetViewUp(*setup.view_up)
            camera.SetViewAngle(setup.view_angle)
            plotter.renderer.ResetCameraClippingRange()
            plotter.render()
            image = np.asarray(plotter.screenshot(return_img=True))[:, :, :3]
            if self.spec.ssaa > 1:
                # INTER_AREA over an integer factor is the box filter: plain supersampling.
                image = cv2.resize(image, (self.spec.width, self.spec.height), interpolation=cv2.INTER_AREA)
            images[view] = np.ascontiguousarray(image, dtype=np.uint8)
        return images

    def close(self) -> None:
        """Free the offscreen OpenGL context (idempotent)."""
        if self._plotter is not None:
            with contextlib.suppress(Exception):  # closing must never mask the caller's error
                self._plotter.close()
            self._plotter = None
            self._polys.clear()
            self._actors.clear()

    def __enter__(self) -> StageRenderer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _check_arches(meshes: object, label: str) -> None:
    if not isinstance(meshes, dict):
        raise ValidationError(f"{label} must be a dict of 'upper'/'lower' to Mesh, got {type(meshes).__name__}.")
    unknown = [key for key in meshes if key not in ARCHES]
    if unknown:
        raise ValidationError(f"{label} has unknown arch key(s) {unknown}; use 'upper' and/or 'lower'.")
    for key, value in meshes.items():
        if not isinstance(value, Mesh):
            raise ValidationError(f"{label}[{key!r}] must be a Mesh, got {type(value).__name__}.")
