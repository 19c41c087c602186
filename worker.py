"""RQ worker: settings → Redis/Mongo → a forking worker on the named queues.

Importable without Streamlit. Run `python worker.py` (the launcher does) on as many machines as you
like, all pointing at the same MONGODB_URI / REDIS_URL (and ASSET_STORE=gridfs or a shared DATA_DIR).
"""

from __future__ import annotations

import argparse
import logging
import sys

from rq import Worker
from rq.serializers import JSONSerializer

from core.config import Settings, load_settings
from core.errors import StudioError
from core.infra import build_infrastructure
from core.queueing import connect_redis, queue
from core.services import services_for


def build_worker(settings: Settings, *, name: str | None = None) -> Worker:
    redis = connect_redis(settings)
    return Worker(
        [queue(redis, q) for q in settings.worker_queues],
        name=name,
        connection=redis,
        serializer=JSONSerializer,
        job_monitoring_interval=settings.worker_monitoring_interval,
        maintenance_interval=settings.worker_maintenance_interval,
        worker_ttl=settings.worker_ttl,
        log_job_description=False,  # descriptions/arguments never reach the logs
    )


def reconcile(settings: Settings) -> None:
    """Start the maintenance cycle (it re-queues stranded work and keeps rescheduling itself)."""
    from core.jobs import schedule_maintenance

    schedule_maintenance(services_for(build_infrastructure(settings)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", help="worker name (default: generated)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        reconcile(settings)
        worker = build_worker(settings, name=args.name)
    except StudioError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    worker.work(burst=args.burst, logging_level="INFO", with_scheduler=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
