"""Imports end to end: staged uploads → analysis → preview → new version, and bad input."""

from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
import pytest

from core.domain import AssetKind, ImportSource, ImportState, Role, SimulationStatus, SimulationType
from core.errors import PermissionDeniedError, ValidationError
from core.imaging import decode_rgb, encode_png
from core.services.imports import Upload
from tests.conftest import wait_until
from tests.factories import gradient_frame, make_clinic, new_frames


def _png(stage: int, size: tuple[int, int] = (96, 54)) -> bytes:
    return encode_png(gradient_frame(stage, size)).data


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _nothing_written(infra, settings) -> None:
    assert infra.db.simulations.count_documents({}) == 0
    assert infra.db.imaging_assets.count_documents({}) == 0
    blobs = [p for p in (settings.data_dir / "assets").rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert blobs == []


def _start(services, world, uploads, source=ImportSource.FILES, **kw):
    return services.imports.start(world.actor(), source=source, uploads=uploads, patient_id=world.patient.id,
                                  treatment_id=world.treatment.id, name=kw.pop("name", "ClinCheck"),
                                  queue_analysis=False, **kw)


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def test_a_zip_of_screenshots_is_ordered_naturally_and_imported_as_the_user_arranged_it(services, world, infra):
    names = ["ClinCheck Stage 10.png", "ClinCheck Stage 2.png", "ClinCheck Stage 1.png", "notes/ClinCheck Stage 3.png"]
    upload = Upload("export.zip", _zip({name: _png(int(name.split()[-1][:-4])) for name in names}))
    record = _start(services, world, [upload])
    analysed = services.imports.analyze(world.clinic.id, record.id)

    assert analysed.state is ImportState.PREVIEW
    assert [c.label for c in analysed.candidates] == ["Stage 1", "Stage 2", "Stage 3", "Stage 10"]
    keys = [c.key for c in analysed.candidates]
    services.imports.confirm(world.actor(), record.id, order=[keys[0], keys[2], keys[3]], name="ClinCheck v1")
    done = services.imports.commit(world.clinic.id, record.id)

    assert done.state is ImportState.DONE
    sim = services.simulations.get(world.actor(), done.simulationId)
    assert [f.label for f in sim.frames] == ["Stage 1", "Stage 3", "Stage 10"]
    assert [f.stage for f in sim.frames] == [0, 1, 2]
    first = decode_rgb(services.simulations.frame_images(world.actor(), sim, sim.frames[:1], "original")[0])
    assert np.array_equal(first, gradient_frame(1, (96, 54)))
    assert sim.sourceSystem == "Screenshots" and sim.metadata["importId"] == record.id
    assert sim.name == "ClinCheck v1" and sim.version == 1 and not sim.isApproved


def test_importing_into_a_series_makes_the_next_version_active(services, world, infra):
    v1 = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="ClinCheck", frames=new_frames(2), queue_renditions=False)
    record = services.imports.start(world.actor(), source=ImportSource.FILES, patient_id=None,
                                    uploads=[Upload("a 1.png", _png(1)), Upload("a 2.png", _png(2))],
                                    series_of=v1.id, queue_analysis=False)
    services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id,
                             order=[c.key for c in services.imports.get(world.actor(), record.id).candidates])
    done = services.imports.commit(world.clinic.id, record.id)

    v2 = services.simulations.get(world.actor(), done.simulationId)
    assert v2.version == 2 and v2.status is SimulationStatus.ACTIVE and v2.name == "ClinCheck"
    assert services.simulations.get(world.actor(), v1.id).status is SimulationStatus.SUPERSEDED


def test_a_retried_import_job_does_not_create_a_second_version(services, world, infra):
    record = _start(services, world, [Upload("s1.png", _png(1))])
    services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id,
                             order=[c.key for c in services.imports.get(world.actor(), record.id).candidates])
    services.imports.commit(world.clinic.id, record.id)
    # the worker died after saving but before the state changed: the job runs again
    infra.db.imports.update_one({}, {"$set": {"state": "IMPORTING"}})
    again = services.imports.commit(world.clinic.id, record.id)
    assert again.state is ImportState.DONE
    assert infra.db.simulations.count_documents({}) == 1


@pytest.mark.parametrize(("uploads", "message"), [
    ([Upload("evil.zip", _zip({"../../etc/passwd.png": _png(1)}))], r"\.\."),
    ([Upload("stage.gif", b"GIF89a" + b"\x00" * 64)], "GIF"),
    ([Upload("notes.png", b"just some text, not an image")], "not an image"),
    ([Upload("nested.zip", _zip({"inner.zip": _zip({"a.png": _png(1)})}))], "nested|archive"),
])
def test_bad_uploads_fail_with_a_clear_reason_and_leave_nothing(services, world, infra, settings, uploads, message):
    record = _start(services, world, uploads)
    failed = services.imports.analyze(world.clinic.id, record.id)

    assert failed.state is ImportState.FAILED
    import re

    assert re.search(message, failed.error, re.IGNORECASE), failed.error
    _nothing_written(infra, settings)


def test_too_many_files_are_refused_before_anything_is_stored(services, world, infra, settings):
    from core.importing.limits import ImportLimits
    from core.services.imports import ImportService

    service = ImportService(infra, services.simulations, ImportLimits(max_files=3))
    with pytest.raises(ValidationError, match="4 files were uploaded; the limit is 3"):
        service.start(world.actor(), source=ImportSource.FILES, patient_id=world.patient.id,
                      uploads=[Upload(f"s{i}.png", _png(i)) for i in range(4)], queue_analysis=False)
    assert infra.db.imports.count_documents({}) == 0
    _nothing_written(infra, settings)


def test_a_cancelled_import_removes_its_staged_files(services, world, infra, settings):
    record = _start(services, world, [Upload("s1.png", _png(1)), Upload("s2.png", _png(2))])
    services.imports.analyze(world.clinic.id, record.id)
    services.imports.cancel(world.actor(), record.id)
    assert services.imports.get(world.actor(), record.id).state is ImportState.CANCELLED
    _nothing_written(infra, settings)


def test_presenters_cannot_import(services, world, infra):
    with pytest.raises(PermissionDeniedError, match="imaging:capture"):
        services.imports.start(world.actor(Role.PRESENTER), source=ImportSource.FILES, patient_id=world.patient.id,
                               uploads=[Upload("s.png", _png(1))], queue_analysis=False)


def test_concurrent_imports_into_one_series_leave_one_active_and_gap_free_versions(services, world, infra):
    barrier = threading.Barrier(6)
    errors = []

    def create() -> None:
        barrier.wait()
        try:
            services.simulations.create_version(
                world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
                simulation_type=SimulationType.ALIGNER, name="race", frames=new_frames(1), queue_renditions=False)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    docs = list(infra.db.simulations.find({}, {"status": 1, "version": 1}))
    assert sorted(d["version"] for d in docs) == [1, 2, 3, 4, 5, 6]
    assert [d["status"] for d in docs].count("ACTIVE") == 1


@pytest.mark.worker
def test_a_screen_recording_is_split_into_its_stages_by_the_worker(services, world, infra, worker, tmp_path):
    from core.fixtures.recordings import make_test_recording

    video = tmp_path / "capture.mp4"
    make_test_recording(video, stages=6, size=(480, 270))
    record = services.imports.start(world.actor(), source=ImportSource.RECORDING, patient_id=world.patient.id,
                                    uploads=[Upload("Patient capture.mp4", video.read_bytes())], name="Recording")
    preview = wait_until(lambda: (r := services.imports.get(world.actor(), record.id)).state
                         in (ImportState.PREVIEW, ImportState.FAILED) and r, timeout=120, what="analysis")
    assert preview.state is ImportState.PREVIEW, preview.error
    assert len(preview.candidates) == 6
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in preview.candidates])
    done = wait_until(lambda: (r := services.imports.get(world.actor(), record.id)).state
                      in (ImportState.DONE, ImportState.FAILED) and r, timeout=120, what="import")
    assert done.state is ImportState.DONE, done.error
    sim = services.simulations.get(world.actor(), done.simulationId)
    assert sim.frameCount == 6 and sim.metadata["video"]["width"] == 480
    sources = infra.assets.list_for_patient(world.clinic.id, world.patient.id, kinds=[AssetKind.SOURCE])
    assert len(sources) == 1 and sources[0].contentType == "video/mp4"
    assert infra.store.get(sources[0].sha256) == video.read_bytes()


def test_an_itero_export_proposes_the_patient_and_files_views_and_scan(services, world, infra, tmp_path):
    from core.fixtures.itero import VIEWS as PENTA
    from core.fixtures.itero import make_itero_export

    manifest = make_itero_export(tmp_path / "export", order_id="70011", patient=(world.patient.lastName, "Test"),
                                 doctor="Dr. Demo")
    folder = manifest.parent
    uploads = [Upload(str(p.relative_to(folder)), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
    record = services.imports.start(world.actor(), source=ImportSource.ITERO, patient_id=None, uploads=uploads,
                                    name="iTero scan", queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    assert analysed.state is ImportState.PREVIEW, analysed.error
    assert analysed.metadata["patientMatch"] == [world.patient.id]
    assert analysed.metadata["sourceId"] == "70011"
    assert sorted(c.view for c in analysed.candidates) == sorted(PENTA)

    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates],
                             patient_id=world.patient.id)
    done = services.imports.commit(world.clinic.id, record.id)
    assert done.state is ImportState.DONE, done.error
    sim = services.simulations.get(world.actor(), done.simulationId)
    assert sim.scanId and sim.sourceSystem == "iTero" and sim.sourceId == "70011"
    scans = infra.assets.list_for_patient(world.clinic.id, world.patient.id, kinds=[AssetKind.SCAN])
    photos = infra.assets.list_for_patient(world.clinic.id, world.patient.id, kinds=[AssetKind.PHOTO])
    assert sorted(a.details["view"] for a in photos if "before" in a.tags) == sorted(PENTA)  # the "before" photos
    assert not any("before" in a.tags for a in scans)
    assert sorted(a.details.get("jaw") for a in scans if a.contentType == "model/stl") == ["lower", "upper"]


def test_staged_3d_models_are_rendered_from_the_chosen_views(services, world, infra):
    from core.fixtures.meshes import make_arch_mesh, write_stl
    from core.importing.meshes import rendering_available

    missing = rendering_available()
    if missing:
        pytest.skip(f"3D RENDERING UNAVAILABLE: {missing}")
    uploads = []
    for stage in range(3):
        upper, lower = (write_stl(make_arch_mesh(arch, stage, 3, triangles=8000)) for arch in ("upper", "lower"))
        uploads += [Upload(f"Upper_Stage_{stage:02d}.stl", upper), Upload(f"subsetup{stage}_lower.stl", lower)]
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    uploads=uploads, name="uLab setup", options={"views": ["front", "upper"]},
                                    queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    assert analysed.state is ImportState.PREVIEW, analysed.error
    assert [c.stage for c in analysed.candidates] == [0, 1, 2]
    assert analysed.metadata["arches"] == ["lower", "upper"]
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates])
    done = services.imports.commit(world.clinic.id, record.id)
    assert done.state is ImportState.DONE, done.error
    sim = services.simulations.get(world.actor(), done.simulationId)
    assert sim.views == ("front", "upper") and sim.stage_count == 3
    assert (sim.frames[0].width, sim.frames[0].height) == (1920, 1080)


def test_staged_models_with_unreadable_names_are_refused_with_the_naming_rule(services, world, infra, settings):
    from core.fixtures.meshes import make_arch_mesh, write_stl

    data = write_stl(make_arch_mesh("upper", 0, 2, triangles=2000))
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    uploads=[Upload("model final.stl", data)], name="x", queue_analysis=False)
    failed = services.imports.analyze(world.clinic.id, record.id)
    assert failed.state is ImportState.FAILED
    from core.importing.meshes import rendering_available

    expected = "Name files like Upper_Stage_07.stl" if rendering_available() is None else "cannot be rendered"
    assert expected in failed.error
    _nothing_written(infra, settings)


def test_an_obj_face_index_too_large_for_any_integer_fails_the_import_clearly(services, world, infra, settings):
    from core.importing.meshes import rendering_available

    missing = rendering_available()
    if missing:
        pytest.skip(f"3D RENDERING UNAVAILABLE: {missing}")
    obj = b"v 0 0 0\nv 10 0 0\nv 0 10 0\nf 1 2 99999999999999999999\n"
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    uploads=[Upload("Upper_Stage_00.obj", obj)], name="uLab", queue_analysis=False)
    failed = services.imports.analyze(world.clinic.id, record.id)
    assert failed.state is ImportState.FAILED
    assert failed.error == ("Upper_Stage_00.obj: an OBJ face refers to vertex 99999999999999999999, but the file "
                            "defines only 3 vertices; the file is corrupt. Export it again.")
    _nothing_written(infra, settings)
    # A retried job (RQ retries a job that raised) finds the import failed: it leaves it so, quietly.
    again = services.imports.analyze(world.clinic.id, record.id)
    assert (again.state, again.error, again.revision) == (ImportState.FAILED, failed.error, failed.revision)
    assert services.imports.commit(world.clinic.id, record.id).state is ImportState.FAILED
    assert infra.db.audit_events.count_documents({"action": "import.failed"}) == 1


def test_a_recording_cut_off_after_its_index_fails_the_import_saying_what_was_found(services, world, infra, settings,
                                                                                   tmp_path):
    from core.fixtures.recordings import make_test_recording

    video = tmp_path / "capture.mp4"
    make_test_recording(video, stages=4, size=(320, 180), faststart=True)
    data = video.read_bytes()
    record = services.imports.start(world.actor(), source=ImportSource.RECORDING, patient_id=world.patient.id,
                                    uploads=[Upload("capture.mp4", data[: len(data) // 2])], name="Recording",
                                    queue_analysis=False)
    failed = services.imports.analyze(world.clinic.id, record.id)
    assert failed.state is ImportState.FAILED
    assert failed.error.startswith("The recording is cut off: its header states 4.7 s (141 frames), but only the "
                                   "first ")
    assert "showing 1 stage." in failed.error and failed.error.endswith("upload the complete recording.")
    _nothing_written(infra, settings)
