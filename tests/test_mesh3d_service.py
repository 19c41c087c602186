"""3D models end to end against the real servers: import → preparation job → stages, movement, exports,
SUPERIMPOSITION versions, permissions and failures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from bson import ObjectId

from core.domain import (
    AssetKind,
    ExportState,
    ExportType,
    ImportSource,
    ImportState,
    RenditionState,
    Role,
    SimulationType,
)
from core.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from core.importing.mesh_testing import make_arch_mesh, write_stl
from core.importing.meshes import Mesh, rendering_available
from core.mesh3d import pack
from core.mesh3d.decimate import TARGET_TRIANGLES
from core.services.exports import RenderRequest
from core.services.imports import Upload
from core.services.mesh3d import ModelView
from tests.conftest import wait_until
from tests.factories import make_clinic

pytestmark = pytest.mark.skipif(rendering_available() is not None,
                                reason=f"3D RENDERING UNAVAILABLE: {rendering_available()}")
SHIFT = np.array([0.9, 1.2, 0.0], np.float32)  # 1.5 mm


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def _import_staged(services, world, meshes: list[dict[str, Mesh]], *, name: str = "uLab setup") -> str:
    """Import staged models through the real import flow (analysis, preview, commit); the version's id."""
    uploads = [Upload(f"{arch.title()}_Stage_{stage:02d}.stl", write_stl(mesh))
               for stage, arches in enumerate(meshes) for arch, mesh in arches.items()]
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    treatment_id=world.treatment.id, uploads=uploads, name=name,
                                    options={"views": ["front"]}, queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    assert analysed.state is ImportState.PREVIEW, analysed.error
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates], queue=False)
    done = services.imports.commit(world.clinic.id, record.id)
    assert done.state is ImportState.DONE, done.error
    return done.simulationId


def _treatment(stages: int, triangles: int) -> list[dict[str, Mesh]]:
    return [{arch: make_arch_mesh(arch, stage, stages, triangles=triangles) for arch in ("upper", "lower")}
            for stage in range(stages)]


def _translated(triangles: int = 30_000) -> list[dict[str, Mesh]]:
    lower = make_arch_mesh("lower", 0, 1, triangles=triangles)
    return [{"lower": lower}, {"lower": Mesh(lower.vertices + SHIFT, lower.faces)}]


@pytest.mark.worker
def test_an_imported_staged_set_is_decimated_by_the_worker_within_the_budget(services, world, infra, worker):
    sim_id = _import_staged(services, world, _treatment(3, 60_000))
    record = wait_until(lambda: (r := services.meshes.status(world.actor(), sim_id)) and
                        r.state in (RenditionState.READY, RenditionState.FAILED) and r, timeout=180,
                        what="3D models")
    assert record.state is RenditionState.READY, record.error
    assert record.stage_numbers == (0, 1, 2) and record.shared
    assert record.sourceTriangles["upper"] > 55_000 and record.triangles["upper"] == TARGET_TRIANGLES
    meshes = infra.assets.list_for_simulation(world.clinic.id, sim_id, kinds=[AssetKind.MESH])
    ghosts = [a for a in meshes if "ghost" in a.tags]  # the final stage, lighter, for the translucent overlay
    assert len(meshes) == 8 and len(ghosts) == 2 and {a.contentType for a in meshes} == {pack.CONTENT_TYPE}
    assert all(pack.decode(infra.store.get(a.sha256)).triangle_count <= 10_000 for a in ghosts)
    meshes = [a for a in meshes if a not in ghosts]
    sources = infra.assets.list_for_simulation(world.clinic.id, sim_id, kinds=[AssetKind.SOURCE])
    assert len(sources) == 6 and all("mesh" in a.tags and a.contentType == "model/stl" for a in sources)
    for asset in meshes:  # compact binary assets within the triangle budget, never JSON
        blob = infra.store.get(asset.sha256)
        decoded = pack.decode(blob)
        assert TARGET_TRIANGLES - 100 <= decoded.triangle_count <= TARGET_TRIANGLES
        assert decoded.movement_um is not None
        assert not blob.lstrip().startswith((b"{", b"["))
        assert len(blob) < 0.2 * max(s.size for s in sources)
    # the full-resolution files stay the source; the derived models never show up in the gallery
    gallery = services.visuals.gallery(world.actor(), world.patient.id)
    assert not any(item.asset.kind is AssetKind.MESH for item in gallery)


def test_a_known_one_and_a_half_millimetre_translation_reads_as_such(services, world):
    sim_id = _import_staged(services, world, _translated())
    record = services.meshes.prepare(world.clinic.id, sim_id)  # the job's body, inline
    assert record.state is RenditionState.READY and record.maxMovement == pytest.approx(1.5, abs=0.05)
    moved = services.meshes.stage_models(world.actor(), sim_id, 1).meshes["lower"].movement_mm()
    assert abs(float(moved.min()) - 1.5) < 0.05 and abs(float(moved.max()) - 1.5) < 0.05
    assert np.all(services.meshes.stage_models(world.actor(), sim_id, 0).meshes["lower"].movement_mm() == 0)
    figure, shown = services.meshes.figure(world.actor(), sim_id, ModelView(position=1, movement=True))
    assert shown.label == "Stage 1 of 1"
    assert np.abs(np.asarray(figure.data[0].intensity, np.float64) - 1500).max() < 50  # µm


def test_preparing_twice_is_idempotent_and_requests_are_not_duplicated(services, world, infra):
    sim_id = _import_staged(services, world, _translated(8_000))
    first = services.meshes.prepare(world.clinic.id, sim_id)
    infra.db.mesh_sets.update_one({}, {"$set": {"state": "RUNNING"}})  # a retried job after a crash
    again = services.meshes.prepare(world.clinic.id, sim_id)
    assert again.stages == first.stages
    assert len(infra.assets.list_for_simulation(world.clinic.id, sim_id, kinds=[AssetKind.MESH])) == 3
    assert services.meshes.request(world.clinic.id, sim_id).id == sim_id
    assert infra.db.mesh_sets.count_documents({}) == 1


def test_a_preparation_overlapping_a_completed_one_does_not_take_the_set_back(services, world, infra, monkeypatch):
    """Two preparations of one set can overlap (a job queued by the import and a re-queue after a worker was
    presumed dead): the one that read the set before the other completed it must not set it back to running
    (the version would show "still being prepared" with its models in place) nor mark it failed."""
    sim_id = _import_staged(services, world, _translated(8_000))
    stale = infra.mesh_sets.get(world.clinic.id, sim_id)  # as the slower job read it: QUEUED
    done = services.meshes.prepare(world.clinic.id, sim_id)
    assert done.state is RenditionState.READY and stale.state is not RenditionState.READY
    monkeypatch.setattr(infra.mesh_sets, "get", lambda clinic_id, simulation_id: stale)
    services.meshes.prepare(world.clinic.id, sim_id)
    monkeypatch.undo()
    after = infra.mesh_sets.get(world.clinic.id, sim_id)
    assert (after.state, after.step, after.progress, after.stages) == (RenditionState.READY, "ready", 100, done.stages)
    # a late failure of the overlapping job and its progress reports leave the completed set alone
    assert not infra.mesh_sets.set_state(world.clinic.id, sim_id, RenditionState.FAILED, error="x", unless_ready=True)
    infra.mesh_sets.report(world.clinic.id, sim_id, 42, "storing 3D model 1 of 3")
    assert infra.mesh_sets.get(world.clinic.id, sim_id) == after


def test_itero_jaw_scans_get_a_single_stage_3d_view(services, world, tmp_path):
    from core.importing.testing import make_itero_export

    jaws = {arch: write_stl(make_arch_mesh(arch, 0, 1, triangles=20_000)) for arch in ("upper", "lower")}
    manifest = make_itero_export(tmp_path / "export", order_id="80022", patient=(world.patient.lastName, "Test"),
                                 doctor="Dr. Demo", stl=jaws)
    folder = manifest.parent
    uploads = [Upload(str(p.relative_to(folder)), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
    record = services.imports.start(world.actor(), source=ImportSource.ITERO, patient_id=None, uploads=uploads,
                                    name="iTero scan", queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates],
                             patient_id=world.patient.id, queue=False)
    sim_id = services.imports.commit(world.clinic.id, record.id).simulationId
    assert services.meshes.status(world.actor(), sim_id).state is RenditionState.QUEUED  # the import asked for it
    record = services.meshes.prepare(world.clinic.id, sim_id)
    assert record.state is RenditionState.READY and record.stage_numbers == (0,)
    figure, _ = services.meshes.figure(world.actor(), sim_id, ModelView(view="upper"))
    assert [trace.name for trace in figure.data] == ["upper arch"]
    with pytest.raises(ValidationError, match="at least two stages"):
        services.meshes.request_superimposition(world.actor(), sim_id)


def test_versions_without_models_have_no_3d_view(services, world):
    from tests.factories import new_frames

    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="Screenshots", frames=new_frames(2), queue_renditions=False)
    assert services.meshes.status(world.actor(), sim.id) is None
    with pytest.raises(NotFoundError, match="no 3D models"):
        services.meshes.figure(world.actor(), sim.id, ModelView())


def test_unreadable_source_models_fail_with_a_reason_and_write_nothing(services, world, infra):
    sim_id = _import_staged(services, world, _translated(8_000))
    source = infra.assets.list_for_simulation(world.clinic.id, sim_id, kinds=[AssetKind.SOURCE])[1]
    broken = infra.store.put(b"solid nothing\nendsolid nothing\n")
    infra.db.imaging_assets.update_one({"_id": ObjectId(source.id)}, {"$set": {"sha256": broken.sha256}})
    record = services.meshes.prepare(world.clinic.id, sim_id)
    assert record.state is RenditionState.FAILED and "stage 1" in record.error
    assert infra.assets.list_for_simulation(world.clinic.id, sim_id, kinds=[AssetKind.MESH]) == []
    with pytest.raises(ConflictError, match="still being prepared"):
        services.meshes.figure(world.actor(), sim_id, ModelView())


def test_presenters_see_3d_models_of_approved_versions_only(services, world, infra):
    sim_id = _import_staged(services, world, _translated(8_000))
    services.meshes.prepare(world.clinic.id, sim_id)
    presenter = world.actor(Role.PRESENTER)
    with pytest.raises(NotFoundError):
        services.meshes.figure(presenter, sim_id, ModelView())
    with pytest.raises(PermissionDeniedError):
        services.meshes.request_superimposition(presenter, sim_id)
    services.review.approve(world.actor(Role.DOCTOR), sim_id)
    figure, _ = services.meshes.figure(presenter, sim_id, ModelView())
    assert len(figure.data) == 1
    other = make_clinic(infra, "beta", chart="C-2")
    with pytest.raises(NotFoundError):
        services.meshes.figure(other.actor(), sim_id, ModelView())


def _png(services, actor, export) -> tuple[np.ndarray, tuple]:
    from PIL import Image

    data, _, content_type = services.visuals.download(actor, export.asset_id)
    assert content_type == "image/png"
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB")), image.info.get("dpi")


def test_movement_map_exports_go_through_the_export_pipeline_with_stamp_and_draft(services, world, infra):
    sim_id = _import_staged(services, world, _translated(20_000))
    services.meshes.prepare(world.clinic.id, sim_id)
    actor = world.actor()
    request = RenderRequest(ExportType.SNAPSHOT, mesh_view="front", last_stage=1, image_size="square")
    draft = services.exports.request(actor, sim_id, request)
    assert draft.state is ExportState.QUEUED and draft.name == "Movement map · front · v1"
    draft = services.exports.run(world.clinic.id, draft.id)
    assert draft.state is ExportState.DONE, draft.error
    draft_rgb, _ = _png(services, actor, draft)
    assert draft_rgb.shape == (1080, 1080, 3)
    assert draft_rgb[-20:].mean() < 90  # the "Simulated outcome" band along the bottom edge

    services.review.approve(world.actor(Role.DOCTOR), sim_id)
    approved = services.exports.run(world.clinic.id, services.exports.request(actor, sim_id, request).id)
    approved_rgb, _ = _png(services, actor, approved)
    centre = np.s_[400:680, 300:780]
    changed = np.abs(draft_rgb.astype(int)[centre] - approved_rgb.astype(int)[centre]).max(axis=2) > 40
    assert changed.mean() > 0.03  # the DRAFT watermark is on the unapproved version's export only
    asset = infra.assets.get(world.clinic.id, approved.asset_id)
    assert asset.details["approved"] is True and asset.kind is AssetKind.EXPORT

    comparison = RenderRequest(ExportType.COMPARISON, mesh_view="left", last_stage=1, image_size="4x6")
    done = services.exports.run(world.clinic.id, services.exports.request(actor, sim_id, comparison).id)
    rgb, dpi = _png(services, actor, done)
    assert done.comparisonUrl and rgb.shape == (1200, 1800, 3) and round(dpi[0]) == 300


def test_a_3d_image_export_needs_a_3d_model_and_a_real_stage(services, world):
    sim_id = _import_staged(services, world, _translated(8_000))
    services.meshes.prepare(world.clinic.id, sim_id)
    with pytest.raises(ValidationError, match="Stage 7 is not in the 3D model"):
        services.exports.request(world.actor(), sim_id, RenderRequest(ExportType.SNAPSHOT, mesh_view="front",
                                                                      last_stage=7))
    with pytest.raises(ValidationError, match="Compare page"):
        RenderRequest(ExportType.SNAPSHOT)


@pytest.mark.worker
def test_a_superimposition_version_is_made_by_the_worker_from_the_movement_map(services, world, infra, worker):
    sim_id = _import_staged(services, world, _translated(20_000))
    services.meshes.prepare(world.clinic.id, sim_id)
    requested = services.meshes.request_superimposition(world.actor(), sim_id)
    assert requested.superimposition is RenditionState.QUEUED
    record = wait_until(lambda: (r := services.meshes.superimposition_status(world.actor(), sim_id))
                        and r.superimposition in (RenditionState.READY, RenditionState.FAILED) and r,
                        timeout=180, what="movement-map version")
    assert record.superimposition is RenditionState.READY, record.superimpositionError
    new = services.simulations.get(world.actor(), record.superimpositionId)
    assert new.simulationType is SimulationType.SUPERIMPOSITION and new.metadata["movementOf"] == sim_id
    assert new.stage_count == 2 and new.views == ("front",) and new.sourceSystem == "Movement map"
    assert (new.frames[0].width, new.frames[0].height) == (1920, 1080)
    # it shows the source's 3D models, coloured by movement
    figure, _ = services.meshes.figure(world.actor(), new.id, ModelView(position=1, movement=True))
    assert figure.data[0].intensity is not None
    assert infra.db.audit_events.count_documents({"action": "simulation.superimposition_requested"}) == 1


def test_a_staged_import_that_fails_late_keeps_no_model_files(services, world, infra, settings):
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # members are stored apart from the uploaded ZIP
        for stage, arches in enumerate(_translated(4_000)):
            archive.writestr(f"case/Lower_Stage_{stage:02d}.stl", write_stl(arches["lower"]))
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    uploads=[Upload("case.zip", buffer.getvalue())], name="x",
                                    options={"views": ["front"]}, queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates], queue=False)
    infra.db.patients.delete_many({})  # the version cannot be saved any more
    failed = services.imports.commit(world.clinic.id, record.id)
    assert failed.state is ImportState.FAILED
    assert infra.db.simulations.count_documents({}) == 0 and infra.db.imaging_assets.count_documents({}) == 0
    blobs = [p for p in (settings.data_dir / "assets").rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert blobs == []


def test_maintenance_queues_preparations_left_pending_or_orphaned_by_a_dead_worker(services, world, infra):
    from core.services.mesh3d import MAX_ATTEMPTS, prepare_job_id

    sim_id = _import_staged(services, world, _translated(4_000))
    record = infra.mesh_sets.get(world.clinic.id, sim_id)
    assert record.state is RenditionState.QUEUED and record.attempts == 1  # the import's hook queued it
    assert services.meshes.reconcile(world.clinic.id) == 0  # its job is still waiting: nothing to do
    infra.mesh_sets.set_state(world.clinic.id, sim_id, RenditionState.PENDING)  # Redis was down at import time
    assert services.meshes.reconcile(world.clinic.id) == 1
    for _ in range(2, MAX_ATTEMPTS):
        infra.redis.delete(f"rq:job:{prepare_job_id(sim_id)}")  # the job vanished with its killed worker
        assert services.meshes.reconcile(world.clinic.id) == 1
    infra.redis.delete(f"rq:job:{prepare_job_id(sim_id)}")
    assert services.meshes.reconcile(world.clinic.id) == 0  # a worker that keeps dying: give up, say why
    failed = infra.mesh_sets.get(world.clinic.id, sim_id)
    assert failed.state is RenditionState.FAILED and "worker stopped" in failed.error
    retried = services.meshes.retry(world.actor(), sim_id)  # a user asks again: a fresh start
    assert retried.state is RenditionState.QUEUED and retried.attempts == 1


def test_a_movement_comparison_is_not_a_wipe_video_source(services, world):
    sim_id = _import_staged(services, world, _translated(4_000))
    services.meshes.prepare(world.clinic.id, sim_id)
    comparison = services.exports.request(world.actor(), sim_id, RenderRequest(
        ExportType.COMPARISON, mesh_view="front", last_stage=1, image_size="square"))
    with pytest.raises(ValidationError, match="comparison of frames"):
        services.exports.request(world.actor(), sim_id, RenderRequest(ExportType.VIDEO, wipe_of=comparison.id))
