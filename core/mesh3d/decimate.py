"""Decimating staged arches to a browser-friendly size while keeping stage-to-stage correspondence.

Aligner software usually writes every stage of an arch with the same triangles, only moved (same
topology). STL repeats vertices per triangle and the parser merges them in coordinate order, so
meshes are first renumbered by first use (`canonical`): two stages then share topology exactly when
their triangle arrays are equal. Such a group is decimated once (VTK's quadric decimation on the
reference stage) with every stage's positions carried along as point data, so all stages come out
with the same triangles and vertex i of stage k is vertex i of stage 0, moved: movement is then a
plain per-vertex distance. A stage with its own topology is decimated alone and its movement is
the distance of each vertex to the reference stage's full-resolution surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from core.errors import ValidationError
from core.importing.meshes import Mesh

#: Triangles per arch and stage sent to the browser.
TARGET_TRIANGLES: Final = 40_000
#: Positions of same-topology stages held at once while decimating (the rest waits for the next round).
GROUP_BUDGET_BYTES: Final = 128 * 2**20


def canonical(mesh: Mesh) -> Mesh:
    """The same surface with vertices renumbered in order of first use by the triangles (unused ones dropped)."""
    flat = mesh.faces.ravel()
    used, first = np.unique(flat, return_index=True)
    order = used[np.argsort(first, kind="stable")]
    remap = np.empty(mesh.vertex_count, np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    return Mesh(np.ascontiguousarray(mesh.vertices[order]), np.ascontiguousarray(remap[mesh.faces]))


def same_topology(a: Mesh, b: Mesh) -> bool:
    """Whether two canonical meshes have identical triangles (so vertex i of one is vertex i of the other)."""
    return a.vertex_count == b.vertex_count and np.array_equal(a.faces, b.faces)


@dataclass(frozen=True)
class ArchStage:
    """One arch at one stage, decimated: float32 vertices (n, 3) mm, int32 faces (m, 3), movement (n,) mm
    since the reference stage, and whether it shares the reference's triangles (movement vertex to vertex)."""

    vertices: np.ndarray = field(repr=False)
    faces: np.ndarray = field(repr=False)
    movement: np.ndarray = field(repr=False)
    shared: bool

    @property
    def triangle_count(self) -> int:
        return len(self.faces)


def decimate(mesh: Mesh, target: int = TARGET_TRIANGLES) -> Mesh:
    """`mesh` with at most `target` triangles (quadric decimation; returned as is when already small enough)."""
    points, faces, _ = _quadric(mesh, {}, target)
    return Mesh(points, faces)


def decimate_arch(load: Callable[[int], Mesh], count: int, *, target: int = TARGET_TRIANGLES,
                  budget_bytes: int = GROUP_BUDGET_BYTES,
                  progress: Callable[[int], None] | None = None) -> list[ArchStage]:
    """Decimate `count` stages of one arch; `load(i)` reads stage i (0 is the reference).

    Streams: only the reference's full-resolution mesh and the positions of the same-topology stages
    of the current round (at most `budget_bytes`) are held in memory. `progress(i)` is called after
    stage i was read.
    """
    if count < 1:
        raise ValidationError("An arch needs at least one stage.")
    reference = canonical(load(0))
    results: list[ArchStage | None] = [None] * count
    pending: list[tuple[int, np.ndarray]] = [(0, reference.vertices)]
    shared_faces: list[np.ndarray] = []

    def flush() -> None:
        positions = {"ref": reference.vertices, **{f"s{i}": vertices for i, vertices in pending}}
        _, faces, mapped = _quadric(reference, positions, target)
        if shared_faces and not np.array_equal(faces, shared_faces[0]):
            raise RuntimeError("quadric decimation was not deterministic across rounds")  # pragma: no cover
        shared_faces[:1] = [faces]
        start = mapped["ref"]
        for i, _ in pending:
            moved = mapped[f"s{i}"]
            results[i] = ArchStage(moved, faces, np.linalg.norm(moved - start, axis=1).astype(np.float32), True)
        pending.clear()

    if progress:
        progress(0)
    for i in range(1, count):
        mesh = canonical(load(i))
        if same_topology(reference, mesh):
            pending.append((i, mesh.vertices))
            if sum(v.nbytes for _, v in pending) >= budget_bytes:
                flush()
        else:
            small = decimate(mesh, target)
            results[i] = ArchStage(small.vertices, small.faces, surface_distances(small.vertices, reference), False)
        if progress:
            progress(i)
    if pending:
        flush()
    return [r for r in results if r is not None]


def surface_distances(points: np.ndarray, surface: Mesh) -> np.ndarray:
    """Distance (mm, float32) from each point to the nearest point of `surface` (not just its vertices)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    from vtkmodules.vtkFiltersCore import vtkImplicitPolyDataDistance

    implicit = vtkImplicitPolyDataDistance()
    implicit.SetInput(_polydata(surface.vertices, surface.faces))
    values = vtkDoubleArray()
    values.SetNumberOfTuples(len(points))
    implicit.FunctionValue(numpy_to_vtk(np.ascontiguousarray(points, np.float64), deep=True), values)
    return np.abs(vtk_to_numpy(values)).astype(np.float32)


def _polydata(vertices: np.ndarray, faces: np.ndarray) -> Any:
    import pyvista

    return pyvista.PolyData.from_regular_faces(np.ascontiguousarray(vertices, np.float32),
                                               np.ascontiguousarray(faces, np.int64))


def _quadric(mesh: Mesh, attributes: dict[str, np.ndarray],
             target: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(points, faces, attributes) of `mesh` decimated to ≤ `target` triangles; each (n, 3) attribute array
    (positions of other stages) is carried to the output vertices by the decimation's own interpolation."""
    if isinstance(target, bool) or not isinstance(target, int) or target < 4:
        raise ValidationError(f"The triangle target must be an integer ≥ 4, got {target!r}.")
    if mesh.triangle_count <= target:
        return (np.array(mesh.vertices), np.array(mesh.faces),
                {name: np.asarray(values, np.float32) for name, values in attributes.items()})
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkFiltersCore import vtkQuadricDecimation

    poly = _polydata(mesh.vertices, mesh.faces)
    for name, values in attributes.items():
        array = numpy_to_vtk(np.ascontiguousarray(values, np.float32), deep=True)
        array.SetName(name)
        poly.GetPointData().AddArray(array)
    goal = target
    for _ in range(4):  # the filter lands on the target; tighten in the rare case it stops short
        decimator = vtkQuadricDecimation()
        decimator.SetInputData(poly)
        decimator.SetTargetReduction(1.0 - goal / mesh.triangle_count)
        decimator.VolumePreservationOn()  # keeps thin incisal edges from shrinking
        decimator.MapPointDataOn()
        decimator.Update()
        out = decimator.GetOutput()
        if out.GetNumberOfCells() <= target:
            break
        goal = int(goal * 0.97)
    else:  # pragma: no cover - VTK always reaches a quadric target on triangle meshes
        raise ValidationError(f"The model could not be reduced to {target:,} triangles.")
    faces = vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3).astype(np.int32)
    points = vtk_to_numpy(out.GetPoints().GetData()).astype(np.float32)
    mapped = {name: vtk_to_numpy(out.GetPointData().GetArray(name)).astype(np.float32) for name in attributes}
    return points, faces, mapped
