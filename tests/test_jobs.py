"""Jobs through a real forking RQ worker process (worker.py) and a real redis-server."""

from __future__ import annotations

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from core.domain import AssetKind, RenditionState, SimulationType
from core.imaging import DISPLAY_SIZE, THUMB_SIZE, decode_rgb
from core.jobs import ping
from core.queueing import enqueue
from tests.conftest import wait_until
from tests.factories import make_clinic, new_frames

pytestmark = pytest.mark.worker


def test_a_job_round_trips_through_the_forking_worker(infra, worker):
    job = enqueue(infra.redis, "ping", ping, "abc", job_id="ping-test")
    wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=30, what="ping job")
    assert Job.fetch("ping-test", connection=infra.redis, serializer=JSONSerializer).return_value() == "pong:abc"


def test_renditions_are_made_by_a_job_and_the_viewer_then_serves_them(services, infra, worker):
    world = make_clinic(infra)
    actor = world.actor()
    sim = services.simulations.create_version(
        actor, patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Large frames", frames=new_frames(6, size=(1920, 1080)),
    )
    assert sim.renditions is RenditionState.PENDING  # recorded before the job ran

    ready = wait_until(
        lambda: services.simulations.get(actor, sim.id).renditions is RenditionState.READY and
        services.simulations.get(actor, sim.id), timeout=60, what="renditions")

    assert services.simulations.rendition_progress(actor, sim.id).percent == 100
    assert all(f.displayAssetId and f.thumbAssetId for f in ready.frames)
    display = decode_rgb(services.simulations.frame_images(actor, ready, ready.frames[:1], "display")[0])
    thumb = decode_rgb(services.simulations.frame_images(actor, ready, ready.frames[:1], "thumb")[0])
    assert display.shape[:2] == (DISPLAY_SIZE[1], DISPLAY_SIZE[0])
    assert thumb.shape[:2] == (THUMB_SIZE[1], THUMB_SIZE[0])
    kinds = [a.kind for a in infra.assets.list_for_patient(world.clinic.id, world.patient.id)]
    assert kinds.count(AssetKind.FRAME_DISPLAY) == 6 and kinds.count(AssetKind.FRAME_THUMB) == 6


def test_running_the_renditions_job_twice_adds_no_duplicate_assets(services, infra):
    world = make_clinic(infra)
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None,
        simulation_type=SimulationType.ALIGNER, name="x", frames=new_frames(3), queue_renditions=False)
    services.simulations.make_renditions(world.clinic.id, sim.id)
    again = services.simulations.make_renditions(world.clinic.id, sim.id)  # a retry after a crash

    assert again.renditions is RenditionState.READY
    assert infra.db.imaging_assets.count_documents({}) == 3 * 3


def test_renditions_left_pending_while_redis_was_down_are_queued_by_the_reconciler(services, infra, worker):
    world = make_clinic(infra)
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None,
        simulation_type=SimulationType.ALIGNER, name="x", frames=new_frames(2), queue_renditions=False)
    assert services.simulations.get(world.actor(), sim.id).renditions is RenditionState.PENDING

    assert services.simulations.reconcile_renditions(world.clinic.id) == 1
    wait_until(lambda: services.simulations.get(world.actor(), sim.id).renditions is RenditionState.READY,
               timeout=60, what="renditions after reconcile")
