"""`make run`'s launcher end to end: embedded DB + Redis, a worker, Streamlit; stop; restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from pymongo import MongoClient
from redis import Redis

from core.config import PROJECT_ROOT
from core.jobs import ping
from core.launcher import free_port
from core.queueing import enqueue
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.worker]


def _launch(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "REDIS_URL")}
    env.update({"DATA_DIR": str(data_dir), "STREAMLIT_SECRETS_PATH": str(data_dir / "none.toml"),
                "MONGODB_DB": "launcher_test"})
    return subprocess.Popen(
        [sys.executable, "-m", "core.launcher", "--port", str(port), "--workers", "1", "--demo", "mini"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def _healthy(port: int, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"launcher exited early:\n{process.stdout.read().decode()}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> str:
    descendants = psutil.Process(process.pid).children(recursive=True)
    assert len(descendants) >= 4  # database, redis, worker, streamlit
    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 0, output.decode()
    _gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
    return output.decode()


def test_launcher_runs_the_stack_stops_cleanly_and_keeps_data_across_restarts(tmp_path):
    data_dir, port = tmp_path / "var", free_port()
    first = _launch(data_dir, port)
    try:
        wait_until(lambda: _healthy(port, first), timeout=120, what="Streamlit health")
        endpoints = json.loads((data_dir / "run" / "endpoints.json").read_text())
        assert endpoints["MONGODB_URI"].startswith("mongodb://127.0.0.1:")
        redis = Redis.from_url(endpoints["REDIS_URL"])
        job = enqueue(redis, "ping", ping, "launcher", job_id="launcher-ping")
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=60, what="job round trip")
        db = MongoClient(endpoints["MONGODB_URI"])["launcher_test"]
        # Streamlit answers first; the demo seed carries on behind it.
        wait_until(lambda: db.clinics.count_documents({}) == 2, timeout=60, what="the demo clinics")
        wait_until(lambda: db.simulations.count_documents({}) >= 10, timeout=180,
                   what="demo simulations rendered by the worker")
        redis.close()
        db.client.close()
    finally:
        if first.poll() is None:
            _stop(first)
    assert (data_dir / "redis" / "appendonlydir").exists() or (data_dir / "redis" / "appendonly.aof").exists()
    assert not (data_dir / "run" / "endpoints.json").exists()

    second = _launch(data_dir, port)
    try:
        wait_until(lambda: _healthy(port, second), timeout=120, what="Streamlit health after restart")
        endpoints = json.loads((data_dir / "run" / "endpoints.json").read_text())
        db = MongoClient(endpoints["MONGODB_URI"])["launcher_test"]
        assert db.clinics.count_documents({}) == 2  # found again, not seeded twice
        assert db.users.count_documents({}) == 8
        db.client.close()
    finally:
        output = _stop(second)
    assert "first start" not in output
