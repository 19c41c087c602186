"""Shared set-up for benchmarks: real embedded servers in a temp dir, a clinic, and timing helpers."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings, load_settings
from core.db import ensure_indexes
from core.infra import build_infrastructure
from core.launcher import free_port, start_mongo, start_redis
from core.services import Services, services_for


@contextmanager
def bench_services() -> Iterator[tuple[Services, dict[str, str]]]:
    """Services on fresh embedded servers (never ./var); everything is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp)
        mongo, uri = start_mongo(root / "db", free_port(), log_path=root / "db.log")
        redis, url = start_redis(root / "redis", free_port(), log_path=root / "redis.log")
        env = {"MONGODB_URI": uri, "REDIS_URL": url, "MONGODB_DB": "bench", "DATA_DIR": str(root / "data"),
               "STREAMLIT_SECRETS_PATH": str(root / "none.toml")}
        try:
            settings: Settings = load_settings(env)
            infra = build_infrastructure(settings)
            ensure_indexes(infra.db)
            yield services_for(infra), env
            infra.db.client.close()
        finally:
            redis.stop()
            mongo.stop()


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
