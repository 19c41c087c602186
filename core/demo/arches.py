"""Procedural dental-arch renders for the demo: treatment-planning models and clinical photos.

Nothing is downloaded: every image is ray-cast in vectorised numpy (plus OpenCV filters) from
analytic shapes.

* Each of the 28 teeth (central and lateral incisors, canine, two premolars and two molars per
  quadrant) is a tapered superellipsoid crown - flat and thin-edged for incisors, pointed for
  canines - plus low ellipsoid cusps on premolars and molars, sized by tooth type and placed
  along an arch curve with clinical torque, tip, overbite and overjet.
* The gingiva is a union of ellipsoids: an alveolar band along the arch and a collar at each
  crown's neck (cast at reduced resolution, normals blended into one soft surface) and an
  interdental papilla between neighbouring teeth.
* A malocclusion is drawn per case from its seed (labial/lingual displacement, rotation about
  the long axis, tipping, torque, extrusion/intrusion, a constricted arch so the anterior crowns
  overlap, a blocked-out canine, a midline shift); stage ``s`` of ``n`` keeps
  ``crowding * ease(1 - s / (n - 1))`` of it, so the last stage is the clean, symmetric arch.
* Orthographic rays with a per-object weak perspective; ray/superellipsoid hits by Newton steps
  from the bounding ellipsoid; nearest-first drawing with early depth rejection; Lambert +
  wrapped fill + Blinn-Phong shading, screen-space ambient occlusion from the depth buffer;
  crowns supersampled (2x for small frames, 1.6x at 720p, 1.5x above) and reduced with
  ``INTER_AREA`` before shading.
* Photos reuse the renderer with a warm, wet-enamel style and add 2D framing: lips and skin for
  the smile, stretched lips and cheek retractors for intraoral views, palate or tongue for the
  occlusal mirror views, then camera softness, vignette and sensor noise.

Public API: :data:`VIEWS`, :class:`ArchCase`, :func:`render_stage`, :data:`PHOTO_KINDS`,
:func:`render_photo`. Output is deterministic for equal inputs. Rendering keeps one reusable
scratch workspace (about 36 bytes per supersampled pixel, ~85 MB at 720p) between calls.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["PHOTO_KINDS", "VIEWS", "ArchCase", "render_photo", "render_stage"]

VIEWS: tuple[str, ...] = ("front", "left", "right", "upper", "lower")
"""Clinical views: frontal, left buccal, right buccal, upper occlusal, lower occlusal."""

PHOTO_KINDS: tuple[str, ...] = (
    "smile", "intraoral_front", "intraoral_left", "intraoral_right", "intraoral_upper", "intraoral_lower",
)
"""Clinical photo kinds rendered by :func:`render_photo`."""

_MIN_SIDE = 64
_MAX_SIDE = 7680
_MAX_INTERNAL_PIXELS = 12_000_000  # supersampling budget (memory and time)
_MAX_RENDER_PIXELS = 3840 * 2160   # larger outputs are rendered at this size and upscaled


@dataclass(frozen=True)
class ArchCase:
    """One synthetic patient.

    ``seed`` drives the malocclusion; ``crowding`` scales it (0 = already aligned, 1 = typical
    moderate crowding, up to 2 = severe); ``shade`` tints the enamel from bright white (0) to a
    warmer ivory (1).
    """

    seed: int
    crowding: float = 1.0
    shade: float = 0.4

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        for name, value in (("crowding", self.crowding), ("shade", self.shade)):
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= float(self.crowding) <= 2.0:
            raise ValueError(f"crowding must be within 0..2, got {self.crowding!r}")
        if not 0.0 <= float(self.shade) <= 1.0:
            raise ValueError(f"shade must be within 0..1, got {self.shade!r}")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"size must be a (width, height) pair, got {size!r}") from None
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"size {name} must be an int, got {value!r}")
        if not _MIN_SIDE <= int(value) <= _MAX_SIDE:
            raise ValueError(f"size {name} must be within {_MIN_SIDE}..{_MAX_SIDE}, got {value}")
    return int(width), int(height)


def _check_case(case: ArchCase) -> None:
    if not isinstance(case, ArchCase):
        raise ValueError(f"case must be an ArchCase, got {type(case).__name__}")


# --------------------------------------------------------------------------------------------
# Anatomy: tooth sizes, arch form, clinical inclinations
# --------------------------------------------------------------------------------------------
# Tooth kinds per quadrant: 0 central, 1 lateral, 2 canine, 3 first premolar, 4 second premolar,
# 5 first molar, 6 second molar. Columns: mesio-distal width, bucco-lingual thickness, crown height
# (mm). Arch 0 = upper (maxillary), 1 = lower (mandibular).
_DIMS = np.array([
    [[8.6, 7.0, 10.6], [6.6, 6.0, 9.0], [7.6, 8.0, 10.2], [7.0, 9.0, 8.4], [6.6, 9.0, 7.8],
     [10.2, 11.0, 7.2], [9.2, 10.6, 6.8]],
    [[5.3, 5.8, 9.0], [5.9, 6.1, 9.4], [6.9, 7.6, 10.6], [7.0, 7.6, 8.4], [7.2, 8.0, 7.9],
     [11.2, 10.4, 7.5], [10.6, 10.0, 7.0]],
])
# Occlusal level of the crown tip (world z, mm; upper crowns point down): overbite and cusp overlap.
_TIP_Z = np.array([[-1.3, -0.9, -1.0, -0.45, -0.4, -0.35, -0.2],
                   [1.5, 1.5, 1.6, 0.95, 0.8, 0.75, 0.95]])
# Long-axis inclination: crown toward buccal (deg) and crown toward mesial (deg).
_TORQUE = np.array([[21.0, 16.0, 8.0, 3.0, 2.0, 1.0, 0.0], [17.0, 14.0, 8.0, 0.0, -4.0, -7.0, -9.0]])
_TIP = np.array([[4.0, 8.0, 9.0, 3.0, 3.0, 4.0, 2.0], [2.0, 2.0, 5.0, 2.0, 2.0, 2.0, 1.0]])
# Arch form of the upper crown-tip line, y = -(C2 x^2 + C4 x^4); the lower line is set lingually.
_ARCH_C2 = 0.0175
_ARCH_C4 = 3.6e-5
_LOWER_INSET = 2.6
# Arc-length scale of the tooth positions: rounded crowns touch at their contact points.
_CONTACT = 0.96


@lru_cache(maxsize=4)
def _arch_curve(arch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense half-arch (x >= 0) tip line for ``arch``: arc length, points (N, 2), unit tangents (N, 2)."""
    x = np.linspace(0.0, 40.0, 4001)
    y = -(_ARCH_C2 * x**2 + _ARCH_C4 * x**4)
    dy = -(2 * _ARCH_C2 * x + 4 * _ARCH_C4 * x**3)
    tangent = np.stack([np.ones_like(x), dy], axis=1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    points = np.stack([x, y], axis=1)
    if arch == 1:
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        points = points - _LOWER_INSET * normal
        d = np.diff(points, axis=0)
        tangent = np.vstack([d, d[-1:]])
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    return s, points, tangent


def _arch_at(arch: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Point and distal unit tangent of the half-arch tip line at arc length ``s``."""
    arc, points, tangent = _arch_curve(arch)
    px = np.interp(s, arc, points[:, 0])
    py = np.interp(s, arc, points[:, 1])
    tx = np.interp(s, arc, tangent[:, 0])
    ty = np.interp(s, arc, tangent[:, 1])
    t = np.array([tx, ty])
    return np.array([px, py]), t / np.linalg.norm(t)


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _ease(x: float) -> float:
    """Smooth 0..1 ease (smootherstep)."""
    x = min(max(x, 0.0), 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


# --------------------------------------------------------------------------------------------
# Malocclusion
# --------------------------------------------------------------------------------------------
# Per tooth (arch, side, kind): [labial mm, mesial mm, extrusion mm, rotation deg, tip deg, torque deg]

def _rng(seed: int, salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) % (2**63), salt]))


def _malocclusion(seed: int) -> dict[tuple[int, int, int], np.ndarray]:
    """Unit-crowding offsets per tooth; scaled by ``crowding * ease`` at render time."""
    rng = _rng(seed, 1)
    out: dict[tuple[int, int, int], np.ndarray] = {}
    # Scales per kind: labial, mesial, extrusion, rotation, tip, torque.
    scale = np.array([
        [1.1, 0.45, 0.55, 17.0, 5.0, 7.0],
        [1.3, 0.45, 0.6, 20.0, 6.0, 8.0],
        [1.0, 0.4, 0.6, 12.0, 6.0, 5.0],
        [0.7, 0.3, 0.45, 12.0, 4.0, 4.0],
        [0.6, 0.25, 0.4, 11.0, 4.0, 4.0],
        [0.25, 0.15, 0.25, 4.0, 2.5, 2.5],
        [0.3, 0.15, 0.3, 5.0, 3.0, 3.0],
    ])
    for arch in (0, 1):
        # Arch constriction: anterior teeth sit lingually so the crowns overlap.
        constriction = (1.0, 1.05, 0.75, 0.5, 0.25, 0.0, 0.0)
        blocked_side = int(rng.choice([-1, 1]))
        lingual_lateral = int(rng.choice([-1, 1]))
        midline = float(rng.normal(0.0, 0.55))
        for side in (-1, 1):
            for kind in range(7):
                v = rng.normal(0.0, 1.0, 6)
                v = np.clip(v, -1.9, 1.9) * scale[kind]
                v[0] -= 1.0 * constriction[kind]
                if kind <= 2:
                    v[1] += -side * midline * (1.0 - 0.3 * kind)
                if arch == 0 and kind == 2 and side == blocked_side:
                    # Blocked-out upper canine: labial and high.
                    v[0] += 1.7
                    v[2] -= 1.1
                    v[3] += 8.0
                if kind == 1 and side == lingual_lateral:
                    v[0] -= 0.9
                    v[5] -= 6.0
                out[(arch, side, kind)] = v
    return out


# --------------------------------------------------------------------------------------------
# Scene: primitives
# --------------------------------------------------------------------------------------------
_MAT_TOOTH = 1
_MAT_GUM = 2


@dataclass
class _Prim:
    center: np.ndarray          # world (3,)
    m: np.ndarray               # world -> normalised local: u = m @ (p - center)
    exps: tuple[int, int, int]
    taper: tuple[float, float]  # x and y scale change per unit normalised z
    mat: int
    tooth: int                  # tooth index or -1
    axis: np.ndarray            # world unit "occlusal" axis for the height coordinate
    origin: np.ndarray          # world point at height 0 (cervical line)
    height: float               # height of 1.0 (crown height, mm)
    group: int                  # perspective group (primitives of one object share one scale)
    coarse: bool = False        # smooth bulk shape: ray-cast at reduced resolution


@dataclass
class _Tooth:
    index: int
    arch: int
    side: int
    kind: int
    dims: np.ndarray
    origin: np.ndarray  # cervical centre, world
    frame: np.ndarray   # columns: distal, buccal, occlusal (world)


def _tooth_poses(offsets: dict[tuple[int, int, int], np.ndarray] | None, amount: float) -> list[_Tooth]:
    teeth: list[_Tooth] = []
    index = 0
    for arch in (0, 1):
        occlusal = np.array([0.0, 0.0, -1.0 if arch == 0 else 1.0])
        for side in (-1, 1):
            s = 0.0
            for kind in range(7):
                w, t, h = _DIMS[arch, kind]
                s_mid = (s + w / 2) * _CONTACT
                s += w
                p2, t2 = _arch_at(arch, s_mid)
                distal = np.array([side * t2[0], t2[1], 0.0])
                buccal = side * np.array([-distal[1], distal[0], 0.0])
                tip_point = np.array([side * p2[0], p2[1], _TIP_Z[arch, kind]])
                base = np.stack([distal, buccal, occlusal], axis=1)
                incl = _rot_x(-math.radians(_TORQUE[arch, kind])) @ _rot_y(-math.radians(_TIP[arch, kind]))
                frame = base @ incl
                origin = tip_point - h * frame[:, 2]
                if offsets is not None and amount > 0.0:
                    v = offsets[(arch, side, kind)] * amount
                    centre = origin + 0.5 * h * frame[:, 2]
                    mal = _rot_z(math.radians(v[3])) @ _rot_y(-math.radians(v[4])) @ _rot_x(-math.radians(v[5]))
                    frame = frame @ mal
                    centre = centre + v[0] * buccal - v[1] * distal + v[2] * occlusal
                    origin = centre - 0.5 * h * frame[:, 2]
                teeth.append(_Tooth(index, arch, side, kind, np.array([w, t, h]), origin, frame))
                index += 1
    return teeth


def _local_prim(tooth: _Tooth, center_l, axes, *, exps: tuple[int, int, int] = (2, 2, 2),
                taper: tuple[float, float] = (0.0, 0.0), mat: int, group: int, coarse: bool = False) -> _Prim:
    """A primitive given in the tooth frame (centre and semi-axes in mm)."""
    frame = tooth.frame
    center = tooth.origin + frame @ np.asarray(center_l, dtype=float)
    m = np.diag(1.0 / np.asarray(axes, dtype=float)) @ frame.T
    return _Prim(center, m, exps, taper, mat, tooth.index if mat == _MAT_TOOTH else -1,
                 frame[:, 2].copy(), tooth.origin, float(tooth.dims[2]), group, coarse)


def _crown_prims(tooth: _Tooth, group: int) -> list[_Prim]:
    """Crown primitives in the tooth frame (x distal, y buccal, z occlusal, z=0 at the gum line)."""
    w, t, h = tooth.dims
    kind, arch = tooth.kind, tooth.arch
    root = 2.4
    prims: list[_Prim] = []

    def body(top: float, exps: tuple[int, int, int], taper: tuple[float, float],
             widest: tuple[float, float]) -> None:
        # Tapered superellipsoid from ``root`` below the gum line to ``top``; full width and thickness
        # are reached at heights ``widest``.
        zc = (top - root) / 2
        c = (top + root) / 2
        a = 1.025 * (w / 2) / (1 + taper[0] * (widest[0] - zc) / c)  # slight overlap: tight contacts
        b = (t / 2) / (1 + taper[1] * (widest[1] - zc) / c)
        prims.append(_local_prim(tooth, (0, 0, zc), (a, b, c), exps=exps, taper=taper, mat=_MAT_TOOTH,
                                 group=group))

    def cusp(at: tuple[float, float], top: float, axes: tuple[float, float, float]) -> None:
        # A low ellipsoid cap; ``at`` and the first two axes are fractions of width and thickness.
        ax, ay, az = axes
        prims.append(_local_prim(tooth, (at[0] * w, at[1] * t, top - az), (ax * w, ay * t, az), mat=_MAT_TOOTH,
                                 group=group))

    if kind <= 1:  # incisors: flat labial face, thin incisal edge, rounded-square outline
        body(h, (4, 2, 4), (0.17, -0.74), (h * 0.9, 0.6))
    elif kind == 2:  # canine: pointed cusp, thick and convex
        body(h, (2, 2, 3), (-0.24, -0.34), (h * 0.55, 1.0))
    elif kind <= 4:  # premolars: pointed buccal cusp, smaller lingual cusp, central groove
        body(h - 0.65, (3, 2, 3), (-0.12, 0.0), (h * 0.55, h * 0.35))
        cusp((-0.03, 0.12), h, (0.42, 0.26, 3.0))
        lingual_top = h - (1.2 if (arch == 1 and kind == 3) else 0.45)
        cusp((0.03, -0.16), lingual_top, (0.36 if arch == 1 else 0.40, 0.26, 3.0))
    else:  # molars: box-like crown with four or five low cusps
        body(h - 0.75, (4, 3, 3), (0.0, -0.08), (h * 0.5, h * 0.35))
        if arch == 0:
            spots = ((-0.22, 0.20, 0.0, 0.33), (0.23, 0.21, 0.2, 0.31), (-0.19, -0.20, -0.1, 0.36),
                     (0.25, -0.23, 0.5, 0.28))
        elif kind == 5:
            spots = ((-0.27, 0.21, 0.0, 0.27), (0.03, 0.23, 0.1, 0.26), (0.32, 0.15, 0.4, 0.21),
                     (-0.23, -0.20, -0.1, 0.30), (0.22, -0.21, 0.1, 0.29))
        else:
            spots = ((-0.22, 0.21, 0.0, 0.32), (0.24, 0.21, 0.2, 0.30), (-0.21, -0.21, -0.1, 0.31),
                     (0.23, -0.21, 0.1, 0.30))
        for x, y, drop, r in spots:
            cusp((x, 0.72 * y), h - drop, (r, min(r * w / t, 0.25), 3.2))
    return prims


def _gum_prims(teeth: list[_Tooth], arch: int) -> list[_Prim]:
    """Gingiva that follows the teeth of one arch: a collar per crown and the interdental papillae."""
    prims: list[_Prim] = []
    group = 500 + 50 * arch
    occlusal = np.array([0.0, 0.0, -1.0 if arch == 0 else 1.0])
    arch_teeth = [tt for tt in teeth if tt.arch == arch]
    # Order along the arch: right M2 ... right central, left central ... left M2.
    order = sorted(arch_teeth, key=lambda tt: tt.side * (tt.kind + 0.5))
    for tooth in arch_teeth:
        w, t, _h = tooth.dims
        prims.append(_local_prim(tooth, (0, 0, -2.4), (w / 2 + 0.3, t / 2 + 0.4, 2.8), mat=_MAT_GUM,
                                 group=tooth.index, coarse=True))
    for a, b in itertools.pairwise(order):
        mid = 0.5 * (a.origin + b.origin)
        dx = b.origin - a.origin
        dx[2] = 0.0
        dx /= max(np.linalg.norm(dx), 1e-6)
        dy = np.cross(occlusal, dx)
        anterior = max(a.kind, b.kind) <= 2
        tall = 2.6 if anterior else 1.4
        half_h = 3.4
        thick = 0.42 * min(a.dims[1], b.dims[1])
        center = mid + (tall - half_h) * occlusal
        frame = np.stack([dx, dy, occlusal], axis=1)
        m = np.diag([1 / 1.6, 1 / thick, 1 / half_h]) @ frame.T
        prims.append(_Prim(center, m, (2, 2, 2), (0.0, 0.0), _MAT_GUM, -1, occlusal, mid, 10.0, group))
        group += 1
    return prims


@lru_cache(maxsize=2)
def _band_prims(arch: int) -> tuple[_Prim, ...]:
    """The alveolar band of one arch: overlapping ellipsoids along the aligned cervical line."""
    prims: list[_Prim] = []
    group = 1000 + 200 * arch
    occlusal = np.array([0.0, 0.0, -1.0 if arch == 0 else 1.0])
    al = sorted([tt for tt in _aligned_poses() if tt.arch == arch], key=lambda tt: tt.side * (tt.kind + 0.5))
    pts = np.array([tt.origin for tt in al])
    thick = np.array([tt.dims[1] for tt in al])
    ext0 = pts[0] + (pts[0] - pts[1]) * 0.45
    ext1 = pts[-1] + (pts[-1] - pts[-2]) * 0.45
    pts = np.vstack([ext0, pts, ext1])
    thick = np.concatenate([[thick[0]], thick, [thick[-1]]])
    seg = np.linalg.norm(np.diff(pts[:, :2], axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = int(arc[-1] / 2.6) + 1
    for sv in np.linspace(0.0, arc[-1], n):
        p = np.array([np.interp(sv, arc, pts[:, k]) for k in range(3)])
        th = float(np.interp(sv, arc, thick))
        s2 = min(sv + 0.5, arc[-1])
        s1 = max(sv - 0.5, 0.0)
        q2 = np.array([np.interp(s2, arc, pts[:, k]) for k in range(2)])
        q1 = np.array([np.interp(s1, arc, pts[:, k]) for k in range(2)])
        dx = np.array([*(q2 - q1), 0.0])
        dx /= max(np.linalg.norm(dx), 1e-6)
        dy = np.cross(occlusal, dx)
        frame = np.stack([dx, dy, occlusal], axis=1)
        half_h = 4.1
        center = p + (-0.5 - half_h) * occlusal
        m = np.diag([1 / 6.0, 1 / (th / 2 + 0.95), 1 / half_h]) @ frame.T
        prims.append(_Prim(center, m, (2, 2, 2), (0.0, 0.0), _MAT_GUM, -1, occlusal, p, 10.0, group, True))
        group += 1
    return tuple(prims)


@lru_cache(maxsize=1)
def _aligned_poses() -> tuple[_Tooth, ...]:
    return tuple(_tooth_poses(None, 0.0))


def _scene(case: ArchCase | None, progress: float, arches: tuple[int, ...]) -> tuple[list[_Prim], list[_Tooth]]:
    """Primitives for the given arches at treatment ``progress`` (0 = initial, 1 = aligned)."""
    if case is None or case.crowding <= 0.0 or progress >= 1.0:
        teeth = list(_aligned_poses())
    else:
        amount = float(case.crowding) * _ease(1.0 - progress)
        teeth = _tooth_poses(_malocclusion(case.seed), amount)
    prims: list[_Prim] = []
    for tooth in teeth:
        if tooth.arch in arches:
            prims.extend(_crown_prims(tooth, tooth.index))
    for arch in arches:
        prims.extend(_gum_prims(teeth, arch))
        prims.extend(_band_prims(arch))
    return prims, teeth


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _View:
    basis: np.ndarray          # rows: screen right, screen up, toward viewer (world)
    arches: tuple[int, ...]
    distance: float            # perspective distance (mm) from the scene centre
    margin: float
    key: tuple[float, float, float]  # key light for model renders (camera space)


def _view(view: str, photo: bool = False) -> _View:
    ex, ey, ez = np.eye(3)
    if view == "front":
        basis = np.stack([ex, ez, ey])
        arches = (0, 1)
    elif view == "left":
        a = math.radians(14.0)
        back = np.array([math.cos(a), math.sin(a), 0.0])
        basis = np.stack([np.cross(back, ez), ez, back])
        arches = (0, 1)
    elif view == "right":
        a = math.radians(14.0)
        back = np.array([-math.cos(a), math.sin(a), 0.0])
        basis = np.stack([np.cross(ez, back) * -1.0, ez, back])
        arches = (0, 1)
    elif view == "upper":
        basis = np.stack([ex, ey, -ez])
        arches = (0,)
    else:  # lower
        basis = np.stack([ex, -ey, ez])
        arches = (1,)
    # Symmetric headlight for the frontal view, slightly from the anterior side for the buccal views.
    key = {"upper": (0.0, -0.3, 1.0), "lower": (0.0, 0.3, 1.0), "left": (-0.2, 0.3, 1.0),
           "right": (0.2, 0.3, 1.0)}.get(view, (0.0, 0.3, 1.0))
    return _View(basis, arches, 170.0 if photo else 260.0, 0.06, key)


# --------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------

class _Workspace:
    """Full-frame scratch arrays, reused between renders to avoid page-faulting fresh memory per frame."""

    def __init__(self, n: int, cache: bool) -> None:
        self.n = n
        self.cache = cache
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, dtype) -> np.ndarray:
        a = self.arrays.get(name)
        if a is None or a.dtype != dtype:
            a = np.empty(self.n, dtype)
            if self.cache:
                self.arrays[name] = a
        return a


_WS_LOCK = threading.Lock()
_WS_MAX = 6_600_000  # elements (covers 1920x1080 at 1.5x); larger frames use fresh arrays
_WS: list[_Workspace] = []


@contextmanager
def _workspace(n: int) -> Iterator[_Workspace]:
    """One shared workspace (about 36 bytes per internal pixel); concurrent renders get private arrays."""
    if n <= _WS_MAX and _WS_LOCK.acquire(blocking=False):
        try:
            if not _WS or _WS[0].n != n:
                _WS[:] = [_Workspace(n, cache=True)]
            yield _WS[0]
        finally:
            _WS_LOCK.release()
    else:
        yield _Workspace(n, cache=False)


class _Buffers:
    """Flat per-pixel buffers: depth (toward the viewer), unit normal, material, tooth, height."""

    def __init__(self, width: int, height: int, z: np.ndarray | None = None, ws: _Workspace | None = None) -> None:
        n = width * height
        ws = ws or _Workspace(n, cache=False)
        self.width = width
        self.height = height
        if z is None:
            z = ws.get("z", np.float32)
            z.fill(-1e9)
        self.z = z
        self.nx = ws.get("nx", np.float32)
        self.ny = ws.get("ny", np.float32)
        self.nz = ws.get("nz", np.float32)
        self.mat = ws.get("mat", np.uint8)
        self.tooth = ws.get("tooth", np.int16)
        self.h = ws.get("h", np.float32)
        for a in (self.nx, self.ny, self.nz, self.mat, self.h):
            a.fill(0)
        self.tooth.fill(-1)


def _pow(u: np.ndarray, p: int) -> np.ndarray:
    if p == 2:
        return u * u
    if p == 4:
        u2 = u * u
        return u2 * u2
    return u * u * np.abs(u)


def _dpow(u: np.ndarray, p: int) -> np.ndarray:
    if p == 2:
        return 2.0 * u
    if p == 4:
        return 4.0 * u * u * u
    return 3.0 * u * np.abs(u)


def _bound_scale(p: _Prim) -> np.ndarray:
    """Semi-axes (normalised local units) of an ellipsoid enclosing the tapered superellipsoid."""
    quartic = sum(1 for e in p.exps if e > 2)
    k = max(1.0, quartic) ** 0.25 if quartic else 1.0
    tx, ty = p.taper
    return np.array([k * (1 + abs(tx)), k * (1 + abs(ty)), k])


def _cast(prims: list[_Prim], camera: tuple[float, float, float], buf: _Buffers, iterations: int = 5) -> None:
    """Ray-cast ``prims`` (camera space) into ``buf`` with a depth test, nearest primitives first."""
    scale, x0, y0 = camera
    width, height = buf.width, buf.height
    cols = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / scale + x0).astype(np.float32)
    rows = ((height / 2 - np.arange(height, dtype=np.float32) - 0.5) / scale + y0).astype(np.float32)
    order = sorted(prims, key=lambda q: -q.center[2])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for p in order:
            _cast_one(p, camera, (cols, rows), buf, iterations)


def _prim_bounds(p: _Prim) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounding-ellipsoid matrix (camera -> unit sphere) and camera-space half extents of a primitive."""
    e = _bound_scale(p)
    mi = p.m / e[:, None]
    if not abs(np.linalg.det(mi)) > 1e-12:
        return None
    ext = np.sqrt((np.linalg.inv(mi) ** 2).sum(axis=1))
    # The local box |u| <= (1 + |taper|) is often tighter than the ellipsoid on screen.
    box = np.array([1 + abs(p.taper[0]), 1 + abs(p.taper[1]), 1.0])
    box_ext = np.abs(np.linalg.inv(p.m)) @ box
    return mi, np.minimum(ext, box_ext)


def _cast_one(p: _Prim, camera: tuple[float, float, float], grid: tuple[np.ndarray, np.ndarray], buf: _Buffers,
              iterations: int) -> None:
    """Ray-cast one primitive inside its screen bounding box; ``grid`` = camera x of columns, y of rows."""
    scale, x0, y0 = camera
    cols, rows = grid
    width, height = buf.width, buf.height
    bound = _prim_bounds(p)
    if bound is None:
        return
    mi, ext = bound
    cx, cy, cz = (float(c) for c in p.center)
    c0 = max(math.floor((cx - ext[0] - x0) * scale + width / 2), 0)
    c1 = min(math.ceil((cx + ext[0] - x0) * scale + width / 2) + 1, width)
    r0 = max(math.floor((y0 - cy - ext[1]) * scale + height / 2), 0)
    r1 = min(math.ceil((y0 - cy + ext[1]) * scale + height / 2) + 1, height)
    if c0 >= c1 or r0 >= r1:
        return
    zs = float(ext[2]) + 0.5
    zbox = buf.z.reshape(height, width)[r0:r1, c0:c1]
    front = np.float32(cz + ext[2])
    open_ = zbox < front                   # pixels where this primitive could still be in front
    xs = cols[c0:c1] - np.float32(cx)
    ys = rows[r0:r1] - np.float32(cy)
    v = -mi[:, 2]                          # ray direction (0, 0, -1) in bound coordinates
    aa = float(v @ v)
    bx, by, bz = float(mi[:, 0] @ v), float(mi[:, 1] @ v), float(mi[:, 2] @ v) * zs
    q = (mi.T @ mi).tolist()
    bq = (by * ys + np.float32(bz))[:, None] + (bx * xs)[None, :]
    cq = (q[1][1] * ys + 2 * q[1][2] * zs) * ys + np.float32(q[2][2] * zs * zs - 1.0)
    cq = cq[:, None] + ((q[0][0] * xs + 2 * q[0][2] * zs) * xs)[None, :]
    cq += (2 * q[0][1]) * np.multiply.outer(ys, xs)
    disc = bq * bq
    disc -= aa * cq
    open_ &= disc > 0.0
    k = np.flatnonzero(open_)
    if k.size == 0:
        return
    bw = c1 - c0
    bh = bq.ravel()[k]
    sq = np.sqrt(disc.ravel()[k])
    inv_a = 1.0 / aa
    t = (-bh - sq) * inv_a
    ri = k // bw
    ci = k - ri * bw
    gidx = (ri + r0) * width + (ci + c0)
    # Early depth rejection: the bound's front is already behind what is drawn.
    zb = buf.z[gidx]
    keep = np.flatnonzero((cz + zs) - t > zb)
    if keep.size == 0:
        return
    if keep.size < t.size:
        ri, ci, t, gidx, zb = ri[keep], ci[keep], t[keep], gidx[keep], zb[keep]
        simple_prim = p.exps == (2, 2, 2) and p.taper == (0.0, 0.0)
        if not simple_prim:
            bh, sq = bh[keep], sq[keep]
    xh = xs[ci]
    yh = ys[ri]
    m = p.m.tolist()
    ox = m[0][0] * xh + m[0][1] * yh + np.float32(m[0][2] * zs)
    oy = m[1][0] * xh + m[1][1] * yh + np.float32(m[1][2] * zs)
    oz = m[2][0] * xh + m[2][1] * yh + np.float32(m[2][2] * zs)
    direction = (-m[0][2], -m[1][2], -m[2][2])
    dx, dy, dz = direction
    px_, py_, pz_ = p.exps
    tx, ty = (float(a) for a in p.taper)
    if px_ == py_ == pz_ == 2 and tx == 0.0 and ty == 0.0:
        gx = ox + t * dx
        gy = oy + t * dy
        gz = oz + t * dz
        ok = None
    else:
        t_far = (-bh + sq) * inv_a + 1.0
        shape = (direction, p.exps, (tx, ty))
        t = _newton((ox, oy, oz), t, t_far, shape, 1)
        # Newton from outside only moves away from the viewer: drop rays already behind the buffer.
        alive = np.flatnonzero((cz + zs) - t > zb)
        if alive.size == 0:
            return
        if alive.size < 0.85 * t.size:
            ox, oy, oz, t, t_far, zb, gidx, xh, yh = (a[alive] for a in (ox, oy, oz, t, t_far, zb, gidx, xh, yh))
        t = _newton((ox, oy, oz), t, t_far, shape, 2)
        # Most rays have converged; a few grazing ones get more iterations.
        f, _ = _newton_terms((ox, oy, oz), t, shape)
        slow = np.flatnonzero(np.abs(f) > 2e-3)
        if slow.size:
            t[slow] = _newton((ox[slow], oy[slow], oz[slow]), t[slow], t_far[slow], shape, iterations - 2)
        ux, uy, uz, sx, sy = _local_point((ox, oy, oz), t, direction, (tx, ty))
        f = _pow(ux, px_) + _pow(uy, py_) + _pow(uz, pz_)
        ok = np.abs(f - 1.0) < 0.03
        ok &= t < t_far - 1.0
        gx = _dpow(ux, px_)
        gy = _dpow(uy, py_)
        gz = _dpow(uz, pz_)
        if tx:
            gx /= sx
            gz -= gx * ux * tx
        if ty:
            gy /= sy
            gz -= gy * uy * ty
    zhit = (cz + zs) - t
    win = zhit > zb
    if ok is not None:
        win &= ok
    sel = np.flatnonzero(win)
    if sel.size == 0:
        return
    if sel.size < win.size:
        gidx, gx, gy, gz, zhit, xh, yh = gidx[sel], gx[sel], gy[sel], gz[sel], zhit[sel], xh[sel], yh[sel]
    nx = m[0][0] * gx + m[1][0] * gy + m[2][0] * gz
    ny = m[0][1] * gx + m[1][1] * gy + m[2][1] * gz
    nz = m[0][2] * gx + m[1][2] * gy + m[2][2] * gz
    inv = nx * nx + ny * ny + nz * nz
    inv += 1e-20
    inv = 1.0 / np.sqrt(inv)
    buf.z[gidx] = zhit
    buf.nx[gidx] = nx * inv
    buf.ny[gidx] = ny * inv
    buf.nz[gidx] = nz * inv
    buf.mat[gidx] = p.mat
    buf.tooth[gidx] = p.tooth
    a0, a1, a2 = (float(c) for c in p.axis)
    o0, o1, o2 = (float(c) for c in p.origin)
    hh = 1.0 / p.height
    buf.h[gidx] = (xh * (a0 * hh) + yh * (a1 * hh) + zhit * (a2 * hh)
                   + np.float32(((cx - o0) * a0 + (cy - o1) * a1 - o2 * a2) * hh))


Vec3 = tuple[np.ndarray, np.ndarray, np.ndarray]
Shape = tuple[tuple[float, float, float], tuple[int, int, int], tuple[float, float]]  # direction, exps, taper


def _newton(origin: Vec3, t: np.ndarray, t_far: np.ndarray, shape: Shape, iterations: int) -> np.ndarray:
    """Newton steps toward the first root of F = 1 along the rays (t clamped to ``t_far``).

    F (a tapered superellipsoid) is near-convex along a ray, so steps from the bounding ellipsoid's
    entry point move monotonically toward the nearest hit.
    """
    t = t.copy()
    for _ in range(iterations):
        f, df = _newton_terms(origin, t, shape)
        np.minimum(df, -1e-4, out=df)
        f /= df
        t -= f
        np.minimum(t, t_far, out=t)
    return t


def _local_point(origin: Vec3, t: np.ndarray, direction: tuple[float, float, float],
                 taper: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                                                      np.ndarray | None]:
    """Normalised local coordinates along the rays with the taper applied to x and y, and the taper scales."""
    ox, oy, oz = origin
    dx, dy, dz = direction
    tx, ty = taper
    uz = t * dz
    uz += oz
    ux = t * dx
    ux += ox
    uy = t * dy
    uy += oy
    sx = sy = None
    if tx:
        sx = uz * tx
        sx += 1.0
        np.maximum(sx, 0.05, out=sx)
        ux /= sx
    if ty:
        sy = uz * ty
        sy += 1.0
        np.maximum(sy, 0.05, out=sy)
        uy /= sy
    return ux, uy, uz, sx, sy


def _newton_terms(origin: Vec3, t: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """F - 1 and dF/dt along the rays for the tapered superellipsoid."""
    direction, (px_, py_, pz_), (tx, ty) = shape
    dx, dy, dz = direction
    ux, uy, uz, sx, sy = _local_point(origin, t, direction, (tx, ty))
    f = None
    df = None
    for u, pexp, d, taper, sc in ((ux, px_, dx, tx, sx), (uy, py_, dy, ty, sy), (uz, pz_, dz, 0.0, None)):
        u2 = u * u
        if pexp == 2:
            term = u2
            der = u * 2.0
        elif pexp == 4:
            term = u2 * u2
            der = u2
            der *= u
        else:
            au = np.abs(u)
            term = u2
            term *= au
            der = au
            der *= u
        if taper:
            # d(u)/dt = (d - u * taper * dz) / s
            du = u * (-taper * dz)
            du += d
            du /= sc
            der *= du
            if pexp != 2:
                der *= float(pexp)
        else:
            der = der * ((1.0 if pexp == 2 else float(pexp)) * d)
        if f is None:
            f, df = term, der
        else:
            f += term
            df += der
    f -= 1.0
    return f, df


def _to_camera(prims: list[_Prim], view: _View, centre: np.ndarray) -> list[_Prim]:
    """World -> camera space with a weak perspective per object group (uniform scale per group)."""
    basis = view.basis
    groups: dict[int, list[_Prim]] = {}
    for p in prims:
        groups.setdefault(p.group, []).append(p)
    out: list[_Prim] = []
    for members in groups.values():
        ref = np.mean([basis @ (q.center - centre) for q in members], axis=0)
        k = view.distance / max(view.distance - ref[2], 1.0)
        for q in members:
            c = basis @ (q.center - centre)
            c2 = np.array([k * c[0], k * c[1], ref[2] + k * (c[2] - ref[2])])
            o = basis @ (q.origin - centre)
            o2 = np.array([k * o[0], k * o[1], ref[2] + k * (o[2] - ref[2])])
            out.append(_Prim(c2, (q.m @ basis.T) / k, q.exps, q.taper, q.mat, q.tooth, basis @ q.axis, o2,
                             q.height * k, q.group, q.coarse))
    return out


def _screen_bounds(prims: list[_Prim]) -> tuple[float, float, float, float]:
    lo = np.array([np.inf, np.inf])
    hi = -lo
    for p in prims:
        ninv = np.linalg.inv(p.m / _bound_scale(p)[:, None])
        ext = np.sqrt((ninv**2).sum(axis=1))[:2]
        lo = np.minimum(lo, p.center[:2] - ext)
        hi = np.maximum(hi, p.center[:2] + ext)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


@lru_cache(maxsize=32)
def _framing(view: str, photo: bool) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """Scene centre and camera-space bounds of the aligned scene (stage independent)."""
    v = _view(view, photo)
    prims, _ = _scene(None, 1.0, v.arches)
    pts = np.array([p.center for p in prims])
    centre = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
    cam = _to_camera(prims, v, centre)
    return tuple(centre), _screen_bounds(cam)


# --------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Style:
    """Materials and lights (camera space: x right, y up, z toward the viewer)."""

    enamel: tuple[float, float, float]
    cervical: tuple[float, float, float]      # enamel multiplier at the gum line
    incisal: tuple[float, float, float]       # translucent incisal-edge colour (incisors)
    incisal_amount: float
    gum: tuple[float, float, float]
    mucosa: tuple[float, float, float]        # gum colour away from the margin
    key: tuple[float, float, float]
    fill: tuple[float, float, float]
    light: tuple[float, float, float]         # light colour
    ambient: float
    diffuse: float
    fill_amount: float
    tooth_spec: float
    tooth_shine: float
    tooth_sheen: float                        # broad secondary lobe (wet look)
    gum_spec: float
    gum_shine: float
    ao: float
    tint_jitter: float                        # per-tooth colour variation
    gum_fade: tuple[float, float] | None = None  # fade the band out between these heights (photos)
    gum_ao: float = 0.6                       # share of the occlusion applied to the gums


_MODEL_STYLE = _Style(
    enamel=(0.99, 0.97, 0.93), cervical=(0.96, 0.91, 0.82), incisal=(0.90, 0.92, 0.95), incisal_amount=0.25,
    gum=(0.92, 0.54, 0.58), mucosa=(0.84, 0.45, 0.50),
    key=(0.0, 0.3, 1.0), fill=(0.0, -0.5, 0.6), light=(1.0, 1.0, 1.0),
    ambient=0.40, diffuse=0.57, fill_amount=0.16, tooth_spec=0.22, tooth_shine=20.0, tooth_sheen=0.04,
    gum_spec=0.08, gum_shine=12.0, ao=0.55, tint_jitter=0.0,
)
_PHOTO_STYLE = _Style(
    enamel=(0.96, 0.93, 0.87), cervical=(0.95, 0.88, 0.74), incisal=(0.80, 0.82, 0.86), incisal_amount=0.35,
    gum=(0.93, 0.58, 0.57), mucosa=(0.80, 0.36, 0.38),
    key=(0.0, 0.18, 1.0), fill=(0.0, -0.6, 0.4), light=(1.0, 0.95, 0.88),
    ambient=0.30, diffuse=0.70, fill_amount=0.10, tooth_spec=0.85, tooth_shine=160.0, tooth_sheen=0.08,
    gum_spec=0.16, gum_shine=60.0, ao=0.6, tint_jitter=0.03, gum_fade=(-0.75, -0.35), gum_ao=0.7,
)


def _unit(v) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=np.float64)
    a = a / np.linalg.norm(a)
    return float(a[0]), float(a[1]), float(a[2])


def _lighting(normal: Vec3, style: _Style, spec: float, shine: float, sheen: float) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse factor (ambient + key + wrapped fill) and Blinn-Phong specular term for unit normals."""
    nx, ny, nz = normal
    kx, ky, kz = _unit(style.key)
    fx, fy, fz = _unit(style.fill)
    hx, hy, hz = _unit((kx, ky, kz + 1.0))
    lam = np.maximum(nx * kx + ny * ky + nz * kz, 0.0)
    wrap = np.clip((nx * fx + ny * fy + nz * fz + 0.35) * (1 / 1.35), 0.0, 1.0)
    amb = style.ambient * (0.85 + 0.15 * ny)
    diffuse = amb + style.diffuse * lam + style.fill_amount * wrap
    nh = np.maximum(nx * hx + ny * hy + nz * hz, 0.0)
    specular = spec * _fast_pow(nh, shine)
    if sheen:
        specular += sheen * _fast_pow(nh, 8.0)
    return diffuse, specular


def _fast_pow(x: np.ndarray, e: float) -> np.ndarray:
    """``x ** e`` for x in 0..1 via repeated squaring of the nearest power of two (cheaper than pow)."""
    n = max(1, round(math.log2(max(e, 1.0))))
    out = x * x if n >= 1 else x
    for _ in range(n - 1):
        out *= out
    return out


def _blur_normals(normal: Vec3, weight: np.ndarray, scale: float, sigma_mm: float) -> Vec3:
    """Normalised-convolution blur of weighted normal sums (images); returns unit normals (images)."""
    nx, ny, nz = normal
    h, w = weight.shape
    f = max(1, round(scale * sigma_mm / 2.5))
    sw, sh = max(w // f, 8), max(h // f, 8)
    small = cv2.resize(cv2.merge([nx, ny, nz, weight]), (sw, sh), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma_mm * scale * sw / w, 0.5))
    small[..., :3] /= np.maximum(small[..., 3:4], 1e-4)
    big = cv2.resize(np.ascontiguousarray(small[..., :3]), (w, h), interpolation=cv2.INTER_LINEAR)
    bx, by, bz = big[..., 0], big[..., 1], big[..., 2]
    inv = bx * bx + by * by + bz * bz
    inv += 1e-12
    inv = 1.0 / np.sqrt(inv)
    return bx * inv, by * inv, bz * inv


def _tooth_tints(case: ArchCase | None, style: _Style) -> np.ndarray:
    """Per-tooth RGB multipliers (29, 3) indexed by tooth + 1; symmetric (by kind) unless the style jitters."""
    tints = np.ones((29, 3), np.float32)
    kind_shift = np.array([1.0, 0.99, 0.955, 0.975, 0.98, 0.97, 0.965], np.float32)
    for i in range(28):
        kind = i % 7
        tints[i + 1] *= kind_shift[kind]
        tints[i + 1, 2] *= 0.985 if kind == 2 else 1.0
    if style.tint_jitter and case is not None:
        tints[1:] *= 1.0 + _rng(case.seed, 7).normal(0.0, style.tint_jitter, (28, 1)).astype(np.float32)
    return tints


def _shade_teeth(normal: Vec3, hf: np.ndarray, tooth: np.ndarray, style: _Style, case: ArchCase | None) -> np.ndarray:
    """Enamel colour (n, 3) for unit normals, height fraction along the crown and tooth index (-1 unknown)."""
    diffuse, specular = _lighting(normal, style, style.tooth_spec, style.tooth_shine, style.tooth_sheen)
    shade = 0.4 if case is None else float(case.shade)
    enamel = np.array(style.enamel, np.float32) * np.array([1.0, 1.0 - 0.03 * shade, 1.0 - 0.10 * shade],
                                                           np.float32)
    tid = tooth.astype(np.intp)
    tid += 1
    table = _tooth_tints(case, style) * enamel[None, :]
    incisor_table = np.array([0.0] + [1.0 if i % 7 <= 1 else 0.0 for i in range(28)], np.float32)
    cerv = np.clip(1.0 - hf * (1 / 0.45), 0.0, 1.0)
    cerv *= cerv
    edge = np.clip((hf - 0.72) * (1 / 0.28), 0.0, 1.0)
    edge *= np.take(incisor_table * style.incisal_amount, tid)
    keep = 1.0 - edge
    keep *= diffuse
    edge *= diffuse
    out = np.empty((hf.size, 3), np.float32)
    for c in range(3):
        col = np.take(np.ascontiguousarray(table[:, c]), tid)
        col *= cerv * (style.cervical[c] - 1.0) + 1.0
        col *= keep
        col += edge * style.incisal[c]
        col += specular
        col *= style.light[c]
        out[:, c] = col
    return out


def _shade_gum(normal: Vec3, hf: np.ndarray, style: _Style) -> np.ndarray:
    """Gingiva colour (n, 3): coral pink at the margin, deeper mucosa further from it."""
    diffuse, specular = _lighting(normal, style, style.gum_spec, style.gum_shine, 0.0)
    deep = np.clip(hf * (-1 / 0.8), 0.0, 1.0)
    out = np.empty((hf.size, 3), np.float32)
    for c in range(3):
        col = style.gum[c] + deep * (style.mucosa[c] - style.gum[c])
        col *= diffuse
        col += specular
        out[:, c] = col * style.light[c]
    return out


def _ambient_occlusion(z: np.ndarray, scale: float, radius_mm: float) -> np.ndarray:
    """Screen-space ambient occlusion (0 = open, 1 = deep crevice) from a depth map (NaN = empty)."""
    h, w = z.shape
    hit = np.isfinite(z)
    if not hit.any():
        return np.zeros((h, w), np.float32)
    zf = np.where(hit, z, np.float32(np.nanmin(z) - 3.0)).astype(np.float32)
    blurred = cv2.GaussianBlur(zf, (0, 0), max(radius_mm * scale, 0.6))
    occ = np.clip((blurred - zf) * (1 / 1.4), 0.0, 1.0)
    occ[~hit] = 0.0
    return occ


# --------------------------------------------------------------------------------------------
# Render pipeline
# --------------------------------------------------------------------------------------------

@dataclass
class _Layers:
    teeth: np.ndarray       # premultiplied RGB (h, w, 3)
    teeth_cov: np.ndarray   # coverage (h, w)
    gum: np.ndarray         # premultiplied RGB (h, w, 3)
    gum_cov: np.ndarray     # coverage (h, w)
    scale: float            # output pixels per mm
    camera: tuple[float, float, float]

    def composite(self, background: np.ndarray) -> np.ndarray:
        """The premultiplied layers over ``background`` (h, w, 3); returns a new array."""
        out = background * (1.0 - self.teeth_cov - self.gum_cov)[..., None]
        out += self.teeth
        out += self.gum
        return out


def _soft_upsample(chans: list[np.ndarray], cov: np.ndarray, width: int, height: int
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """Upsample per-pixel attributes of a binary-coverage layer, with smooth anti-aliased outlines.

    The coverage is blurred and re-thresholded with a one-pixel ramp, so the outline is the smooth
    iso-contour of the blurred mask instead of a staircase; attributes near the outline come from a
    normalised blur so they extend slightly past the covered pixels.
    """
    sh, sw = cov.shape
    up = width / sw
    sigma = 0.6 if up <= 1.01 else 1.0
    cov_b = cv2.GaussianBlur(cov, (0, 0), sigma)
    inv = 1.0 / np.maximum(cov_b, 1e-3)
    solid = cov > 0.5
    out = []
    for chan in chans:
        soft = np.where(solid, chan, cv2.GaussianBlur(chan * cov, (0, 0), sigma) * inv)
        if (sw, sh) != (width, height):
            soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
        out.append(soft)
    if (sw, sh) != (width, height):
        cov_b = cv2.resize(cov_b, (width, height), interpolation=cv2.INTER_LINEAR)
    # The slope of a blurred step is about 0.4 / (sigma * up) per output pixel: ramp over ~1.2 px.
    gain = sigma * up / (0.4 * 1.2)
    alpha = np.clip((cov_b - 0.5) * gain + 0.5, 0.0, 1.0)
    return out, alpha


def _internal_scale(width: int, height: int) -> float:
    """Supersampling factor for the crowns: 2x for small frames, 1.6x at 720p, 1.5x above, within a budget."""
    pixels = width * height
    ss = 2.0 if pixels <= 640 * 480 else 1.6 if pixels <= 1280 * 720 else 1.5
    if width * height * ss * ss > _MAX_INTERNAL_PIXELS:
        ss = max(1.0, math.sqrt(_MAX_INTERNAL_PIXELS / (width * height)))
    return ss


def _fine_pass(prims: list[_Prim], camera: tuple[float, float, float], sizes: tuple[int, int, int, int],
               band: tuple[_Buffers, np.ndarray], ws: _Workspace
               ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Supersampled crowns and papillae, depth-tested against the band; returns output-resolution sums.

    Returns (all normals+height sums, tooth normals+height sums, tooth coverage, covered fraction,
    depth sum, tooth ids) - all new arrays (nothing aliases the workspace).
    """
    f32 = np.float32
    width, height, iw, ih = sizes
    g, balpha = band
    gh, gw = g.height, g.width
    scale, x0, y0 = camera
    # The band's depth, upsampled, takes part in the depth test (nearest-first culling too).
    gz = g.z.reshape(gh, gw)
    gz = np.maximum(gz, cv2.dilate(gz, np.ones((3, 3), np.uint8)))
    zbuf = ws.get("z", f32)
    cv2.resize(gz, (iw, ih), dst=zbuf.reshape(ih, iw), interpolation=cv2.INTER_LINEAR)
    tmp = ws.get("tmp", f32)
    cv2.resize(balpha, (iw, ih), dst=tmp.reshape(ih, iw), interpolation=cv2.INTER_LINEAR)
    low = ws.get("mask", np.bool_)
    np.less(tmp, 0.5, out=low)
    np.copyto(zbuf, f32(-1e9), where=low)
    t = _Buffers(iw, ih, zbuf, ws)
    _cast(prims, (scale * iw / width, x0, y0), t)
    hit = ws.get("hit", f32)
    np.greater(t.mat, 0, out=low)
    np.copyto(hit, low)
    mt = ws.get("mt", f32)
    np.equal(t.mat, _MAT_TOOTH, out=low)
    np.copyto(mt, low)

    if (iw, ih) != (width, height):
        def down(a: np.ndarray) -> np.ndarray:
            return cv2.resize(a.reshape(ih, iw), (width, height), interpolation=cv2.INTER_AREA)

        ids2 = t.tooth.reshape(ih, iw)
        if iw == 2 * width and ih == 2 * height:
            ids = np.maximum(np.maximum(ids2[0::2, 0::2], ids2[1::2, 0::2]),
                             np.maximum(ids2[0::2, 1::2], ids2[1::2, 1::2]))
        else:
            near = cv2.resize(ids2, (width, height), interpolation=cv2.INTER_NEAREST)
            ids = np.maximum(near, cv2.dilate(near, np.ones((3, 3), np.uint8)))
    else:
        def down(a: np.ndarray) -> np.ndarray:
            return a.reshape(height, width).copy()

        ids = t.tooth.reshape(height, width).copy()

    def down_masked(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
        np.multiply(a, mask, out=tmp)
        return down(tmp)

    z_f = down_masked(t.z, hit)
    all_n = [down(a) for a in (t.nx, t.ny, t.nz, t.h)]
    tooth_n = [down_masked(a, mt) for a in (t.nx, t.ny, t.nz, t.h)]
    return all_n, tooth_n, down(mt), down(hit), z_f, ids


def _render_layers(case: ArchCase | None, progress: float, view: str, size: tuple[int, int], style: _Style,
                   *, photo: bool = False, zoom: float = 1.0,
                   camera: tuple[float, float, float] | None = None) -> _Layers:
    """Ray-cast the scene into premultiplied teeth and gum layers at output resolution.

    The alveolar band (smooth, large) is cast at reduced resolution; crowns, gum collars and
    papillae are supersampled and downsampled with ``INTER_AREA``; shading happens at output
    resolution from the averaged normals of each material. ``camera`` = (pixels per mm, x0, y0)
    overrides the automatic framing (x0, y0: camera-space mm at the image centre).
    """
    width, height = size
    v = _view(view, photo)
    if not photo or view in ("upper", "lower"):
        # Occlusal views see steep crown surfaces (incisal edges, canine slopes): a little more ambient.
        style = replace(style, key=v.key, ambient=style.ambient + (0.06 if view in ("upper", "lower") else 0.0))
    centre, (lx, ly, hx, hy) = _framing(view, photo)
    bw, bh = hx - lx, hy - ly
    scale = min(width * (1 - 2 * v.margin) / bw, height * (1 - 2 * v.margin) / bh) * zoom
    x0 = 0.5 * (lx + hx)
    y0 = 0.5 * (ly + hy)
    if camera is not None:
        scale, x0, y0 = camera
    prims, _ = _scene(case, progress, v.arches)
    cam = _to_camera(prims, v, np.array(centre))
    n_out = width * height
    f32 = np.float32

    # 1. Alveolar band at (up to) half resolution, normals blended into one soft surface.
    gf = 1.0 if max(width, height) <= 800 else 0.5
    gw, gh = max(round(width * gf), 8), max(round(height * gf), 8)
    gscale = scale * gw / width
    g = _Buffers(gw, gh)
    _cast([p for p in cam if p.coarse], (gscale, x0, y0), g)
    ghit = (g.mat > 0).reshape(gh, gw).astype(f32)
    gn = _blur_normals(tuple(a.reshape(gh, gw) * ghit for a in (g.nx, g.ny, g.nz)), ghit, gscale, 1.7)
    (bnx, bny, bnz, bhf), balpha = _soft_upsample([*gn, g.h.reshape(gh, gw)], ghit, width, height)

    # 2. Crowns, collars and papillae supersampled, depth-tested against the band.
    ss = _internal_scale(width, height)
    iw, ih = round(width * ss), round(height * ss)
    with _workspace(iw * ih) as ws:
        all_n, tooth_n, cov_t, cov_f, z_f, ids = _fine_pass([p for p in cam if not p.coarse], (scale, x0, y0),
                                                             (width, height, iw, ih), (g, balpha), ws)

    # 3. Ambient occlusion from the combined depth, at the band's resolution.
    zf_s = cv2.resize(z_f, (gw, gh), interpolation=cv2.INTER_AREA)
    cf_s = cv2.resize(cov_f, (gw, gh), interpolation=cv2.INTER_AREA)
    zg = np.where(g.mat > 0, g.z, f32(np.nan)).reshape(gh, gw)
    zc = np.where(cf_s > 0.25, zf_s / np.maximum(cf_s, 1e-3), zg)
    occ = _ambient_occlusion(zc, gscale, 1.5)
    occ = cv2.resize(occ, (width, height), interpolation=cv2.INTER_LINEAR).reshape(-1)

    # 4. Teeth shading at output resolution (coverage and occlusion folded in).
    teeth = np.zeros((n_out, 3), f32)
    tidx = np.flatnonzero(cov_t > 1e-3)
    ct = cov_t.reshape(-1)[tidx]
    tn = [a.reshape(-1)[tidx] for a in tooth_n]
    inv = tn[0] * tn[0] + tn[1] * tn[1] + tn[2] * tn[2]
    inv += 1e-12
    inv = 1.0 / np.sqrt(inv)
    weight = ct * (1.0 - style.ao * occ[tidx])
    teeth[tidx] = _shade_teeth((tn[0] * inv, tn[1] * inv, tn[2] * inv), tn[3] / ct, ids.reshape(-1)[tidx],
                               style, case) * weight[:, None]

    # 5. Gum: papillae (fine) and collars + band (coarse) shaded together with blended normals.
    wb = np.clip(1.0 - cov_f, 0.0, 1.0) * balpha
    gsum = [a - b for a, b in zip(all_n, tooth_n, strict=True)]
    for k, bchan in enumerate((bnx, bny, bnz, bhf)):
        gsum[k] += wb * bchan
    cov_g = np.clip(cov_f - cov_t, 0.0, 1.0) + wb
    gum = np.zeros((n_out, 3), f32)
    gidx = np.flatnonzero(cov_g.reshape(-1) > 1e-3)
    cg = cov_g.reshape(-1)[gidx]
    nx, ny, nz, hf = (a.reshape(-1)[gidx] for a in gsum)
    hf /= cg
    inv = nx * nx + ny * ny + nz * nz
    inv += 1e-12
    inv = 1.0 / np.sqrt(inv)
    if style.gum_fade is not None:
        cg *= _smoothstep(style.gum_fade[0], style.gum_fade[1], hf)
        cov_g.reshape(-1)[gidx] = cg
    weight = cg * (1.0 - style.ao * style.gum_ao * occ[gidx])
    gum[gidx] = _shade_gum((nx * inv, ny * inv, nz * inv), hf, style) * weight[:, None]
    return _Layers(teeth.reshape(height, width, 3), cov_t, gum.reshape(height, width, 3),
                   np.clip(cov_g, 0.0, 1.0), scale, (scale, x0, y0))


@lru_cache(maxsize=8)
def _model_background_cached(width: int, height: int) -> np.ndarray:
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    top = np.array([0.74, 0.78, 0.84], np.float32)
    bottom = np.array([0.36, 0.41, 0.48], np.float32)
    img = top + (bottom - top) * yy
    img = img * (1.0 - 0.16 * xx * xx)
    img.setflags(write=False)
    return img


def _model_background(width: int, height: int) -> np.ndarray:
    """Blue-grey studio gradient (read-only, cached per size)."""
    return _model_background_cached(width, height)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    out = np.empty(img.shape, np.uint8)
    np.clip(img * 255.0 + 0.5, 0, 255, out=img)
    out[...] = img
    return out


# --------------------------------------------------------------------------------------------
# Clinical photos
# --------------------------------------------------------------------------------------------

def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) * (1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _world_to_camera(view: str, photo: bool, point) -> np.ndarray:
    """Camera-space position (mm, with the per-object perspective) of a world point."""
    v = _view(view, photo)
    centre, _ = _framing(view, photo)
    c = v.basis @ (np.asarray(point, dtype=float) - np.asarray(centre))
    k = v.distance / max(v.distance - c[2], 1.0)
    return np.array([k * c[0], k * c[1], c[2]])


def _noise_field(rng: np.random.Generator, width: int, height: int, cell: float, aspect: float = 1.0) -> np.ndarray:
    """Smooth value noise (about -1..1) with features of ``cell`` pixels (stretched vertically by ``aspect``)."""
    nw = max(int(width / cell) + 2, 2)
    nh = max(int(height / (cell * aspect)) + 2, 2)
    small = rng.standard_normal((nh, nw)).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _teeth_layers(case: ArchCase, progress: float, view: str, width: int, height: int, *,
                  camera: tuple[float, float, float] | None = None, zoom: float = 1.0) -> _Layers:
    """Teeth and gums in the photo style (the predicted 'after' is also a little whiter)."""
    if progress > 0.0:
        case = replace(case, shade=float(case.shade) * (1.0 - 0.35 * progress))
    return _render_layers(case, progress, view, (width, height), _PHOTO_STYLE, photo=True, camera=camera, zoom=zoom)


def _oral_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Dark, warm mouth interior behind the teeth."""
    yy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    r = np.sqrt(0.8 * xx * xx + yy * yy)
    glow = np.clip(1.0 - r, 0.0, 1.0)
    tex = 1.0 + 0.05 * _noise_field(rng, width, height, 50.0)
    base = np.array([0.10, 0.025, 0.03], np.float32) + np.array([0.16, 0.05, 0.05], np.float32) * glow[..., None]
    return base * tex[..., None]


def _vestibule(width: int, height: int, rng: np.random.Generator, occlusal_row: float) -> np.ndarray:
    """Intraoral background: red mucosa above and below, the dark mouth between the arches and at the sides."""
    ys = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    dark = np.exp(-((ys - occlusal_row) / (0.11 * height)) ** 2) + _smoothstep(0.75, 1.0, np.abs(xs))
    dark = np.clip(dark, 0.0, 1.0)
    mucosa = np.array([0.66, 0.24, 0.26], np.float32) * (1.0 + 0.03 * _noise_field(rng, width, height, 45.0))[..., None]
    oral = _oral_background(width, height, rng)
    return mucosa * (1.0 - dark)[..., None] + oral * dark[..., None]


def _skin(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    tone = np.array([0.87, 0.66, 0.55], np.float32)
    light = 1.02 - 0.20 * xx * xx - 0.12 * yy
    tex = 1.0 + 0.025 * _noise_field(rng, width, height, 3.0) + 0.03 * _noise_field(rng, width, height, 60.0)
    return tone * (light * tex)[..., None]


def _lip_colour(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array([0.74, 0.36, 0.38], np.float32)
    streak = _noise_field(rng, width, height, max(width / 220.0, 2.0), aspect=6.0)
    return base * (1.0 + 0.05 * streak)[..., None]


def _photo_smile(case: ArchCase, progress: float, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Lower-face close-up: skin, lips in a smile, the upper front teeth in between."""
    cx, yc = width / 2.0, 0.57 * height
    half_w = 0.29 * width
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    t = (xs - cx) / half_w
    env = np.clip(1.0 - t * t, 0.0, 1.0)
    env_l = np.clip(1.0 - (t / 1.14) ** 2, 0.0, 1.0)
    y_mid = yc - 0.045 * height * t * t
    y_top = y_mid - 0.050 * height * env ** 0.7
    y_bot = y_mid + 0.080 * height * env ** 0.9
    bow = 0.013 * height * np.exp(-(t / 0.075) ** 2) - 0.009 * height * np.exp(-((np.abs(t) - 0.17) / 0.09) ** 2)
    y_ul = y_top - 0.085 * height * (1.0 - 0.45 * t * t) * env_l ** 0.5 + bow * env_l
    y_ll = y_bot + 0.115 * height * env_l ** 0.6
    fade = _smoothstep(0.0, 0.04, env_l)
    # Coverage masks with one-pixel anti-aliasing.
    a_open = np.clip(ys - y_top, 0.0, 1.0) * np.clip(y_bot - ys, 0.0, 1.0)
    a_upper = np.clip(ys - y_ul + 0.5, 0.0, 1.0) * np.clip(y_top - ys + 0.5, 0.0, 1.0) * fade
    a_lower = np.clip(ys - y_bot + 0.5, 0.0, 1.0) * np.clip(y_ll - ys + 0.5, 0.0, 1.0) * fade

    img = _skin(width, height, rng)
    ax = np.abs(xs - cx)
    # Philtrum, nostril shadows at the top edge, nasolabial folds, the mentolabial sulcus.
    phil = np.exp(-((ax / (0.03 * width)) ** 2)) * _smoothstep(0.0, 0.25 * height, float(y_ul.min()) - ys)
    shade = 1.0 + 0.05 * phil - 0.05 * np.exp(-(((ax - 0.035 * width) / (0.012 * width)) ** 2)) \
        * _smoothstep(0.0, 0.2 * height, float(y_ul.min()) - ys)
    nostril = np.exp(-(((ax - 0.075 * width) / (0.045 * width)) ** 2) - ((ys - 0.015 * height) / (0.035 * height)) ** 2)
    shade *= 1.0 - 0.45 * nostril
    shade *= 1.0 - 0.10 * np.exp(-((ys - 0.10 * height) / (0.05 * height)) ** 2) * np.exp(-(ax / (0.2 * width)) ** 2)
    fold_x = 0.20 * width + 0.17 * width * np.clip(ys / yc, 0.0, 1.3) ** 1.6
    fold = np.exp(-((ax - fold_x) / (0.04 * width)) ** 2) * _smoothstep(1.25 * yc, 0.85 * yc, ys)
    shade *= 1.0 - 0.09 * fold
    shade *= 1.0 + 0.06 * np.exp(-((ax - fold_x - 0.08 * width) / (0.06 * width)) ** 2) \
        * _smoothstep(yc, 0.8 * yc, ys)
    sulcus = np.exp(-(((ys - (y_ll + 0.06 * height)) / (0.035 * height)) ** 2)) * env_l ** 0.3
    shade *= 1.0 - 0.18 * sulcus
    corner_y = yc - 0.05 * height
    corner = np.exp(-((ax - 1.12 * half_w) / (0.035 * width)) ** 2 - ((ys - corner_y) / (0.05 * height)) ** 2)
    shade *= 1.0 - 0.28 * corner
    img *= shade[..., None]

    # Lips: tube-like shading across their thickness, a moist highlight on the lower lip.
    lip = _lip_colour(width, height, rng)
    u_up = np.clip((ys - y_ul) / np.maximum(y_top - y_ul, 1.0), 0.0, 1.0)
    u_lo = np.clip((ys - y_bot) / np.maximum(y_ll - y_bot, 1.0), 0.0, 1.0)
    up_shade = 0.60 + 0.32 * np.sin(np.pi * np.clip(u_up * 0.9 + 0.05, 0, 1)) - 0.22 * u_up ** 3
    lo_shade = 0.58 + 0.44 * np.sin(np.pi * np.clip(u_lo * 0.85 + 0.1, 0, 1)) - 0.28 * u_lo ** 2
    gloss = np.exp(-((u_lo - 0.33) / 0.10) ** 2) * np.exp(-(t / 0.45) ** 2) * 0.26
    gloss_up = np.exp(-((u_up - 0.55) / 0.12) ** 2) * np.exp(-(t / 0.30) ** 2) * 0.10
    lips_rgb = lip * (a_upper * up_shade + a_lower * lo_shade)[..., None] \
        + ((a_lower * gloss + a_upper * gloss_up) * 0.9)[..., None]
    a_lips = np.clip(a_upper + a_lower, 0.0, 1.0)
    img = img * (1.0 - a_lips)[..., None] + lips_rgb

    # Teeth seen through the smile, rendered only inside the opening's bounding box.
    scale = 2.0 * half_w / 47.0
    edge = _world_to_camera("front", True, (0.0, 0.0, _TIP_Z[0, 0]))
    row = float(y_bot[int(cx)]) - 0.02 * height
    x0 = float(edge[0])
    y0 = float(edge[1] - (height / 2 - row - 0.5) / scale)
    c0 = max(int(cx - half_w) - 4, 0)
    c1 = min(int(cx + half_w) + 5, width)
    r0 = max(int(float(y_top.min())) - 4, 0)
    r1 = min(int(float(y_bot.max())) + 5, height)
    cw, ch = max(c1 - c0, _MIN_SIDE), max(r1 - r0, 16)
    c1, r1 = min(c0 + cw, width), min(r0 + ch, height)
    cw, ch = c1 - c0, r1 - r0
    cam = (scale, x0 + (c0 + cw / 2 - width / 2) / scale, y0 + (height / 2 - r0 - ch / 2) / scale)
    layers = _teeth_layers(case, progress, "front", cw, ch, camera=cam)
    tc = t[c0:c1]
    inside = _oral_background(cw, ch, rng)
    corridor = 1.0 - 0.8 * _smoothstep(0.5, 1.0, np.abs(tc))
    inside *= corridor[None, :, None]
    mouth = layers.composite(inside)
    mouth *= (corridor[None, :, None] ** 0.7)
    # The upper lip shades the gums and teeth right below it.
    ysc = ys[r0:r1]
    mouth *= (1.0 - 0.55 * np.exp(-np.clip(ysc - y_top[c0:c1], 0.0, None) / (0.03 * height)))[..., None]
    ao = a_open[r0:r1, c0:c1, None]
    img[r0:r1, c0:c1] = img[r0:r1, c0:c1] * (1.0 - ao) + mouth * ao
    return img


def _retracted(img: np.ndarray, width: int, height: int, rng: np.random.Generator, *, centre: tuple[float, float],
               axes: tuple[float, float], retractors: tuple[int, ...]) -> np.ndarray:
    """Frame an intraoral image with stretched lips, cheek-retractor plastic and skin outside."""
    # Everything here is smooth: build the frame at half resolution, then upsample.
    hw, hh = max(width // 2, 8), max(height // 2, 8)
    k = hw / width
    rgb, alpha, shadow = _retractor_frame(hw, hh, rng, centre=(centre[0] * k, centre[1] * k),
                                          axes=(axes[0] * k, axes[1] * k), retractors=retractors)
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    shadow = cv2.resize(shadow, (width, height), interpolation=cv2.INTER_LINEAR)
    return img * (shadow * (1.0 - alpha))[..., None] + rgb


def _retractor_frame(width: int, height: int, rng: np.random.Generator, *, centre: tuple[float, float],
                     axes: tuple[float, float], retractors: tuple[int, ...]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premultiplied frame colour, its coverage, and the lips' shadow inside the opening."""
    cx, cy = centre
    a, b = axes
    xs = (np.arange(width, dtype=np.float32) + 0.5 - cx) / a
    ys = ((np.arange(height, dtype=np.float32) + 0.5 - cy) / b)[:, None]
    ax2, ay2 = xs * xs, ys * ys
    d = np.sqrt(np.sqrt(ax2 * ax2 + ay2 * ay2))   # superellipse (L4 norm): 1 on the opening's edge
    gy, gx = np.gradient(d)
    dist = (d - 1.0) / np.maximum(np.sqrt(gx * gx + gy * gy), 1e-6)   # pixels outside the opening
    lip_w = 0.075 * height * (1.0 - 0.45 * np.clip(np.abs(xs), 0, 1) ** 4)
    u = dist / lip_w
    a_open = np.clip(0.5 - dist, 0.0, 1.0)
    a_lip = np.clip(dist + 0.5, 0.0, 1.0) * np.clip(lip_w - dist + 0.5, 0.0, 1.0)
    skin = _skin(width, height, rng) * 0.92
    lip = _lip_colour(width, height, rng) * np.array([1.0, 0.95, 0.98], np.float32)
    lip_shade = 0.55 + 0.45 * np.sqrt(np.maximum(np.sin(np.pi * np.clip(u, 0.0, 1.0)), 0.0))
    gloss = 0.22 * np.exp(-((u - 0.35) / 0.12) ** 2)
    lips = lip * lip_shade[..., None] + gloss[..., None]
    out = skin * (1.0 - a_lip)[..., None] + lips * a_lip[..., None]
    # Clear plastic retractors hooked into the mouth corners.
    for side in retractors:
        band = np.exp(-(((ys * b) / (0.15 * height)) ** 2)) * _smoothstep(-0.05 * width, 0.02 * width,
                                                                          side * (xs * a - 0.98 * a))
        hook = np.exp(-((dist - 0.45 * lip_w) / (0.35 * lip_w)) ** 2) \
            * _smoothstep(0.55, 0.85, side * xs) * np.exp(-((ys * b) / (0.35 * height)) ** 2)
        plastic = np.clip(band + hook, 0.0, 1.0) * 0.42 * (1.0 - a_open)
        shine = np.exp(-(((ys * b) - 0.06 * height) / (0.012 * height)) ** 2) * band * 0.5 * (1.0 - a_open)
        tint = np.array([0.86, 0.90, 0.93], np.float32)
        out = out * (1.0 - plastic)[..., None] + tint * plastic[..., None] + shine[..., None]
    alpha = 1.0 - a_open
    shadow = 1.0 - 0.55 * np.exp(np.minimum(dist, 0.0) / (0.03 * height))
    return out * alpha[..., None], alpha, shadow


def _palate(width: int, height: int, rng: np.random.Generator, centre: tuple[float, float], upper: bool) -> np.ndarray:
    """Palate (upper) or tongue (lower) filling an occlusal mirror photo behind the arch."""
    cx, cy = centre
    xs = (np.arange(width, dtype=np.float32) + 0.5 - cx) / width
    ys = ((np.arange(height, dtype=np.float32) + 0.5 - cy) / height)[:, None]
    forward = -ys if upper else ys          # toward the incisors
    r = np.sqrt(xs * xs * 1.6 + ys * ys)
    if upper:
        base = np.array([0.80, 0.46, 0.47], np.float32)
        rugae = np.zeros((height, width), np.float32)
        for k in range(4):
            y0 = 0.29 - 0.045 * k
            wave = 0.008 * np.sin(np.abs(xs) * 55.0 + 1.7 * k) - 0.25 * xs * xs
            rugae += np.exp(-((forward - y0 - wave) / 0.009) ** 2) * np.exp(-(xs / (0.07 + 0.015 * k)) ** 2)
        raphe = np.exp(-(xs / 0.006) ** 2) * _smoothstep(-0.35, 0.1, forward) * 0.6
        light = 1.05 - 0.50 * _smoothstep(-0.05, -0.45, forward) + 0.16 * rugae - 0.10 * raphe
    else:
        base = np.array([0.78, 0.38, 0.41], np.float32)
        groove = np.exp(-(xs / 0.012) ** 2) * _smoothstep(0.28, 0.05, forward) * _smoothstep(-0.40, -0.15, forward)
        light = 1.0 - 0.45 * _smoothstep(0.05, -0.40, forward) - 0.18 * groove
        light = light + 0.03 * _noise_field(rng, width, height, 5.0)
    light = light * (1.0 - 0.35 * np.clip(r - 0.35, 0.0, 1.0))
    tex = 1.0 + 0.02 * _noise_field(rng, width, height, 60.0)
    return base * (light * tex)[..., None]


def _photo_intraoral(case: ArchCase, kind: str, progress: float, size: tuple[int, int],
                     rng: np.random.Generator) -> np.ndarray:
    """Intraoral photo: retracted frontal/buccal views, or an occlusal mirror view with palate or tongue."""
    width, height = size
    view = kind.split("_", 1)[1]
    if view in ("upper", "lower"):
        upper = view == "upper"
        layers = _teeth_layers(case, progress, view, width, height, zoom=0.92)
        centre = (width / 2.0, height * (0.52 if upper else 0.48))
        bg = _palate(width, height, rng, centre, upper)
        img = layers.composite(bg)
        # The retracted lip along the incisor edge of the mirror image, dark mirror rim around.
        xs = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (0.5 * width)
        ys = (np.arange(height, dtype=np.float32) + 0.5)[:, None] / height
        edge = (ys if upper else 1.0 - ys) - (0.035 + 0.05 * xs * xs)
        a_lip = np.clip(-edge * height + 0.5, 0.0, 1.0)
        lip = _lip_colour(width, height, rng) * (0.8 + 0.2 * _smoothstep(-0.06, 0.0, edge))[..., None]
        img = img * (1.0 - a_lip)[..., None] + lip * a_lip[..., None]
        rr = np.sqrt((xs * 0.93) ** 2 + ((ys - 0.5) * 2.0 * 0.95) ** 2)
        img *= (1.0 - 0.6 * _smoothstep(0.95, 1.15, rr))[..., None]
        return img
    layers = _teeth_layers(case, progress, view, width, height, zoom=1.06)
    scale, _, y0 = layers.camera
    occ_row = height / 2 - (float(_world_to_camera(view, True, (0.0, 0.0, 0.0))[1]) - y0) * scale
    img = layers.composite(_vestibule(width, height, rng, occ_row))
    if view == "front":
        return _retracted(img, width, height, rng, centre=(width / 2.0, height * 0.5),
                          axes=(0.55 * width, 0.47 * height), retractors=(-1, 1))
    # Buccal photos: the cheek is pulled back on the posterior side (screen right for "left").
    back = 1 if view == "left" else -1
    return _retracted(img, width, height, rng, centre=(width / 2.0 + back * 0.06 * width, height * 0.5),
                      axes=(0.58 * width, 0.46 * height), retractors=(back,))


def _photo_finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera look: slight softness, warm white balance, vignette, sensor noise."""
    h, w = img.shape[:2]
    img = cv2.GaussianBlur(img, (0, 0), max(0.45 * min(w, h) / 960.0, 0.3))
    yy = np.linspace(-1.0, 1.0, 64, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, 64, dtype=np.float32)[None, :]
    vignette = (1.0 - 0.22 * (xx * xx + yy * yy) ** 1.3)[..., None] * np.array([1.04, 1.0, 0.93], np.float32)
    img *= cv2.resize(vignette, (w, h), interpolation=cv2.INTER_LINEAR)
    # Sensor noise from a tiled block of Gaussian samples (cheap, deterministic).
    th, tw = min(h, 192), min(w, 256)
    tile = rng.standard_normal((th, tw, 3), dtype=np.float32) * np.float32(0.004)
    tile += rng.standard_normal((th, tw, 1), dtype=np.float32) * np.float32(0.012)
    img += np.tile(tile, (-(-h // th), -(-w // tw), 1))[:h, :w]
    # Gentle filmic contrast.
    np.clip(img, 0.0, 1.2, out=img)
    return img * (1.08 - 0.08 * img)


def _render_size(width: int, height: int) -> tuple[int, int]:
    """Resolution actually rendered: the output size, or a scaled-down size above the 4K budget."""
    if width * height <= _MAX_RENDER_PIXELS:
        return width, height
    f = math.sqrt(_MAX_RENDER_PIXELS / (width * height))
    return max(round(width * f), _MIN_SIDE // 2), max(round(height * f), _MIN_SIDE // 2)


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)


def _progress(stage: int, stage_count: int) -> float:
    return 0.0 if stage_count == 1 else stage / (stage_count - 1)


def render_stage(case: ArchCase, stage: int, stage_count: int, view: str,
                 size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """RGB uint8 array of shape (height, width, 3) for `stage` in 0..stage_count-1 (size is (width, height)).

    A treatment-planning style render of the dental model (both arches in occlusion for the
    ``front``/``left``/``right`` views, one arch seen from below/above for ``upper``/``lower``).
    Stage 0 shows the case's malocclusion, stage ``stage_count - 1`` the aligned arch; stages in
    between move the teeth smoothly. With ``stage_count == 1`` the only stage is the initial one.
    Raises ``ValueError`` for an unknown view, a stage out of range, ``stage_count < 1`` or a
    size side outside 64..7680.
    """
    _check_case(case)
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    for name, value in (("stage", stage), ("stage_count", stage_count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if stage_count < 1:
        raise ValueError(f"stage_count must be at least 1, got {stage_count}")
    if not 0 <= stage < stage_count:
        raise ValueError(f"stage {stage} out of range 0..{stage_count - 1}")
    width, height = _check_size(size)
    rw, rh = _render_size(width, height)
    layers = _render_layers(case, _progress(int(stage), int(stage_count)), view, (rw, rh), _MODEL_STYLE)
    img = layers.composite(_model_background(rw, rh))
    return _to_uint8(_fit(img, width, height))


def render_photo(case: ArchCase, kind: str, size: tuple[int, int] = (1280, 960), *,
                 progress: float = 0.0) -> np.ndarray:
    """A clinical *photo*-like image (not a model render) of the patient's teeth at treatment progress 0..1:
    warmer lighting, slight noise / vignette, wet-looking enamel highlights, darker oral background;
    'smile' = a lower-face close-up: skin-toned face region with lips framing the upper front teeth
    (a smile), 'intraoral_*' = the teeth with cheek retractor-like framing. progress=0 is the 'before' photo,
    progress=1 is a predicted 'after' smile (used for SMILE_DESIGN before/after pairs)."""
    _check_case(case)
    if kind not in PHOTO_KINDS:
        raise ValueError(f"unknown photo kind {kind!r}; expected one of {', '.join(PHOTO_KINDS)}")
    if isinstance(progress, bool) or not isinstance(progress, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress must be a number within 0..1, got {progress!r}")
    width, height = _check_size(size)
    progress = float(progress)
    rng = _rng(case.seed, 100 + PHOTO_KINDS.index(kind) * 1000 + round(progress * 999))
    rw, rh = _render_size(width, height)
    if kind == "smile":
        img = _photo_smile(case, progress, rw, rh, rng)
    else:
        img = _photo_intraoral(case, kind, progress, (rw, rh), rng)
    img = _photo_finish(_fit(img.astype(np.float32, copy=False), width, height), rng)
    return _to_uint8(img)
