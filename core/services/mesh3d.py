"""3D models of simulation versions: preparing them (a job), a stage as a Plotly figure, movement-map
images for exports, and SUPERIMPOSITION versions made from the movement map.

Where the models come from: a staged STL/PLY/OBJ import keeps every file as a SOURCE asset of its
version (tags "source", "mesh"; details stage and arch); an iTero import keeps the jaw scans as SCAN
assets of the version's scan (details jaw). The preparation job decimates them into MESH assets
(`core.mesh3d`) and records a `MeshSet` whose id is the version's id. The page never reads the
full-resolution files.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock
from typing import Any

import numpy as np
from bson import ObjectId

from core.domain import (
    CLINICAL_VIEWS,
    AssetKind,
    FrameRange,
    ImagingAsset,
    ImportSource,
    MeshSet,
    MeshStage,
    Permission,
    RenditionState,
    SimulationType,
    TreatmentSimulation,
)
from core.errors import ConflictError, NotFoundError, ServiceUnavailableError, StudioError, ValidationError
from core.importing.limits import DEFAULT_LIMITS, ImportLimits
from core.infra import Infrastructure
from core.mesh3d import movement, pack
from core.mesh3d.figure import Axes, stage_figure
from core.permissions import Actor
from core.queueing import enqueue, job_state
from core.services.base import ServiceBase
from core.services.simulations import NewFrame, SimulationService
from core.stages import stage_of

log = logging.getLogger(__name__)
Progress = Callable[[int, str], None]
ARCHES = ("upper", "lower")
MESH_TAG = "mesh"
#: The translucent final-stage overlay needs far less detail than the stage itself.
GHOST_TRIANGLES = 10_000
#: Frames of SUPERIMPOSITION versions are rendered at this size.
FRAME_SIZE = (1920, 1080)
_CACHE_ENTRIES = 96
_LIVE = (RenditionState.QUEUED, RenditionState.RUNNING)
#: A preparation whose worker keeps dying (e.g. killed for memory) is given up after this many jobs.
MAX_ATTEMPTS = 3


def prepare_job_id(simulation_id: str) -> str:
    return f"meshes-{simulation_id}"


def superimposition_job_id(simulation_id: str, new_id: str) -> str:
    return f"superimpose-{simulation_id}-{new_id}"


def _derived_oid(*parts: str) -> ObjectId:
    """A deterministic ObjectId, so a retried job rewrites the same asset records instead of adding more."""
    return ObjectId(hashlib.sha256("/".join(parts).encode()).digest()[:12])


def _no_progress(_percent: int, _step: str) -> None:
    return None


@dataclass(frozen=True)
class ModelView:
    """What the 3D viewer shows: the stage at `position` (0 = first) from a clinical camera preset,
    plain or coloured by movement, optionally with the final stage as a translucent ghost."""

    position: int = 0
    view: str = "front"
    movement: bool = False
    ghost: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.position, bool) or not isinstance(self.position, int) or self.position < 0:
            raise ValidationError(f"Stage position must be a whole number ≥ 0, got {self.position!r}.")
        if self.view not in CLINICAL_VIEWS:
            raise ValidationError(f"Unknown view {self.view!r}; choose one of {', '.join(CLINICAL_VIEWS)}.")


@dataclass(frozen=True)
class StageModels:
    """One stage's decimated arches as stored, with its stage number and caption."""

    stage: int
    label: str
    meshes: dict[str, pack.PackedMesh]


class _PackedCache:
    """Decoded MESH assets by content hash (immutable content: nothing to invalidate)."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._items: OrderedDict[str, pack.PackedMesh] = OrderedDict()
        self._lock = Lock()

    def get(self, sha256: str, load: Callable[[], bytes]) -> pack.PackedMesh:
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return self._items[sha256]
        value = pack.decode(load())
        with self._lock:
            self._items[sha256] = value
            while len(self._items) > self._entries:
                self._items.popitem(last=False)
        return value


class Mesh3DService(ServiceBase):
    def __init__(self, infra: Infrastructure, simulations: SimulationService,
                 limits: ImportLimits = DEFAULT_LIMITS) -> None:
        self._infra = infra
        self._simulations = simulations
        self._limits = limits
        self._packed = _PackedCache(_CACHE_ENTRIES)

    # --- which versions have 3D models ---------------------------------------------------------------
    @staticmethod
    def offers_models(sim: TreatmentSimulation) -> bool:
        """Cheap check (no query): the version may have 3D models (staged import, iTero scan, movement map)."""
        return (sim.metadata.get("importSource") == ImportSource.STAGED_3D.value or bool(sim.scanId)
                or bool(sim.metadata.get("movementOf")))

    @staticmethod
    def _owner(sim: TreatmentSimulation) -> str:
        """The version whose models this one shows (a SUPERIMPOSITION version shows its source's)."""
        return str(sim.metadata.get("movementOf") or sim.id)

    def _sources(self, clinic_id: str, sim: TreatmentSimulation) -> dict[int, dict[str, ImagingAsset]]:
        """{stage: {arch: full-resolution model asset}} of a version (empty when it has none)."""
        stages: dict[int, dict[str, ImagingAsset]] = {}
        for asset in self._infra.assets.list_for_simulation(clinic_id, sim.id, kinds=[AssetKind.SOURCE]):
            arch, stage = asset.details.get("arch"), asset.details.get("stage")
            if MESH_TAG in asset.tags and arch in ARCHES and isinstance(stage, int):
                stages.setdefault(stage, {})[arch] = asset
        if not stages and sim.scanId:  # iTero: the jaw scans recorded with the version's scan
            scans = self._infra.assets.list_for_patient(clinic_id, sim.patientId, kinds=[AssetKind.SCAN])
            jaws = {a.details.get("jaw"): a for a in scans
                    if a.contentType == "model/stl" and a.details.get("scanId") == sim.scanId}
            if jaws := {arch: asset for arch, asset in jaws.items() if arch in ARCHES}:
                stages[0] = jaws
        return dict(sorted(stages.items()))

    # --- preparing (request, status, the job) ----------------------------------------------------------
    def request(self, clinic_id: str, simulation_id: str) -> MeshSet | None:
        """Record and queue the preparation of a version's models; None when it has no models.

        Idempotent: an existing set is returned as it is (a PENDING one is queued again).
        """
        sim = self._infra.simulations.get(clinic_id, simulation_id)
        existing = self._infra.mesh_sets.get(clinic_id, sim.id)
        if existing is None:
            if not self.offers_models(sim) or not self._sources(clinic_id, sim):
                return None
            existing = self._infra.mesh_sets.create(clinic_id, sim.id, patient_id=sim.patientId)
        if existing.state is RenditionState.PENDING:
            return self._enqueue_prepare(existing)
        return existing

    def _enqueue_prepare(self, record: MeshSet, *, fresh: bool = False) -> MeshSet:
        try:
            enqueue(self._infra.redis, "meshes", "core.jobs.prepare_meshes", record.clinicId, record.id,
                    job_id=prepare_job_id(record.id))
        except ServiceUnavailableError:
            log.warning("3D models of simulation %s left pending: Redis unreachable", record.id)
            return record
        self._infra.mesh_sets.mark_queued(record.clinicId, record.id, reset_attempts=fresh)
        return self._infra.mesh_sets.get(record.clinicId, record.id) or record

    def _orphaned(self, record: MeshSet) -> bool:
        """Whether a QUEUED/RUNNING preparation's job is gone or failed outside our own handling (a killed worker)."""
        return record.state in _LIVE and job_state(self._infra.redis, prepare_job_id(record.id)) in (
            None, RenditionState.FAILED)

    def _restart(self, record: MeshSet) -> MeshSet:
        """Queue an orphaned preparation again, or give up after MAX_ATTEMPTS with a reason."""
        if record.attempts >= MAX_ATTEMPTS:
            self._infra.mesh_sets.set_state(
                record.clinicId, record.id, RenditionState.FAILED, step="failed",
                error=f"The worker stopped {record.attempts} times while preparing the 3D view (it may have run out "
                      "of memory on very large models). Try again, or ask your administrator to check the workers.")
        else:
            self._infra.mesh_sets.set_state(record.clinicId, record.id, RenditionState.PENDING, step="queued again")
            self._enqueue_prepare(record)
        return self._infra.mesh_sets.get(record.clinicId, record.id) or record

    def status(self, actor: Actor, simulation_id: str) -> MeshSet | None:
        """The version's 3D models as they are now (asking for them when they were never made);
        None when the version has none. A job that died with its worker is queued again."""
        sim = self._simulations.get(actor, simulation_id)
        if not self.offers_models(sim):
            return None
        owner = self._owner(sim)
        record = self._infra.mesh_sets.get(actor.clinic_id, owner)
        if record is None or record.state is RenditionState.PENDING:
            return self.request(actor.clinic_id, owner)
        return self._restart(record) if self._orphaned(record) else record

    def retry(self, actor: Actor, simulation_id: str) -> MeshSet | None:
        """Prepare a version's models again after a failure."""
        actor.require(Permission.IMAGING_VIEW)
        sim = self._simulations.get(actor, simulation_id)
        owner = self._owner(sim)
        record = self._infra.mesh_sets.get(actor.clinic_id, owner)
        if record is not None and record.state is RenditionState.FAILED:
            return self._enqueue_prepare(record, fresh=True)
        return self.request(actor.clinic_id, owner)

    def reconcile(self, clinic_id: str) -> int:
        """Queue preparations left PENDING (Redis was down when the import finished) or whose job is gone
        (its worker was killed). Returns how many were queued."""
        queued = 0
        for record in self._infra.mesh_sets.in_states(clinic_id, (RenditionState.PENDING, *_LIVE)):
            if record.state is RenditionState.PENDING:
                queued += self._enqueue_prepare(record).state is RenditionState.QUEUED
            elif self._orphaned(record):
                queued += self._restart(record).state is RenditionState.QUEUED
        return queued

    def prepare(self, clinic_id: str, simulation_id: str, progress: Progress = _no_progress) -> MeshSet:
        """The job: decimate every stage of every arch, measure movement, store MESH assets (idempotent)."""
        from core.importing.meshes import anatomical_axes, load_mesh
        from core.mesh3d.decimate import ArchStage, decimate_arch

        record = self._infra.mesh_sets.get(clinic_id, simulation_id)
        if record is None:
            raise NotFoundError(f"No 3D model set for simulation {simulation_id}.")
        if record.state is RenditionState.READY:
            return record
        sim = self._infra.simulations.get(clinic_id, simulation_id)
        if not self._infra.mesh_sets.set_state(clinic_id, sim.id, RenditionState.RUNNING, progress=0,
                                               step="reading models", unless_ready=True):
            return self._infra.mesh_sets.get(clinic_id, sim.id) or record  # another preparation completed it
        last_report = 0.0

        def report(percent: int, step: str) -> None:
            nonlocal last_report
            progress(percent, step)
            if time.monotonic() - last_report >= 1.0 or percent >= 100:
                last_report = time.monotonic()
                self._infra.mesh_sets.report(clinic_id, sim.id, percent, step)

        try:
            sources = self._sources(clinic_id, sim)
            if not sources:
                raise ValidationError("This version has no 3D models to show (its model files were not kept).")
            stage_numbers = list(sources)
            total = sum(len(arches) for arches in sources.values())
            done = 0
            decimated: dict[str, dict[int, ArchStage]] = {}
            source_triangles: dict[str, int] = {}
            for arch in ARCHES:
                numbers = [s for s in stage_numbers if arch in sources[s]]
                if not numbers:
                    continue

                def load(i: int, arch: str = arch, numbers: list[int] = numbers) -> Any:
                    asset = sources[numbers[i]][arch]
                    mesh = load_mesh(self._infra.store.get(asset.sha256),
                                     name=f"The {arch} model of stage {numbers[i]}",
                                     max_triangles=self._limits.max_mesh_triangles)
                    source_triangles[arch] = max(source_triangles.get(arch, 0), mesh.triangle_count)
                    return mesh

                def step(_i: int, arch: str = arch) -> None:
                    nonlocal done
                    done += 1
                    report(round(85 * done / total), f"decimating the {arch} arch ({done} of {total} models)")

                stages = decimate_arch(load, len(numbers), progress=step)
                decimated[arch] = dict(zip(numbers, stages, strict=True))
            return self._store(clinic_id, sim, decimated, source_triangles=source_triangles,
                               axes_of=anatomical_axes, report=report)
        except StudioError as exc:  # the models themselves are unusable: say why; retrying would not help
            self._infra.mesh_sets.set_state(clinic_id, sim.id, RenditionState.FAILED, step="failed", error=str(exc),
                                            unless_ready=True)
            return self._infra.mesh_sets.get(clinic_id, sim.id) or record
        except Exception as exc:
            log.error("3D models of simulation %s failed (%s)", sim.id, type(exc).__name__)
            self._infra.mesh_sets.set_state(clinic_id, sim.id, RenditionState.FAILED, step="failed",
                                            error="Preparing the 3D view failed unexpectedly; try again.",
                                            unless_ready=True)
            raise

    def _store(self, clinic_id: str, sim: TreatmentSimulation, decimated: dict[str, dict[int, Any]], *,
               source_triangles: dict[str, int], axes_of: Callable[[list[Any]], Any], report: Progress) -> MeshSet:
        from core.importing.meshes import Mesh
        from core.mesh3d.decimate import decimate

        frame = pack.QuantFrame.covering([s.vertices for stages in decimated.values() for s in stages.values()])
        largest = max((float(s.movement.max()) for stages in decimated.values() for s in stages.values()),
                      default=0.0)
        first = {arch: next(iter(stages.values())) for arch, stages in decimated.items()}
        right, anterior, up = axes_of([Mesh(s.vertices, s.faces) for s in first.values()])
        docs: list[dict[str, Any]] = []
        stages: dict[int, dict[str, str]] = {}
        bounds: dict[str, tuple[int, ...]] = {}
        ghost: dict[str, str] = {}

        def mesh_document(packed: pack.PackedMesh, arch: str, label: str, key: str, *tags: str,
                          **details: Any) -> dict[str, Any]:
            blob = self._infra.store.put(pack.encode(packed))
            return self._infra.assets.new_document(
                clinic_id, patient_id=sim.patientId, kind=AssetKind.MESH, content_type=pack.CONTENT_TYPE,
                size=blob.size, sha256=blob.sha256, created_by=sim.createdBy, label=label, simulation_id=sim.id,
                tags=("mesh3d", arch, *tags), asset_id=_derived_oid(sim.id, key, arch),
                details={"arch": arch, "triangles": packed.triangle_count, "vertices": packed.vertex_count,
                         **details})

        count = sum(len(s) for s in decimated.values())
        stored = 0
        for arch, per_stage in decimated.items():
            for stage, decimated_stage in per_stage.items():
                packed = pack.PackedMesh.build(decimated_stage.vertices, decimated_stage.faces, frame,
                                               decimated_stage.movement)
                low, high = packed.quantized.min(axis=0), packed.quantized.max(axis=0)
                if arch in bounds:
                    low, high = np.minimum(low, bounds[arch][:3]), np.maximum(high, bounds[arch][3:])
                bounds[arch] = tuple(int(v) for v in (*low, *high))
                doc = mesh_document(packed, arch, f"3D {arch} arch · stage {stage}", f"mesh3d/{stage}", stage=stage,
                                    shared=bool(decimated_stage.shared))
                docs.append(doc)
                stages.setdefault(stage, {})[arch] = str(doc["_id"])
                stored += 1
                report(85 + round(14 * stored / count), f"storing 3D model {stored} of {count}")
            if len(per_stage) > 1:
                final = per_stage[max(per_stage)]
                light = decimate(Mesh(final.vertices, final.faces), GHOST_TRIANGLES)
                doc = mesh_document(pack.PackedMesh.build(light.vertices, light.faces, frame), arch,
                                    f"3D {arch} arch · final stage overlay", "mesh3d/ghost", "ghost",
                                    stage=max(per_stage))
                docs.append(doc)
                ghost[arch] = str(doc["_id"])
        self._infra.assets.upsert_many(clinic_id, docs)
        return self._infra.mesh_sets.complete(
            clinic_id, sim.id, stages=[MeshStage(s, arches) for s, arches in sorted(stages.items())],
            max_movement=round(largest, 4),
            shared=all(s.shared for per_stage in decimated.values() for s in per_stage.values()),
            triangles={arch: max(s.triangle_count for s in per_stage.values())
                       for arch, per_stage in decimated.items()},
            source_triangles=source_triangles,
            axes={"right": tuple(map(float, right)), "anterior": tuple(map(float, anterior)),
                  "up": tuple(map(float, up))}, bounds=bounds, ghost=ghost)

    # --- viewing ---------------------------------------------------------------------------------------
    def ready_set(self, actor: Actor, simulation_id: str) -> tuple[TreatmentSimulation, MeshSet]:
        """The version (permission and approval checked) and its prepared models."""
        sim = self._simulations.get(actor, simulation_id)
        record = self._infra.mesh_sets.get(actor.clinic_id, self._owner(sim)) if self.offers_models(sim) else None
        if record is None:
            raise NotFoundError("This version has no 3D models.")
        if record.state is not RenditionState.READY or not record.stages:
            raise ConflictError("The 3D view of this version is still being prepared.")
        return sim, record

    def stage_models(self, actor: Actor, simulation_id: str, position: int) -> StageModels:
        """The decimated arches of the stage at `position` (0 = first stage of the model set)."""
        _, record = self.ready_set(actor, simulation_id)
        return self._stage(actor.clinic_id, record, position)

    def _stage(self, clinic_id: str, record: MeshSet, position: int) -> StageModels:
        if not 0 <= position < len(record.stages):
            raise ValidationError(f"Stage position {position} does not exist; this model has positions "
                                  f"0–{len(record.stages) - 1}.")
        entry = record.stages[position]
        assets = self._infra.assets.get_many(clinic_id, set(entry.arches.values()))
        meshes = {arch: self._packed.get(assets[asset_id].sha256,
                                         lambda sha=assets[asset_id].sha256: self._infra.store.get(sha))
                  for arch, asset_id in entry.arches.items()}
        last = record.stages[-1].stage
        return StageModels(entry.stage, stage_of(entry.stage, last), meshes)

    def figure(self, actor: Actor, simulation_id: str, view: ModelView) -> tuple[Any, StageModels]:
        """The Plotly figure of a stage as `view` asks, and the stage it shows."""
        sim, record = self.ready_set(actor, simulation_id)
        shown = self._stage(actor.clinic_id, record, view.position)
        last = len(record.stages) - 1
        ghost = None
        if view.ghost and view.position != last:
            ghost = self._ghost(actor.clinic_id, record) or self._stage(actor.clinic_id, record, last).meshes
        vmax = movement.scale_max(record.maxMovement) if view.movement else None
        figure = stage_figure(shown.meshes, view=view.view, axes=self._axes(record), movement_max=vmax, ghost=ghost,
                              bounds=record.bounds, revision=f"mesh3d-{sim.id}")
        return figure, shown

    def _ghost(self, clinic_id: str, record: MeshSet) -> dict[str, pack.PackedMesh]:
        """The lighter final-stage models for the translucent overlay (empty for sets made without them)."""
        assets = self._infra.assets.get_many(clinic_id, set(record.ghost.values())) if record.ghost else {}
        return {arch: self._packed.get(assets[asset_id].sha256,
                                       lambda sha=assets[asset_id].sha256: self._infra.store.get(sha))
                for arch, asset_id in record.ghost.items()}

    @staticmethod
    def _axes(record: MeshSet) -> Axes:
        if {"right", "anterior", "up"} <= set(record.axes):
            return Axes(record.axes["right"], record.axes["anterior"], record.axes["up"])
        return Axes()

    # --- movement-map images (exports run them in a worker) -----------------------------------------
    def image_range(self, actor: Actor, sim: TreatmentSimulation, view: str, stage: int | None) -> FrameRange:
        """Check a movement-map image request; the version's frame indexes of the stages it shows."""
        if view not in CLINICAL_VIEWS:
            raise ValidationError(f"Unknown view {view!r}; choose one of {', '.join(CLINICAL_VIEWS)}.")
        _, record = self.ready_set(actor, sim.id)
        numbers = record.stage_numbers
        if stage is not None and stage not in numbers:
            raise ValidationError(f"Stage {stage} is not in the 3D model; it has stages {numbers[0]}–{numbers[-1]}.")
        shown = {numbers[0], numbers[-1] if stage is None else stage}
        indexes = [f.index for f in sim.frames if f.stage in shown] or [0]
        return FrameRange(min(indexes), max(indexes))

    def movement_image(self, actor: Actor, sim: TreatmentSimulation, *, view: str, stage: int | None, compare: bool,
                       size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
        """(RGB image, stage caption) of the movement map at `stage` (default: final) from a clinical view,
        with its colour legend; `compare` puts the first stage beside it (a before/after comparison whose
        panel labels name the stages, so its caption is None).
        Renders offscreen with VTK: call it from a worker, not from the page."""
        from core.imaging.compose import ComparisonSpec, compose, panel_boxes

        _, record = self.ready_set(actor, sim.id)
        numbers = record.stage_numbers
        position = len(numbers) - 1 if stage is None else numbers.index(stage)
        first, shown = self._stage(actor.clinic_id, record, 0), self._stage(actor.clinic_id, record, position)
        vmax = movement.scale_max(record.maxMovement)
        caption = f"{shown.label} · movement"
        if not compare:
            with _MovementRenderer(first, (view,), size, vmax) as renderer:
                return renderer.render(shown)[view], caption
        spec = ComparisonSpec(layout="side_by_side", labels=(f"Stage {first.stage} (start)", caption),
                              title="Tooth movement", gap=12)
        boxes = panel_boxes(2, spec, size)
        width = boxes[1][2] - boxes[1][0]
        # 16:9 panels like simulation frames: the captions above them stay clear of the panel labels
        cell = (width, max(16, min(boxes[1][3] - boxes[1][1], round(width * 9 / 16))))
        with _MovementRenderer(first, (view,), cell, vmax) as renderer:
            before, after = renderer.render(first, colored=False)[view], renderer.render(shown)[view]
        return compose([before, after], spec, size), None

    # --- SUPERIMPOSITION versions ------------------------------------------------------------------------
    def request_superimposition(self, actor: Actor, simulation_id: str) -> MeshSet:
        """Queue a SUPERIMPOSITION version: every stage coloured by movement over the first stage."""
        actor.require(Permission.IMAGING_CAPTURE)
        sim, record = self.ready_set(actor, simulation_id)
        if record.id != sim.id:
            raise ValidationError("This version already is a movement map; open the version it was made from.")
        if len(record.stages) < 2:
            raise ValidationError("A movement map needs at least two stages; this model has one.")
        if record.superimposition in _LIVE:
            return record
        new_id = str(ObjectId())
        try:
            enqueue(self._infra.redis, "superimposition", "core.jobs.make_superimposition", actor.clinic_id, sim.id,
                    actor.id, new_id, job_id=superimposition_job_id(sim.id, new_id))
        except ServiceUnavailableError:
            raise ServiceUnavailableError("The job queue is not reachable right now; try again in a minute.") from None
        self._infra.mesh_sets.set_superimposition(actor.clinic_id, sim.id, RenditionState.QUEUED, simulation=new_id)
        self._infra.audit.append(actor.clinic_id, action="simulation.superimposition_requested", user_id=actor.id,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"version": sim.version})
        found = self._infra.mesh_sets.get(actor.clinic_id, sim.id)
        assert found is not None
        return found

    def superimposition_status(self, actor: Actor, simulation_id: str) -> MeshSet | None:
        """The model set with the state of its SUPERIMPOSITION request (a dead job shows as FAILED)."""
        sim = self._simulations.get(actor, simulation_id)
        record = self._infra.mesh_sets.get(actor.clinic_id, sim.id)
        if record is None or record.superimposition not in _LIVE or not record.superimpositionId:
            return record
        state = job_state(self._infra.redis, superimposition_job_id(sim.id, record.superimpositionId))
        if state in (None, RenditionState.FAILED):
            self._infra.mesh_sets.set_superimposition(
                actor.clinic_id, sim.id, RenditionState.FAILED, simulation=record.superimpositionId,
                error=record.superimpositionError or "Making the movement-map version stopped; try again.")
            return self._infra.mesh_sets.get(actor.clinic_id, sim.id)
        return record

    def make_superimposition(self, clinic_id: str, simulation_id: str, user_id: str, new_id: str,
                             progress: Progress = _no_progress) -> TreatmentSimulation | None:
        """The job: render every stage × view as a movement map over the first stage and save them as a new
        SUPERIMPOSITION version (id `new_id`, so a retried job finds what its first run saved). None when
        the request was refused (the reason is recorded on the model set)."""
        from core.imaging import encode_png

        try:
            existing = self._infra.simulations.get(clinic_id, new_id)
        except NotFoundError:
            existing = None
        if existing is not None:
            self._infra.mesh_sets.set_superimposition(clinic_id, simulation_id, RenditionState.READY, simulation=new_id)
            return existing
        self._infra.mesh_sets.set_superimposition(clinic_id, simulation_id, RenditionState.RUNNING, simulation=new_id)
        try:
            actor = Actor(self._infra.users.get(clinic_id, user_id))
            actor.require(Permission.IMAGING_CAPTURE)  # revoked since the request: refuse in the worker too
            sim, record = self.ready_set(actor, simulation_id)
            views = tuple(v for v in sim.views if v in CLINICAL_VIEWS) or ("front",)
            vmax = movement.scale_max(record.maxMovement)
            first = self._stage(clinic_id, record, 0)
            frames: list[NewFrame] = []
            with _MovementRenderer(first, views, FRAME_SIZE, vmax) as renderer:  # one OpenGL context for all
                for position in range(len(record.stages)):
                    shown = self._stage(clinic_id, record, position)
                    images = renderer.render(shown, ghost=position > 0)
                    frames += [NewFrame(shown.stage, view, encode_png(images[view], compression=1),
                                        f"Stage {shown.stage} · movement") for view in views]
                    progress(round(90 * (position + 1) / len(record.stages)),
                             f"rendered stage {position + 1} of {len(record.stages)}")
            new = self._simulations.create_version(
                actor, patient_id=sim.patientId, treatment_id=sim.treatmentId,
                simulation_type=SimulationType.SUPERIMPOSITION, name=f"{sim.name} · tooth movement", frames=frames,
                metadata={"movementOf": sim.id, "movementOfVersion": sim.version, "movementScaleMm": vmax},
                source_system="Movement map", source_id=sim.id, simulation_id=new_id)
        except StudioError as exc:  # e.g. the requester lost the permission: say why, do not retry
            self._infra.mesh_sets.set_superimposition(clinic_id, simulation_id, RenditionState.FAILED,
                                                      simulation=new_id, error=str(exc))
            return None
        except Exception as exc:
            log.error("movement-map version of simulation %s failed (%s)", simulation_id, type(exc).__name__)
            self._infra.mesh_sets.set_superimposition(clinic_id, simulation_id, RenditionState.FAILED,
                                                      simulation=new_id,
                                                      error="Making the movement-map version failed; try again.")
            raise
        self._infra.mesh_sets.set_superimposition(clinic_id, simulation_id, RenditionState.READY, simulation=new.id)
        return new



def _meshes(models: StageModels) -> dict[str, Any]:
    from core.importing.meshes import Mesh

    return {arch: Mesh(p.vertices_mm(), p.faces.astype(np.int32)) for arch, p in models.meshes.items()}


class _MovementRenderer:
    """Offscreen movement-map images of one model set at one size, stage after stage, in one OpenGL context.

    Framed once from the first stage (the view holds still across stages); arches coloured by movement on
    0..vmax with a legend on the right. The legend gets its own strip: the background is a vertical
    gradient, so widening the render by repeating its last column is seamless.
    """

    def __init__(self, first: StageModels, views: tuple[str, ...], size: tuple[int, int], vmax: float) -> None:
        from core.imaging.legend import legend_box
        from core.importing.meshes import RenderSpec, StageRenderer

        width, height = size
        self._first = first
        self._first_meshes = _meshes(first)
        self._vmax = vmax
        self._ticks = movement.ticks(vmax)
        self._reserve = width - legend_box(width, height, movement.LEGEND_TITLE, [f"{v:g}" for v in self._ticks])[0]
        ssaa = 2 if width * height <= 2560 * 1440 else 1
        self._renderer = StageRenderer(RenderSpec(width=max(16, width - self._reserve), height=height, views=views,
                                                  ssaa=ssaa), self._first_meshes)

    def render(self, shown: StageModels, *, colored: bool = True, ghost: bool = False) -> dict[str, np.ndarray]:
        """Each view of `shown`: coloured with the legend, or (colored=False) plain enamel without one."""
        from core.imaging.legend import draw_legend

        colors = None
        if colored:
            colors = {arch: movement.colors(p.movement_mm() if p.movement_um is not None else
                                            np.zeros(p.vertex_count, np.float32), self._vmax)
                      for arch, p in shown.meshes.items()}
        images = self._renderer.render(_meshes(shown), colors=colors, ghosts=self._first_meshes if ghost else None)
        scale = movement.colors(np.linspace(0, self._vmax, 64), self._vmax)
        out = {}
        for view, rendered in images.items():
            wide = np.concatenate([rendered, np.repeat(rendered[:, -1:], self._reserve, axis=1)], axis=1)
            out[view] = draw_legend(wide, scale, self._ticks, title=movement.LEGEND_TITLE) if colored else wide
        return out

    def __enter__(self) -> _MovementRenderer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._renderer.close()
