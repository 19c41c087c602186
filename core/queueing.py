"""Redis + RQ plumbing: queues with the JSON serializer, and the one mapping of RQ states to ours."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from core.config import Settings
from core.domain import RenditionState
from core.errors import ConfigurationError, ServiceUnavailableError

log = logging.getLogger(__name__)

#: Per-kind job settings: queue, timeout (seconds) and retries. Never rely on RQ's 180 s default.
JOB_KINDS: dict[str, dict[str, Any]] = {
    "renditions": {"queue": "renditions", "timeout": 600, "retry": Retry(max=3, interval=[5, 15, 60])},
    "imports": {"queue": "imports", "timeout": 3600, "retry": Retry(max=2, interval=[10, 30])},
    "demo": {"queue": "background", "timeout": 1800, "retry": Retry(max=2, interval=[10, 30])},
    # Rendered exports: per-type timeouts (never RQ's 180 s default), retried after a crash.
    "export-video": {"queue": "exports", "timeout": 3600, "retry": Retry(max=2, interval=[5, 30])},
    "export-gif": {"queue": "exports", "timeout": 1800, "retry": Retry(max=2, interval=[5, 30])},
    "export-pdf": {"queue": "exports", "timeout": 900, "retry": Retry(max=2, interval=[5, 30])},
    "export-assets": {"queue": "exports", "timeout": 900, "retry": Retry(max=2, interval=[5, 30])},
    "export-pptx": {"queue": "exports", "timeout": 1800, "retry": Retry(max=2, interval=[5, 30])},
    "export-pack": {"queue": "exports", "timeout": 1800, "retry": Retry(max=2, interval=[5, 30])},
    # 3D models for the viewer: decimated from the staged/iTero models after an import (derived, like renditions).
    "meshes": {"queue": "renditions", "timeout": 1800, "retry": Retry(max=2, interval=[10, 60])},
    "superimposition": {"queue": "imports", "timeout": 3600, "retry": Retry(max=2, interval=[10, 30])},
    "export-snapshot": {"queue": "exports", "timeout": 600, "retry": Retry(max=2, interval=[5, 30])},
    "export-comparison": {"queue": "exports", "timeout": 600, "retry": Retry(max=2, interval=[5, 30])},
    # Webhook deliveries: short requests, retried with growing pauses (about 4 hours in all).
    "webhook": {"queue": "interactive", "timeout": 60, "retry": Retry(max=6, interval=[2, 10, 60, 300, 1800, 10800])},
    "ping": {"queue": "interactive", "timeout": 30, "retry": None},
}


def connect_redis(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise ConfigurationError(
            "REDIS_URL is not set. `make run` starts the embedded redis-server and sets it; "
            "otherwise point it at your Redis, e.g. redis://cache.example:6379/0."
        )
    return Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10,
                          health_check_interval=30)


def queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


def enqueue(redis: Redis, kind: str, func: Callable[..., Any] | str, *ids: str, job_id: str) -> Job:
    """Enqueue `func(*ids)` on the kind's queue. Arguments are ids only (they are logged on failure).

    `func` may be the job's dotted name ("core.jobs.prepare_meshes"), as RQ allows: services then
    need not import `core.jobs`, which imports them."""
    spec = JOB_KINDS[kind]
    try:
        return queue(redis, spec["queue"]).enqueue(
            func,
            args=ids,
            job_id=job_id,
            job_timeout=spec["timeout"],
            retry=spec["retry"],
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"{kind} job",  # never the arguments: rq logs descriptions
        )
    except RedisError as exc:
        raise ServiceUnavailableError("The job queue (Redis) is not reachable.") from exc


def job_state(redis: Redis, job_id: str) -> RenditionState | None:
    """Our state for an RQ job, or None when Redis no longer knows the job. The only such mapping."""
    try:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        status = job.get_status(refresh=True)
    except (NoSuchJobError, RedisError):  # gone, or Redis down: the caller decides
        return None
    return {
        JobStatus.QUEUED: RenditionState.QUEUED,
        JobStatus.SCHEDULED: RenditionState.QUEUED,
        JobStatus.DEFERRED: RenditionState.QUEUED,
        JobStatus.STARTED: RenditionState.RUNNING,
        JobStatus.FINISHED: RenditionState.READY,
        JobStatus.FAILED: RenditionState.FAILED,
        JobStatus.STOPPED: RenditionState.FAILED,
        JobStatus.CANCELED: RenditionState.FAILED,
    }.get(status)
