"""RQ entry points. Top-level functions that take ids only (RQ logs arguments on failure).

A work-horse builds its own clients on first use: a forked process must not reuse its parent's
MongoClient, so the runtime is keyed by process id.
"""

from __future__ import annotations

import logging
import os
import time

from rq import get_current_job

from core.config import load_settings
from core.services import Services, build_services

log = logging.getLogger(__name__)
_runtime: tuple[int, Services] | None = None


def services() -> Services:
    """This process's services, built from settings on first use (after any fork)."""
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        _runtime = (os.getpid(), build_services(load_settings()))
    return _runtime[1]


def _report(percent: int, step: str) -> None:
    job = get_current_job()
    if job is not None:
        job.meta.update({"progress": percent, "step": step})
        job.save_meta()


def make_renditions(clinic_id: str, simulation_id: str) -> int:
    """Display renditions + thumbnails of a simulation's frames. Returns the frame count."""
    sim = services().simulations.make_renditions(clinic_id, simulation_id, progress=_report)
    return sim.frameCount


def render_export(clinic_id: str, export_id: str) -> str:
    """Render a queued export (video, GIF, PDF, frames ZIP) and commit it to the patient's record."""
    job = get_current_job()
    final = job is None or not job.retries_left
    return services().exports.run(clinic_id, export_id, final_attempt=final).state.value


def analyze_import(clinic_id: str, import_id: str) -> str:
    """Read and check an import's files and propose its frames (state PREVIEW or FAILED)."""
    record = services().imports.analyze(clinic_id, import_id, progress=_report)
    return record.state.value


def commit_import(clinic_id: str, import_id: str) -> str:
    """Create the simulation version from an accepted preview (state DONE or FAILED)."""
    record = services().imports.commit(clinic_id, import_id, progress=_report)
    return record.state.value


def deliver_webhook(clinic_id: str, delivery_id: str) -> str:
    """POST one signed webhook delivery; raises on failure so RQ retries it with back-off."""
    job = get_current_job()
    final = job is None or not job.retries_left
    return services().webhooks.deliver(clinic_id, delivery_id, final_attempt=final)


def prepare_meshes(clinic_id: str, simulation_id: str) -> str:
    """Decimate a version's staged/iTero models for the 3D viewer and measure movement (state READY or FAILED)."""
    return services().meshes.prepare(clinic_id, simulation_id, progress=_report).state.value


def make_superimposition(clinic_id: str, simulation_id: str, user_id: str, new_id: str) -> str | None:
    """Render a version's movement map stage by stage into a new SUPERIMPOSITION version (its id, or None)."""
    sim = services().meshes.make_superimposition(clinic_id, simulation_id, user_id, new_id, progress=_report)
    return sim.id if sim else None


def maintenance() -> int:
    """Sync drop folders and re-queue stranded work, then schedule the next run. Returns work picked up."""
    svc = services()
    try:
        picked = svc.integrations.sync_all()
        for clinic_id in svc.infra.clinics.list_ids():
            picked += svc.exports.reconcile(clinic_id) + svc.simulations.reconcile_renditions(clinic_id)
            picked += svc.meshes.reconcile(clinic_id) + svc.webhooks.reconcile(clinic_id)
            svc.api_tokens.purge_keys(clinic_id)
        schedule_gc(svc)
        return picked
    finally:
        schedule_maintenance(svc, delay=svc.infra.settings.maintenance_seconds)


def schedule_maintenance(svc: Services, *, delay: int = 0) -> None:
    """Queue the next maintenance run; one per time bucket, however many workers ask."""
    from datetime import timedelta

    from core.queueing import queue

    interval = svc.infra.settings.maintenance_seconds
    bucket = int((time.time() + delay) // interval)
    target = queue(svc.infra.redis, "interactive")
    kwargs = {"job_id": f"maintenance-{bucket}", "description": "maintenance", "job_timeout": 1800,
              "result_ttl": 600, "failure_ttl": 86400}
    if delay:
        target.enqueue_in(timedelta(seconds=delay), maintenance, **kwargs)
    else:
        target.enqueue(maintenance, **kwargs)


def schedule_gc(svc: Services) -> bool:
    """Queue the clean-up of unreferenced stored files once per `GC_HOURS` period (the first maintenance
    run of the period wins a Redis claim; the others skip). Whether this call queued it."""
    from core.queueing import queue

    hours = svc.infra.settings.gc_hours
    if hours <= 0:
        return False
    interval = max(60, int(hours * 3600))
    bucket = int(time.time() // interval)
    if not svc.infra.redis.set(f"tss:gc:{bucket}", "queued", nx=True, ex=2 * interval):
        return False
    queue(svc.infra.redis, "background").enqueue(
        collect_stored_garbage, job_id=f"gc-{bucket}", description="gc", job_timeout=6 * 3600,
        result_ttl=7 * 24 * 3600, failure_ttl=7 * 24 * 3600)
    return True


def collect_stored_garbage() -> int:
    """Delete stored files no record refers to and nobody wrote within BLOB_GRACE_SECONDS (left by a
    process killed between writing a file and recording it). Returns how many were deleted."""
    from core.blobs import collect_garbage

    svc = services()
    removed = collect_garbage(svc.infra, older_than_seconds=svc.infra.settings.blob_grace_seconds)
    log.info("gc: removed %d unreferenced stored file(s)", removed)
    return removed


def render_demo_simulation(clinic_id: str, patient_id: str, treatment_id: str, index: str, profile: str) -> int:
    """Render one demo simulation's versions as the clinic's coordinator (first-start seeding)."""
    from core.demo.seed import render_demo_simulation as render
    from core.domain import Role
    from core.permissions import Actor

    svc = services()
    coordinator = next(u for u in svc.infra.users.list(clinic_id) if u.role is Role.COORDINATOR)
    return render(svc, Actor(coordinator), patient_id, treatment_id, index=int(index), profile=profile)  # type: ignore[arg-type]


def render_demo_photos(clinic_id: str, patient_id: str, profile: str) -> int:
    """Render one demo patient's clinical photos as the clinic's coordinator (first-start seeding)."""
    from core.demo.seed import render_demo_photos as render
    from core.domain import Role
    from core.permissions import Actor

    svc = services()
    coordinator = next(u for u in svc.infra.users.list(clinic_id) if u.role is Role.COORDINATOR)
    return render(svc, Actor(coordinator), patient_id, profile=profile)  # type: ignore[arg-type]


def ping(value: str) -> str:
    """A no-op job used by health checks and the launcher test to prove the queue round-trips."""
    return f"pong:{value}"
