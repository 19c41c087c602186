"""A canary patient name used in a full flow appears nowhere outside the database: not in Redis, not
in worker logs, not in file names or stored file metadata."""

from __future__ import annotations

import os
import signal
from datetime import date

import pytest

from core.domain import ImportSource, ImportState, Role
from core.imaging import encode_png
from core.services.imports import Upload
from core.services.visuals import OutputSpec, Overlays, SnapshotSpec
from tests.conftest import wait_until
from tests.factories import gradient_frame, make_clinic

CANARY_LAST, CANARY_FIRST = "Zqxcanarywick", "Quillona"

pytestmark = pytest.mark.worker


def test_the_canary_name_stays_in_the_database(services, infra, worker, settings):
    world = make_clinic(infra)
    patient = infra.patients.create(world.clinic.id, first_name=CANARY_FIRST, last_name=CANARY_LAST,
                                    date_of_birth=date(2010, 5, 5), chart_number="CAN-1")
    actor = services.sessions.load_actor(world.users[Role.COORDINATOR].id)
    # file names that carry the patient's name, as vendors often write them
    uploads = [Upload(f"{CANARY_LAST}_{CANARY_FIRST}_Stage {n}.png", encode_png(gradient_frame(n)).data)
               for n in range(3)]
    record = services.imports.start(actor, source=ImportSource.FILES, patient_id=patient.id, uploads=uploads,
                                    name=f"{CANARY_LAST} ClinCheck")
    preview = wait_until(lambda: (r := services.imports.get(actor, record.id)).state is ImportState.PREVIEW and r,
                         timeout=60, what="analysis")
    services.imports.confirm(actor, record.id, order=[c.key for c in preview.candidates])
    done = wait_until(lambda: (r := services.imports.get(actor, record.id)).state is ImportState.DONE and r,
                      timeout=60, what="import")
    sim_id = done.simulationId
    wait_until(lambda: services.simulations.get(actor, sim_id).renditions.value == "READY", timeout=60,
               what="renditions")
    services.review.approve(services.sessions.load_actor(world.users[Role.DOCTOR].id), sim_id)
    result = services.visuals.export_snapshot(actor, sim_id, SnapshotSpec(
        1, output=OutputSpec(size="4x6", fmt="jpeg"), overlays=Overlays(patient="full")))
    _, file_name, _ = services.visuals.download(actor, result.asset.id)

    # Redis: every key and every value
    redis = infra.redis
    for key in redis.scan_iter(count=1000):
        assert CANARY_LAST.encode() not in key
        kind = redis.type(key)
        values = {b"string": lambda k: [redis.get(k)], b"hash": lambda k: list(redis.hgetall(k).values()),
                  b"list": lambda k: redis.lrange(k, 0, -1), b"set": lambda k: list(redis.smembers(k)),
                  b"zset": lambda k: [m for m, _ in redis.zrange(k, 0, -1, withscores=True)]}.get(kind, lambda k: [])
        for value in values(key):
            assert CANARY_LAST.encode() not in (value or b""), key
            assert CANARY_FIRST.encode() not in (value or b""), key

    # the worker's log
    os.killpg(worker.pid, signal.SIGTERM)
    output = worker.communicate(timeout=30)[0].decode()
    assert "Job OK" in output or "Successfully completed" in output or "renditions" in output
    assert CANARY_LAST not in output and CANARY_FIRST not in output

    # file names on disk, and the downloaded file's name
    names = [p.name for p in settings.data_dir.rglob("*")]
    assert names and not any(CANARY_LAST in n or CANARY_FIRST in n for n in names)
    assert CANARY_LAST not in file_name
    # stored exports carry the name only in their pixels (the caption the user asked for), not in metadata
    data = infra.store.get(result.asset.sha256)
    assert CANARY_LAST.encode() not in data and CANARY_FIRST.encode() not in data
