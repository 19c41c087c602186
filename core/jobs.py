"""RQ entry points. Top-level functions that take ids only (RQ logs arguments on failure).

A work-horse builds its own clients on first use: a forked process must not reuse its parent's
MongoClient, so the runtime is keyed by process id.
"""

from __future__ import annotations

import os
import time

from rq import get_current_job

from core.config import load_settings
from core.services import Services, build_services

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


def analyze_import(clinic_id: str, import_id: str) -> str:
    """Read and check an import's files and propose its frames (state PREVIEW or FAILED)."""
    record = services().imports.analyze(clinic_id, import_id, progress=_report)
    return record.state.value


def commit_import(clinic_id: str, import_id: str) -> str:
    """Create the simulation version from an accepted preview (state DONE or FAILED)."""
    record = services().imports.commit(clinic_id, import_id, progress=_report)
    return record.state.value


def sync_integrations() -> int:
    """Pick up new exports from every enabled drop folder, then schedule the next run."""
    from datetime import timedelta

    from core.queueing import queue

    svc = services()
    try:
        return svc.integrations.sync_all()
    finally:
        interval = svc.infra.settings.integration_sync_seconds
        bucket = int(time.time() // interval) + 1
        queue(svc.infra.redis, "imports").enqueue_in(
            timedelta(seconds=interval), sync_integrations, job_id=f"integrations-sync-{bucket}",
            description="integrations sync", job_timeout=1800)


def render_demo_simulation(clinic_id: str, patient_id: str, treatment_id: str, index: str, profile: str) -> int:
    """Render one demo simulation's versions as the clinic's coordinator (first-start seeding)."""
    from core.demo.seed import render_demo_simulation as render
    from core.domain import Role
    from core.permissions import Actor

    svc = services()
    coordinator = next(u for u in svc.infra.users.list(clinic_id) if u.role is Role.COORDINATOR)
    return render(svc, Actor(coordinator), patient_id, treatment_id, index=int(index), profile=profile)  # type: ignore[arg-type]


def ping(value: str) -> str:
    """A no-op job used by health checks and the launcher test to prove the queue round-trips."""
    return f"pong:{value}"
