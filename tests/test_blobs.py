"""The one deletion rule for stored files: referenced now, or written within the grace period, means kept."""

from __future__ import annotations

import os
import time

import pytest

from core.blobs import release_blobs
from core.config import load_settings
from core.domain import AssetKind, ImportSource, ImportState, SimulationType
from core.imaging import encode_png
from core.infra import build_infrastructure
from core.jobs import schedule_gc
from core.services import services_for
from core.services.imports import Upload
from core.storage import FileAssetStore, GridFSAssetStore
from tests.conftest import start_worker, stop_worker, wait_until
from tests.factories import gradient_frame, make_clinic, new_frames

HOUR = 3600


@pytest.fixture(params=["files", "gridfs"])
def store(request, infra, tmp_path):
    return FileAssetStore(tmp_path / "assets") if request.param == "files" else GridFSAssetStore(infra.db)


def _age(store, sha: str, seconds: float) -> None:
    """Pretend the blob was last written `seconds` ago."""
    if isinstance(store, FileAssetStore):
        path = store._path(sha)
        os.utime(path, (time.time() - seconds, time.time() - seconds))
    else:
        from datetime import UTC, datetime, timedelta

        then = datetime.now(UTC) - timedelta(seconds=seconds)
        store._files.update_many({"filename": sha}, {"$set": {"uploadDate": then, "metadata.touchedAt": then}})


def test_an_old_unreferenced_blob_is_deleted_and_a_young_or_referenced_one_kept(store):
    old, young, used = (store.put(f"blob {n}".encode() * 50) for n in range(3))
    _age(store, old.sha256, 2 * HOUR)
    _age(store, used.sha256, 2 * HOUR)
    assert store.delete_unreferenced(old.sha256, grace_seconds=HOUR, referenced=lambda: False)
    assert not store.delete_unreferenced(young.sha256, grace_seconds=HOUR, referenced=lambda: False)
    assert not store.delete_unreferenced(used.sha256, grace_seconds=HOUR, referenced=lambda: True)
    assert not store.exists(old.sha256)
    assert store.exists(young.sha256) and store.exists(used.sha256)


def test_writing_an_old_blob_again_restarts_its_grace_period(store):
    data = b"a thumbnail two jobs make byte for byte" * 20
    blob = store.put(data)
    _age(store, blob.sha256, 2 * HOUR)
    store.put(data)  # a second writer stores identical bytes (and will record them in a moment)
    assert not store.delete_unreferenced(blob.sha256, grace_seconds=HOUR, referenced=lambda: False)
    assert store.get(blob.sha256) == data


@pytest.mark.parametrize("writer_comes", ["before the move aside", "after the move aside"])
def test_a_writer_racing_the_deletion_keeps_its_blob(store, writer_comes):
    data = b"bytes a writer is storing while the clean-up runs" * 20
    blob = store.put(data)
    _age(store, blob.sha256, 2 * HOUR)
    checks = []

    def referenced() -> bool:
        # The clean-up asks twice: before it moves the blob aside and after. The writer stores the
        # same bytes in one of those gaps and has not recorded them yet, so both answers are "no".
        checks.append(1)
        if len(checks) == (1 if writer_comes == "before the move aside" else 2):
            store.put(data)
        return False

    store.delete_unreferenced(blob.sha256, grace_seconds=HOUR, referenced=referenced)
    assert store.get(blob.sha256) == data
    if isinstance(store, FileAssetStore):
        assert store.temp_files() == []


def test_a_thumbnail_written_during_an_imports_clean_up_survives(env, infra):
    own = services_for(build_infrastructure(load_settings({**env, "BLOB_GRACE_SECONDS": str(HOUR)})))
    world = make_clinic(infra)
    uploads = [Upload(f"ClinCheck Stage {n}.png", encode_png(gradient_frame(n, (96, 54))).data) for n in range(4)]
    record = own.imports.start(world.actor(), source=ImportSource.FILES, uploads=uploads,
                               patient_id=world.patient.id, treatment_id=world.treatment.id, name="ClinCheck",
                               queue_analysis=False)
    analysed = own.imports.analyze(world.clinic.id, record.id)
    own.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates], queue=False)
    store = own.infra.store
    # The coordinator confirmed an hour after the analysis: every staged file is past the grace period.
    for path in store.root.glob("??/??/*"):
        os.utime(path, (time.time() - 2 * HOUR, time.time() - 2 * HOUR))
    # The renditions job of an earlier version is storing a thumbnail byte-identical to a candidate's
    # (not recorded yet) while this import commits and cleans up.
    kept = analysed.candidates[0].thumbSha256
    writing = store.get(kept)
    store.put(writing)

    done = own.imports.commit(world.clinic.id, record.id)
    assert done.state is ImportState.DONE, done.error
    assert store.get(kept) == writing  # the writer may now record it
    others = {c.thumbSha256 for c in analysed.candidates[1:]} - {kept}
    assert others and not any(store.exists(sha) for sha in others)  # the clean-up did delete the rest
    sim = own.simulations.get(world.actor(), done.simulationId)
    frames = own.infra.assets.get_many(world.clinic.id, [f.assetId for f in sim.frames])
    assert all(store.exists(a.sha256) for a in frames.values())
    assert {a.kind for a in frames.values()} == {AssetKind.FRAME}


def test_import_and_gc_share_the_rule(env, infra):
    own = build_infrastructure(load_settings({**env, "BLOB_GRACE_SECONDS": str(HOUR)}))
    orphan = own.store.put(b"left behind by a crashed import" * 10)
    assert release_blobs(own, [orphan.sha256]) == 0  # young: a writer may be about to record it
    _age(own.store, orphan.sha256, 2 * HOUR)
    assert release_blobs(own, [orphan.sha256]) == 1


@pytest.mark.worker
def test_the_workers_clean_up_unreferenced_files_once_per_period(env, infra, services):
    own_env = {**env, "GC_HOURS": "1", "BLOB_GRACE_SECONDS": str(HOUR)}
    own = services_for(build_infrastructure(load_settings(own_env)))
    world = make_clinic(infra)
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Plan", frames=new_frames(3), queue_renditions=False)
    orphan = own.infra.store.put(b"left behind by a process killed before it recorded the file" * 10)
    for path in own.infra.store.root.glob("??/??/*"):  # everything stored two hours ago...
        os.utime(path, (time.time() - 2 * HOUR, time.time() - 2 * HOUR))
    young = own.infra.store.put(b"a render job about to record its file" * 10)  # ...but this one
    started = time.time()
    worker = start_worker(own_env, infra.redis)  # its start runs maintenance, which queues the clean-up
    try:
        wait_until(lambda: not own.infra.store.exists(orphan.sha256), timeout=90, what="the scheduled gc")
    finally:
        stop_worker(worker)
    assert own.infra.store.exists(young.sha256)
    frames = own.infra.assets.get_many(world.clinic.id, [f.assetId for f in sim.frames])
    assert frames and all(own.infra.store.exists(a.sha256) for a in frames.values())
    if started // HOUR == time.time() // HOUR:  # (a new period may begin while the test runs)
        assert not schedule_gc(own)  # the period's clean-up was queued once, whoever asks again
