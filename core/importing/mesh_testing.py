"""Synthetic staged dental arches and mesh writers, for tests, benchmarks and demos of 3D import.

:func:`make_arch_mesh` builds one arch of a procedural aligner treatment: 14 crowns (tapered
superellipsoids sized by tooth type, with incisal edges, canine tips and premolar/molar fissures)
along a parabolic arch on a gingiva band (a swept, scalloped tube with closed ends). Each tooth is
displaced from its final position by a seeded malocclusion that shrinks to zero at the final
stage; the gingiva never moves. Coordinates follow the convention documented in
:mod:`core.importing.meshes`: millimetres, +X patient's right, +Y anterior, +Z superior, the arches
in occlusion around z = 0.

The writers (:func:`write_stl`, :func:`write_stl_ascii`, :func:`write_ply_ascii`,
:func:`write_ply_binary`, :func:`write_obj`) produce files as the aligner software would export
them, for round-trip tests of :func:`core.importing.meshes.load_mesh`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from core.errors import ValidationError
from core.importing.meshes import Mesh

__all__ = ["make_arch_mesh", "write_obj", "write_ply_ascii", "write_ply_binary", "write_stl", "write_stl_ascii"]


@dataclass(frozen=True)
class _ToothType:
    kind: Literal["incisor", "canine", "premolar", "molar"]
    mesiodistal: float  # crown width along the arch, mm
    buccolingual: float  # crown depth across the arch, mm
    crown_height: float  # visible crown, mm


# Quadrant order from the midline: central, lateral, canine, two premolars, two molars
# (typical adult crown dimensions).
_UPPER: Final = (
    _ToothType("incisor", 8.6, 7.0, 10.5), _ToothType("incisor", 6.6, 6.2, 9.0),
    _ToothType("canine", 7.6, 8.0, 10.0), _ToothType("premolar", 7.0, 9.0, 8.2),
    _ToothType("premolar", 6.6, 9.0, 7.6), _ToothType("molar", 10.2, 11.0, 7.2),
    _ToothType("molar", 9.2, 10.6, 6.6),
)
_LOWER: Final = (
    _ToothType("incisor", 5.3, 5.8, 9.0), _ToothType("incisor", 5.8, 6.2, 9.4),
    _ToothType("canine", 6.8, 7.6, 10.2), _ToothType("premolar", 7.0, 7.8, 8.2),
    _ToothType("premolar", 7.2, 8.2, 7.6), _ToothType("molar", 11.0, 10.4, 7.2),
    _ToothType("molar", 10.4, 10.0, 6.6),
)
# Arch form y = y0 - k x² (lower-arch coordinates); the lower arch is narrower and sits behind
# the upper one (overjet), its incisal edges a little above the upper ones' (overbite).
_ARCH_FORM: Final = {"upper": (0.0, 0.040), "lower": (-2.6, 0.047)}
_TEETH_SHARE: Final = 0.74  # of the triangle budget; the rest is gingiva
_ROOT_DEPTH: Final = 3.0  # how far each crown shape reaches into the gingiva, mm


def make_arch_mesh(arch: str, stage: int, stage_count: int, *, seed: int = 1, triangles: int = 150_000) -> Mesh:
    """One arch ("upper" or "lower") at `stage` (0 = initial … `stage_count` - 1 = final) of a
    synthetic treatment with about `triangles` triangles.

    The malocclusion comes from `seed` (the same for every stage) and eases out smoothly; the
    final stage is the aligned arch. Deterministic for equal arguments.
    """
    if arch not in ("upper", "lower"):
        raise ValidationError(f"arch must be 'upper' or 'lower', got {arch!r}.")
    for label, value, low in (("stage_count", stage_count, 1), ("triangles", triangles, 2_000)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValidationError(f"{label} must be an integer ≥ {low}, got {value!r}.")
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < stage_count:
        raise ValidationError(f"stage must be an integer from 0 to {stage_count - 1}, got {stage!r}.")
    remaining = 0.0 if stage_count == 1 else 1.0 - stage / (stage_count - 1)
    remaining = remaining * remaining * (3 - 2 * remaining)  # smoothstep: gentle start and finish

    types = _UPPER if arch == "upper" else _LOWER
    y0, k = _ARCH_FORM[arch]
    curve = _ArchCurve(y0, k)
    # Teeth touch at their contact points: centres at the cumulative widths along the arc.
    widths = np.array([t.mesiodistal for t in types]) * 0.97
    contacts = np.concatenate(([0.0], np.cumsum(widths)))
    centres_s = (contacts[:-1] + contacts[1:]) / 2
    rng = np.random.default_rng([seed, 0 if arch == "upper" else 1])

    budget = triangles * _TEETH_SHARE
    areas = np.array([t.mesiodistal * t.buccolingual + (t.mesiodistal + t.buccolingual) * t.crown_height
                      for t in types])
    shells: list[tuple[np.ndarray, np.ndarray]] = []
    for side in (1.0, -1.0):  # patient's right (+x), then left
        for index, tooth in enumerate(types):
            offsets = _malocclusion(rng, tooth) * remaining
            tooth_triangles = budget * areas[index] / (2 * areas.sum())
            shells.append(_tooth(curve, tooth, offsets, s=side * centres_s[index], side=side,
                                 triangles=tooth_triangles, arch=arch))
    gum_length = float(contacts[-1]) + 1.5
    shells.append(_gingiva(curve, gum_length, types, contacts, triangles * (1 - _TEETH_SHARE)))

    vertices, faces = _concatenate(shells)
    if arch == "upper":
        # Built with crowns pointing up like the lower arch; mirror so they point down (a mirror
        # turns the faces inside out, so flip their winding too).
        vertices[:, 2] *= -1
        faces = faces[:, ::-1]
    return Mesh(vertices.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int32))


class _ArchCurve:
    """The parabola y = y0 - k x², addressed by signed arc length s from the midline (+s: +x side)."""

    def __init__(self, y0: float, k: float) -> None:
        self.y0, self.k = y0, k
        x = np.linspace(0.0, 60.0, 6001)
        a = 2 * k
        self._x = x
        self._s = (a * x * np.sqrt(1 + (a * x) ** 2) + np.arcsinh(a * x)) / (2 * a)

    def point(self, s: np.ndarray) -> np.ndarray:
        x = np.sign(s) * np.interp(np.abs(s), self._s, self._x)
        return np.stack([x, self.y0 - self.k * x**2, np.zeros_like(x)], axis=-1)

    def frame(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unit tangent towards +x, unit outward (buccal/labial) normal) at arc length s."""
        x = np.sign(s) * np.interp(np.abs(s), self._s, self._x)
        slope = -2 * self.k * x
        norm = np.sqrt(1 + slope**2)
        tangent = np.stack([1 / norm, slope / norm, np.zeros_like(x)], axis=-1)
        normal = np.stack([-slope / norm, 1 / norm, np.zeros_like(x)], axis=-1)
        return tangent, normal


def _malocclusion(rng: np.random.Generator, tooth: _ToothType) -> np.ndarray:
    """(buccal shift, mesial shift, extrusion mm, rotation, tip, torque degrees) of one tooth."""
    rotation_scale = {"incisor": 16.0, "canine": 14.0, "premolar": 12.0, "molar": 5.0}[tooth.kind]
    shift_scale = {"incisor": 1.3, "canine": 1.2, "premolar": 0.8, "molar": 0.4}[tooth.kind]
    draw = rng.standard_normal(6).clip(-2.2, 2.2)
    return draw * np.array([shift_scale, 0.35, 0.5, rotation_scale, 4.0, 4.0])


def _sphere_grid(rings: int, around: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colatitude, longitude and outward-wound faces of a UV sphere with one vertex per pole.

    Vertex order: north pole, `rings` rings of `around` vertices (north to south), south pole;
    2 × around × rings triangles.
    """
    theta = np.repeat(np.linspace(0, math.pi, rings + 2)[1:-1], around)
    phi = np.tile(np.linspace(-math.pi, math.pi, around, endpoint=False), rings)
    theta = np.concatenate(([0.0], theta, [math.pi]))
    phi = np.concatenate(([0.0], phi, [0.0]))
    south = rings * around + 1
    j = np.arange(around)
    jn = (j + 1) % around
    faces = [np.stack([np.zeros(around, np.int64), 1 + j, 1 + jn], axis=1)]
    for ring in range(rings - 1):
        a, b = 1 + ring * around, 1 + (ring + 1) * around
        faces.append(np.stack([a + j, b + j, b + jn], axis=1))
        faces.append(np.stack([a + j, b + jn, a + jn], axis=1))
    last = 1 + (rings - 1) * around
    faces.append(np.stack([np.full(around, south), last + jn, last + j], axis=1))
    return theta, phi, np.concatenate(faces)


def _signed_power(value: np.ndarray, exponent: float) -> np.ndarray:
    return np.sign(value) * np.abs(value) ** exponent


def _grid_size(triangles: float, aspect: float) -> tuple[int, int]:
    """rings, around for a sphere grid of about `triangles` triangles with around ≈ aspect × rings."""
    rings = max(4, round(math.sqrt(triangles / (2 * aspect))))
    return rings, max(8, round(triangles / (2 * rings)))


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    angle = math.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _tooth(curve: _ArchCurve, tooth: _ToothType, offsets: np.ndarray, *, s: float, side: float, triangles: float,
           arch: str) -> tuple[np.ndarray, np.ndarray]:
    rings, around = _grid_size(triangles, 2.0)
    theta, phi, faces = _sphere_grid(rings, around)
    half_t, half_n = tooth.mesiodistal / 2, tooth.buccolingual / 2
    horizontal_exp = {"incisor": 0.75, "canine": 0.8, "premolar": 0.6, "molar": 0.5}[tooth.kind]
    # Crowns bulge at 40 % of their height (the contact area) and narrow towards the cervix.
    bulge = 0.4 * tooth.crown_height
    top, bottom = tooth.crown_height - bulge, bulge + _ROOT_DEPTH
    up = _signed_power(np.cos(theta), 0.6)
    ring = _signed_power(np.sin(theta), 0.6)
    t = half_t * ring * _signed_power(np.cos(phi), horizontal_exp)
    n = half_n * ring * _signed_power(np.sin(phi), horizontal_exp)
    z = np.where(up >= 0, up * top, up * bottom)
    height = np.clip(up, 0, 1)  # 0 at the bulge … 1 at the occlusal tip
    below = np.clip(-up, 0, 1)
    root_taper = 1 - 0.45 * below
    t *= root_taper
    n *= root_taper
    if tooth.kind == "incisor":  # labio-lingually thin incisal edge, straight across
        n *= 1 - 0.78 * height**1.3
        z = np.where(up > 0, top * np.clip(up * 1.2, 0, 1) ** 0.6, z)
    elif tooth.kind == "canine":  # one pointed cusp
        n *= 1 - 0.4 * height**1.5
        t *= 1 - 0.25 * height**2
        z += 1.6 * height**3 * np.exp(-((t / half_t) ** 2) * 3)
    else:  # occlusal table with cusps around a central fissure (and a cross fissure in molars)
        table = height**4
        groove = np.exp(-((n / (0.22 * half_n)) ** 2))
        if tooth.kind == "molar":
            groove = np.maximum(groove, np.exp(-((t / (0.16 * half_t)) ** 2)))
        z -= (1.3 if tooth.kind == "molar" else 1.0) * table * groove
    # Curve of Spee / occlusal plane: incisors sit a little higher than the posteriors in the lower
    # arch; the upper incisors overlap the lower ones (built upside down, mirrored later).
    tip_height = {"upper": {"incisor": 1.8, "canine": 1.0, "premolar": 0.15, "molar": 0.15},
                  "lower": {"incisor": 0.6, "canine": 0.4, "premolar": 0.0, "molar": 0.0}}[arch][tooth.kind]
    # Anterior crowns incline labially (torque), posterior ones slightly lingually.
    torque = {"incisor": 12.0, "canine": 6.0, "premolar": -3.0, "molar": -7.0}[tooth.kind]
    buccal_shift, mesial_shift, extrusion, rotation, tip, torque_error = offsets
    local = np.stack([t, n, z], axis=1)
    rotate = (_rotation(np.array([0.0, 0.0, 1.0]), rotation)
              @ _rotation(np.array([0.0, 1.0, 0.0]), tip * side)
              @ _rotation(np.array([1.0, 0.0, 0.0]), torque + torque_error))
    local = local @ rotate.T
    centre_s = s + side * mesial_shift
    tangent, normal = curve.frame(np.array([centre_s]))
    centre = curve.point(np.array([centre_s]))[0] + buccal_shift * normal[0]
    centre[2] = tip_height + extrusion - top
    world = centre + local[:, :1] * tangent[0] + local[:, 1:2] * normal[0] + local[:, 2:3] * np.array([0, 0, 1.0])
    return world, faces


def _gingiva(curve: _ArchCurve, half_length: float, types: tuple[_ToothType, ...], contacts: np.ndarray,
             triangles: float) -> tuple[np.ndarray, np.ndarray]:
    """The gingiva and alveolar base: a rounded band swept along the arch from one end to the other,
    scalloped along its top (papillae between teeth), closed by shrinking to a point at both ends."""
    rings, around = _grid_size(triangles, 0.22)
    theta, phi, faces = _sphere_grid(rings, around)
    s = (theta / math.pi * 2 - 1) * half_length  # north pole at the far -x end
    abs_s = np.abs(s)
    # Width follows the teeth; height under the cervical line.
    tooth_centres = (contacts[:-1] + contacts[1:]) / 2
    half_width = _smooth_profile(abs_s, tooth_centres, [t.buccolingual / 2 + 1.8 for t in types], half_length)
    crown = _smooth_profile(abs_s, tooth_centres, [t.crown_height for t in types], half_length)
    gum_line = _smooth_profile(abs_s, tooth_centres, [{"incisor": 0.6, "canine": 0.4}.get(t.kind, 0.0)
                                                      for t in types], half_length)
    gum_line = gum_line - crown + 1.4  # the gingiva covers the cervical 1.4 mm of each crown
    papilla = 1.8 * np.exp(-((abs_s[:, None] - contacts[None, 1:-1]) / 1.1) ** 2).max(axis=1)
    papilla += 1.8 * np.exp(-((abs_s / 1.1) ** 2))  # between the central incisors
    depth = 9.0
    end_distance = half_length - abs_s
    close = np.sqrt(np.clip(end_distance / 3.0, 0, 1) * (2 - np.clip(end_distance / 3.0, 0, 1)))
    # Rounded like gingiva on top, a flatter, boxier model base below.
    exponent = np.where(np.sin(phi) > 0, 0.8, 0.4)
    across = half_width * _signed_power(np.cos(phi), exponent) * close
    vertical = _signed_power(np.sin(phi), exponent)  # -1 bottom … 1 top
    mid = gum_line - 3.0
    top_extent = gum_line + papilla * np.clip(vertical, 0, 1) ** 4 - mid
    z = mid + close * np.where(vertical > 0, vertical * top_extent, vertical * (depth - 3.0))
    _, normal = curve.frame(s)
    world = curve.point(s) + across[:, None] * normal
    world[:, 2] = z
    # The sweep's handedness depends on the arch direction: orient the faces outwards by volume.
    if _signed_volume(world, faces) < 0:
        faces = faces[:, ::-1]
    return world, faces


def _smooth_profile(at: np.ndarray, knots: np.ndarray, values: list[float], length: float) -> np.ndarray:
    """Per-tooth values interpolated along the arch and Gaussian-smoothed (σ = 2.5 mm): a piecewise
    linear profile would crease the gingiva's surface at every tooth centre."""
    grid = np.linspace(-10.0, length + 10.0, 1201)
    step = grid[1] - grid[0]
    dense = np.interp(grid, knots, values)
    offsets = np.arange(-40, 41) * step
    kernel = np.exp(-0.5 * (offsets / 2.5) ** 2)
    smoothed = np.convolve(np.pad(dense, 40, mode="edge"), kernel / kernel.sum(), mode="valid")
    return np.interp(at, grid, smoothed)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    centred = vertices - vertices.mean(axis=0)
    a, b, c = centred[faces[:, 0]], centred[faces[:, 1]], centred[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def _concatenate(shells: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(v) for v, _ in shells[:-1]])
    vertices = np.concatenate([v for v, _ in shells])
    faces = np.concatenate([f + offset for (_, f), offset in zip(shells, offsets, strict=True)])
    return vertices, faces


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------


def _face_normals(mesh: Mesh) -> np.ndarray:
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.where(length > 0, length, 1.0)).astype(np.float32)


def write_stl(mesh: Mesh, *, header: bytes = b"core.importing.mesh_testing binary STL") -> bytes:
    """Binary STL (80-byte header, uint32 count, 50 bytes per triangle), vertices repeated per
    triangle as every exporter writes them."""
    if len(header) > 80:
        raise ValidationError("A binary STL header has at most 80 bytes.")
    records = np.zeros(mesh.triangle_count, dtype=[("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    records["normal"] = _face_normals(mesh)
    records["v"] = mesh.vertices[mesh.faces]
    return header.ljust(80, b"\0") + np.uint32(mesh.triangle_count).tobytes() + records.tobytes()


def write_stl_ascii(mesh: Mesh, *, solid: str = "arch") -> bytes:
    """ASCII STL ("solid … facet normal … outer loop … vertex … endsolid")."""
    lines = [f"solid {solid}"]
    corners = mesh.vertices[mesh.faces]
    for normal, triangle in zip(_face_normals(mesh), corners, strict=True):
        lines.append(f"  facet normal {normal[0]:.6e} {normal[1]:.6e} {normal[2]:.6e}")
        lines.append("    outer loop")
        lines.extend(f"      vertex {x:.9g} {y:.9g} {z:.9g}" for x, y, z in triangle)
        lines.append("    endloop")
        lines.append("  endfacet")
    lines.append(f"endsolid {solid}")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply_ascii(mesh: Mesh) -> bytes:
    """ASCII PLY with float x/y/z vertices and ``uchar int vertex_indices`` triangle faces."""
    header = ("ply\nformat ascii 1.0\ncomment core.importing.mesh_testing\n"
              f"element vertex {mesh.vertex_count}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {mesh.triangle_count}\nproperty list uchar int vertex_indices\nend_header\n")
    vertex_lines = "\n".join(f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices.tolist())
    face_lines = "\n".join(f"3 {a} {b} {c}" for a, b, c in mesh.faces.tolist())
    return (header + vertex_lines + "\n" + face_lines + "\n").encode("ascii")


def write_ply_binary(mesh: Mesh, *, double: bool = False) -> bytes:
    """binary_little_endian PLY: float (or double) x/y/z, ``uchar int vertex_indices`` faces."""
    kind = "double" if double else "float"
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {mesh.vertex_count}\nproperty {kind} x\nproperty {kind} y\nproperty {kind} z\n"
              f"element face {mesh.triangle_count}\nproperty list uchar int vertex_indices\nend_header\n")
    vertices = mesh.vertices.astype("<f8" if double else "<f4")
    faces = np.zeros(mesh.triangle_count, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    faces["n"] = 3
    faces["i"] = mesh.faces
    return header.encode("ascii") + vertices.tobytes() + faces.tobytes()


def write_obj(mesh: Mesh, *, face_style: Literal["v", "v/vt", "v/vt/vn", "v//vn"] = "v") -> bytes:
    """Wavefront OBJ: ``v x y z`` lines then ``f`` lines in the given index style (1-based); the
    vt/vn indices written simply repeat the vertex index (one dummy vt/vn per vertex)."""
    lines = ["# core.importing.mesh_testing", "o arch"]
    lines.extend(f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices.tolist())
    if "vt" in face_style:
        lines.extend("vt 0 0" for _ in range(mesh.vertex_count))
    if "vn" in face_style:
        lines.extend("vn 0 0 1" for _ in range(mesh.vertex_count))
    template = {"v": "{0}", "v/vt": "{0}/{0}", "v/vt/vn": "{0}/{0}/{0}", "v//vn": "{0}//{0}"}[face_style]
    for face in (mesh.faces + 1).tolist():
        lines.append("f " + " ".join(template.format(index) for index in face))
    return ("\n".join(lines) + "\n").encode("ascii")
