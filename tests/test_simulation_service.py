"""Creating versions and reading frames through the service (permissions, scope, atomicity)."""

from __future__ import annotations

import pytest

from core.domain import AssetKind, Role, SimulationStatus, SimulationType
from core.errors import NotFoundError, PermissionDeniedError, ValidationError
from core.imaging import decode_rgb
from tests.factories import gradient_frame, make_clinic, new_frames


def _create(services, world, *, role=Role.COORDINATOR, frames=None, **kw):
    return services.simulations.create_version(
        world.actor(role), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name=kw.pop("name", "ClinCheck"),
        frames=new_frames(4) if frames is None else frames, queue_renditions=False, **kw,
    )


def test_a_created_version_stores_frames_as_assets_in_the_patients_gallery(services, infra):
    world = make_clinic(infra)
    sim = _create(services, world, source_system="ClinCheck", source_id="CC-1")

    assert sim.frameCount == 4 and sim.stage_count == 4 and sim.version == 1
    assert sim.status is SimulationStatus.ACTIVE and not sim.isApproved
    images = services.simulations.frame_images(world.actor(), sim, sim.frames, "original")
    assert (decode_rgb(images[2]) == gradient_frame(2)).all()
    assets = infra.assets.list_for_patient(world.clinic.id, world.patient.id, kinds=[AssetKind.FRAME])
    assert len(assets) == 4 and all(a.simulationId == sim.id for a in assets)
    assert {a.sha256 for a in assets} == {infra.assets.get(world.clinic.id, f.assetId).sha256 for f in sim.frames}
    events = infra.audit.list(world.clinic.id)
    assert [e.action for e in events].count("simulation.import") == 1


def test_a_presenter_cannot_create_versions_and_nothing_is_written(services, infra):
    world = make_clinic(infra)
    with pytest.raises(PermissionDeniedError, match="imaging:capture"):
        _create(services, world, role=Role.PRESENTER)
    assert infra.db.simulations.count_documents({}) == 0
    assert infra.db.imaging_assets.count_documents({}) == 0


def test_presenters_do_not_see_unapproved_versions(services, infra):
    world = make_clinic(infra)
    sim = _create(services, world)
    with pytest.raises(NotFoundError, match="not approved"):
        services.simulations.get(world.actor(Role.PRESENTER), sim.id)
    assert services.simulations.get(world.actor(Role.DOCTOR), sim.id).id == sim.id


def test_another_clinics_patient_is_refused(services, infra):
    a = make_clinic(infra, "alpha")
    b = make_clinic(infra, "beta", chart="C-2")
    with pytest.raises(NotFoundError):
        services.simulations.create_version(
            a.actor(), patient_id=b.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
            name="x", frames=new_frames(2), queue_renditions=False)


def test_duplicate_stages_are_rejected_before_anything_is_stored(services, infra, settings):
    world = make_clinic(infra)
    frames = new_frames(3)
    with pytest.raises(ValidationError, match=r"Stage 1 \(front view\) appears twice"):
        _create(services, world, frames=[*frames, frames[1]])
    assert infra.db.imaging_assets.count_documents({}) == 0
    assert not (settings.data_dir / "assets").exists() or not any(
        p.is_file() for p in (settings.data_dir / "assets").rglob("*") if ".tmp" not in p.parts)


def test_a_failed_version_insert_leaves_no_assets_and_no_files(services, infra, settings, monkeypatch):
    world = make_clinic(infra)
    from core.repositories.simulations import SimulationRepository

    def exploding_insert(self, *args, **kwargs):
        raise RuntimeError("database went away mid-import")

    monkeypatch.setattr(SimulationRepository, "insert_version", exploding_insert)
    with pytest.raises(RuntimeError, match="went away"):
        _create(services, world)
    assert infra.db.imaging_assets.count_documents({}) == 0
    stored = [p for p in (settings.data_dir / "assets").rglob("*") if p.is_file()]
    assert stored == []


def test_a_failure_inside_the_transaction_rolls_back_the_version_too(services, infra, settings, monkeypatch):
    world = make_clinic(infra)
    _create(services, world, name="v1")
    from core.repositories.assets import AssetRepository

    def failing_insert_many(self, clinic_id, docs, *, session=None):
        raise RuntimeError("asset insert failed inside the transaction")

    monkeypatch.setattr(AssetRepository, "insert_many", failing_insert_many)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        _create(services, world, name="v2", frames=new_frames(2, size=(40, 30)))

    docs = list(infra.db.simulations.find({}, {"version": 1, "status": 1}))
    assert [(d["version"], d["status"]) for d in docs] == [(1, "ACTIVE")]  # no v2, v1 not superseded
    assert infra.db.imaging_assets.count_documents({}) == 4
    blobs = [p for p in (settings.data_dir / "assets").rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert len(blobs) == 4  # v2's files were removed again


def test_renaming_and_frame_edits_are_history_and_edits_never_touch_the_approved_version(services, infra):
    world = make_clinic(infra)
    sim = _create(services, world, frames=new_frames(5))
    infra.db.simulations.update_one({}, {"$set": {"isApproved": True}})
    renamed = services.simulations.rename(world.actor(), sim.id, "ClinCheck final")
    assert renamed.isApproved  # a name change does not touch the frames the doctor approved

    edited = services.simulations.edit_frames(world.actor(), sim.id, [4, 0, 2])
    assert edited.version == 2 and not edited.isApproved
    assert [f.label for f in edited.frames] == ["Stage 4", "Stage 0", "Stage 2"]
    original = services.simulations.get(world.actor(), sim.id)
    assert original.frameCount == 5 and original.isApproved and original.status is SimulationStatus.SUPERSEDED

    whats = [h.what for h in services.simulations.history(world.actor(), edited.id)]
    assert whats[0] == "frames edited: v1: 5 frames → v2: 3 frames"
    assert "rename: ClinCheck → ClinCheck final" in whats
    assert sum(w.startswith("imported") for w in whats) == 2


def test_archived_series_are_hidden_by_default_and_restore_reactivates_the_latest(services, infra):
    world = make_clinic(infra)
    v1 = _create(services, world)
    v2 = _create(services, world)
    services.simulations.set_archived(world.actor(), v1.id, archived=True)
    assert services.patients.overview(world.actor(), world.patient.id).series == ()
    shown = services.patients.overview(world.actor(), world.patient.id, include_archived=True).series
    assert {v.status for v in shown[0].versions} == {SimulationStatus.ARCHIVED}

    services.simulations.set_archived(world.actor(), v1.id, archived=False)
    assert services.simulations.get(world.actor(), v2.id).status is SimulationStatus.ACTIVE
    assert services.simulations.get(world.actor(), v1.id).status is SimulationStatus.SUPERSEDED
