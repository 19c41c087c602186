"""Exactly-once exports: lease tokens, a heartbeat independent of progress, one file record per export.

Real embedded database, real redis-server, real forking workers whose work-horses are SIGKILLed."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import numpy as np
import psutil
import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from core.domain import AssetKind, ExportState, ExportType, FrameRange, Role, SimulationType
from core.imaging import encode_png
from core.repositories.base import utcnow
from core.services.exports import ACTIVE_STATES, RenderRequest
from core.services.simulations import NewFrame
from tests.conftest import start_worker, stop_worker, wait_until
from tests.factories import make_clinic, new_frames

pytestmark = pytest.mark.worker

FINAL = (ExportState.DONE, ExportState.FAILED, ExportState.CANCELLED)


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def _sim(services, world, frames):
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Plan", frames=frames, queue_renditions=False)
    services.review.approve(world.actor(Role.DOCTOR), sim.id)
    return sim


def _noise_frames(count: int, size: tuple[int, int]) -> list[NewFrame]:
    """Frames that do not compress: a GIF of them needs several slow shrinking attempts."""
    rng = np.random.default_rng(7)
    return [NewFrame(stage, "front", encode_png(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)),
                     f"Stage {stage}") for stage in range(count)]


def test_a_superseded_attempt_can_neither_renew_report_nor_finish(services, world, infra):
    sim = _sim(services, world, new_frames(3))
    export = services.exports.request(world.actor(), sim.id, RenderRequest(ExportType.ASSETS))
    exports = infra.exports
    first = exports.claim(world.clinic.id, export.id, from_states=ACTIVE_STATES, token="a" * 32, lease_seconds=30)
    assert first is not None and first.attempts == 1
    # A live lease keeps a second attempt and the maintenance job out.
    assert exports.claim(world.clinic.id, export.id, from_states=ACTIVE_STATES, token="b" * 32,
                         lease_seconds=30) is None
    assert services.exports.reconcile(world.clinic.id) == 0

    # The first attempt stalls past its lease: maintenance queues it again, a second attempt claims it.
    infra.db.simulation_exports.update_one({"_id": ObjectId(export.id)},
                                           {"$set": {"leaseUntil": utcnow() - timedelta(seconds=1)}})
    assert services.exports.reconcile(world.clinic.id) == 1
    second = exports.claim(world.clinic.id, export.id, from_states=ACTIVE_STATES, token="b" * 32, lease_seconds=30)
    assert second is not None and second.attempts == 2  # one per real attempt, not per recovery

    assert not exports.renew_lease(world.clinic.id, export.id, token="a" * 32, lease_seconds=30)
    assert not exports.report_progress(world.clinic.id, export.id, 50, "late", 30, token="a" * 32)
    assert exports.transition(world.clinic.id, export.id, from_states=(ExportState.RUNNING,), to=ExportState.DONE,
                              token="a" * 32) is None
    assert exports.transition(world.clinic.id, export.id, from_states=(ExportState.RUNNING,),
                              to=ExportState.FAILED, token="a" * 32) is None
    current = exports.get(world.clinic.id, export.id)
    assert current.state is ExportState.RUNNING and current.progress == 0
    assert exports.renew_lease(world.clinic.id, export.id, token="b" * 32, lease_seconds=30)


def test_an_export_can_have_only_one_file_record(services, world, infra):
    sim = _sim(services, world, new_frames(2))
    export_id = str(ObjectId())

    def doc():
        return infra.assets.new_document(world.clinic.id, patient_id=world.patient.id, kind=AssetKind.EXPORT,
                                         content_type="application/zip", size=1, sha256="0" * 64,
                                         created_by=world.users[Role.COORDINATOR].id, simulation_id=sim.id,
                                         export_id=export_id)

    infra.assets.insert(world.clinic.id, doc())
    with pytest.raises(DuplicateKeyError):
        infra.assets.insert(world.clinic.id, doc())
    # Records without an export (frames, photos) are not limited by the index.
    frame = infra.assets.new_document(world.clinic.id, patient_id=world.patient.id, kind=AssetKind.PHOTO,
                                      content_type="image/png", size=1, sha256="1" * 64,
                                      created_by=world.users[Role.COORDINATOR].id)
    infra.assets.insert_many(world.clinic.id, [frame, {**frame, "_id": ObjectId()}])
    assert infra.db.imaging_assets.count_documents({"exportId": ObjectId(export_id)}) == 1


def test_a_render_slower_than_the_lease_is_not_taken_over(services, world, env, infra):
    lease = 2  # seconds; GIF attempts report progress far less often than that
    worker = start_worker({**env, "EXPORT_LEASE_SECONDS": str(lease)}, infra.redis)
    try:
        sim = _sim(services, world, _noise_frames(8, (960, 540)))
        request = RenderRequest(ExportType.GIF, seconds_per_stage=0.5, gif_max_megabytes=4.0)
        export = services.exports.request(world.actor(), sim.id, request)
        requeued, longest_silence = 0, 0.0
        last_seen, last_change = None, None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            current = infra.exports.get(world.clinic.id, export.id)
            if current.state in FINAL:
                break
            if current.state is ExportState.RUNNING:
                now = time.monotonic()
                seen = (current.progress, current.step)
                if seen != last_seen:
                    last_seen, last_change = seen, now
                longest_silence = max(longest_silence, now - last_change)
                requeued += services.exports.reconcile(world.clinic.id)  # maintenance, as often as it likes
            time.sleep(0.2)
        done = infra.exports.get(world.clinic.id, export.id)
    finally:
        stop_worker(worker)
    assert done.state is ExportState.DONE, done.error
    assert longest_silence > 1.5 * lease, "the render reported progress too often to need its heartbeat"
    assert requeued == 0 and done.attempts == 1
    assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 1


def test_twenty_requests_from_five_threads_with_two_killed_work_horses_give_twenty_files(
        services, world, env, infra, settings):
    sims = [_sim(services, world, new_frames(6, size=(640, 360))) for _ in range(4)]
    requests = [RenderRequest(ExportType.VIDEO, preset="720p", seconds_per_stage=0.2 + 0.1 * n,
                              hold_final_seconds=0.5, title_card=False, end_card=False) for n in range(5)]
    wanted = [(sim, req) for sim in sims for req in requests]  # 20 different exports
    workers = [start_worker(env, infra.redis) for _ in range(2)]
    ids: list[str] = []
    lock = threading.Lock()

    def ask(share: list) -> None:
        for sim, req in share:
            export = services.exports.request(world.actor(), sim.id, req)
            with lock:
                ids.append(export.id)

    try:
        threads = [threading.Thread(target=ask, args=(wanted[n::5],)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kills = 0
        deadline = time.monotonic() + 120
        while kills < 2 and time.monotonic() < deadline:
            running = [e for e in infra.exports.list_by_ids(world.clinic.id, ids)
                       if e.state is ExportState.RUNNING and e.progress >= 5]
            horses = [h for w in workers for h in psutil.Process(w.pid).children()]
            if running and horses:
                horses[0].send_signal(signal.SIGKILL)
                kills += 1
                time.sleep(1.5)  # let the worker notice before looking for the next horse
            time.sleep(0.1)
        assert kills == 2, "no render was caught running"
        wait_until(lambda: all(e.state in FINAL for e in infra.exports.list_by_ids(world.clinic.id, ids)),
                   timeout=180, interval=0.5, what="20 exports")
    finally:
        for w in workers:
            stop_worker(w)
    finished = infra.exports.list_by_ids(world.clinic.id, ids)
    assert len(set(ids)) == 20 and infra.db.simulation_exports.count_documents({}) == 20
    assert [e.error for e in finished if e.state is not ExportState.DONE] == []
    assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 20
    linked = {e.asset_id for e in finished}
    assert linked == {str(d["_id"]) for d in infra.db.imaging_assets.find({"kind": AssetKind.EXPORT.value})}
    assert sum(e.attempts for e in finished) <= 20 + 2 * 2  # a kill costs at most a retry and its claim
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_a_request_while_redis_is_frozen_is_kept_pending_and_rendered_once_redis_thaws(env, tmp_path, infra):
    from core.config import load_settings
    from core.infra import build_infrastructure
    from core.launcher import free_port, start_redis
    from core.services import services_for

    child, url = start_redis(tmp_path / "own-redis", free_port())
    own_env = {**env, "REDIS_URL": url}
    own = services_for(build_infrastructure(load_settings(own_env)))
    world = make_clinic(infra)
    sim = _sim(own, world, new_frames(3))
    worker = start_worker(own_env, own.infra.redis)
    try:
        child.process.send_signal(signal.SIGSTOP)  # Redis hangs: connections open, nothing answers
        started = time.monotonic()
        export = own.exports.request(world.actor(), sim.id, RenderRequest(ExportType.ASSETS))
        assert time.monotonic() - started < 20  # the request gives up on the queue, not on the user
        assert export.state is ExportState.PENDING
        assert infra.db.simulation_exports.count_documents({}) == 1
        child.process.send_signal(signal.SIGCONT)
        done = wait_until(lambda: (e := own.exports.get(world.actor(), export.id)).state in FINAL and e,
                          timeout=90, interval=0.5, what="the pending export")  # the maintenance job queues it
        assert done.state is ExportState.DONE, done.error
        assert done.attempts == 1
        assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 1
    finally:
        child.process.send_signal(signal.SIGCONT)
        stop_worker(worker)
        child.stop()


def test_duplicate_file_records_from_before_fencing_are_detached_when_the_unique_index_is_built(
        services, world, infra):
    from core.repositories.assets import AssetRepository

    sim = _sim(services, world, new_frames(2))
    export = infra.exports.create(world.clinic.id, simulation_id=sim.id, export_type=ExportType.GIF, settings={},
                                  frame_range=FrameRange(0, 1),
                                  created_by=world.users[Role.COORDINATOR].id)
    infra.db.imaging_assets.drop_index("one_file_per_export")  # a database written by an earlier release

    def doc(sha: str):
        return infra.assets.new_document(world.clinic.id, patient_id=world.patient.id, kind=AssetKind.EXPORT,
                                         content_type="image/gif", size=1, sha256=sha,
                                         created_by=world.users[Role.COORDINATOR].id, simulation_id=sim.id,
                                         export_id=export.id)

    first, linked = doc("a" * 64), doc("b" * 64)
    infra.assets.insert_many(world.clinic.id, [first, linked])
    infra.db.simulation_exports.update_one({"_id": ObjectId(export.id)},
                                           {"$set": {"gifUrl": f"asset://{linked['_id']}"}})

    AssetRepository.ensure_indexes(infra.db)  # what the next start does

    kept = list(infra.db.imaging_assets.find({"exportId": ObjectId(export.id)}))
    assert [d["_id"] for d in kept] == [linked["_id"]]  # the record the export links to stays attached
    detached = infra.db.imaging_assets.find_one({"_id": first["_id"]})
    assert detached is not None and detached["exportId"] is None  # kept, not deleted
    assert "one_file_per_export" in infra.db.imaging_assets.index_information()
    with pytest.raises(DuplicateKeyError):
        infra.assets.insert(world.clinic.id, doc("c" * 64))
