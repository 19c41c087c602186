"""Real services for the tests: one embedded MongoDB-wire server and one redis-server per session,
started on free ports in a temp dir (never ./var). Each test gets a fresh database, a fresh Redis
database index and its own DATA_DIR."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker

from core.config import PROJECT_ROOT, Settings, load_settings
from core.infra import Infrastructure, build_infrastructure
from core.launcher import Child, free_port, start_mongo, start_redis
from core.migrations import prepare_database
from core.services import Services, services_for


@dataclass(frozen=True)
class Servers:
    mongodb_uri: str
    redis_host_port: str
    root: Path


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("servers")
    children: list[Child] = []
    try:
        mongo, uri = start_mongo(root / "db", free_port(), log_path=root / "db.log")
        children.append(mongo)
        redis, url = start_redis(root / "redis", free_port(), log_path=root / "redis.log")
        children.append(redis)
        yield Servers(uri, url.rsplit("/", 1)[0], root)
    finally:
        for child in reversed(children):
            child.stop()


_redis_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def env(servers: Servers, tmp_path: Path) -> dict[str, str]:
    """Environment for this test's settings (and for any worker/launcher it starts)."""
    return fresh_env(servers, tmp_path)


def fresh_env(servers: Servers, tmp_path: Path) -> dict[str, str]:
    """A fresh database name, Redis database and DATA_DIR under `tmp_path` (module-scoped fixtures use it too)."""
    redis_url = f"{servers.redis_host_port}/{next(_redis_dbs)}"
    Redis.from_url(redis_url).flushdb()
    values = {
        "MONGODB_URI": servers.mongodb_uri,
        "MONGODB_DB": f"t_{uuid.uuid4().hex[:12]}",
        "REDIS_URL": redis_url,
        "DATA_DIR": str(tmp_path / "data"),
        "ASSET_STORE": "files",
        "STREAMLIT_SECRETS_PATH": str(tmp_path / "no-secrets.toml"),
        "WORKER_MONITORING_INTERVAL": "2",
        "WORKER_MAINTENANCE_INTERVAL": "5",
        "MAINTENANCE_SECONDS": "5",
        "EXPORT_LEASE_SECONDS": "4",
        "BLOB_GRACE_SECONDS": "0",  # clean-ups delete at once here; tests of the grace period set it
        "GC_HOURS": "0",  # with no grace, a scheduled gc could race a job's write; the gc test turns it on
    }
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
def infra(settings: Settings) -> Iterator[Infrastructure]:
    infra = build_infrastructure(settings)
    prepare_database(infra)  # as `make run` does: indexes, and the migrations recorded as done
    yield infra
    infra.db.client.drop_database(settings.mongodb_db)
    infra.db.client.close()


@pytest.fixture
def services(infra: Infrastructure) -> Services:
    return services_for(infra)


def start_worker(env: dict[str, str], redis: Redis) -> subprocess.Popen:
    """A real `python worker.py` (forking RQ worker) bound to this test's database and Redis db."""
    name = f"test-worker-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [sys.executable, "worker.py", "--name", name], cwd=PROJECT_ROOT,
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not any(w.name == name for w in Worker.all(connection=redis)):
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read().decode() if process.stdout else ""
            process.kill()
            pytest.fail(f"worker did not start:\n{output}")
        time.sleep(0.1)
    return process


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it does not stop within 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def stop_worker(process: subprocess.Popen) -> None:
    stop_process(process)
    if process.stdout:
        process.stdout.close()


def start_streamlit(env: dict[str, str], log: Path, *extra_args: str,
                    port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on loopback (a free port unless given); returns once /_stcore/health answers."""
    port = port or free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", *extra_args],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"Streamlit exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                return response.read() == b"ok"
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=60, what="Streamlit")
    except BaseException:
        stop_process(process)
        raise
    return process, f"http://127.0.0.1:{port}"


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def page() -> Iterator[object]:
    """A Playwright page in Debian's headless Chromium (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(30_000)
        yield context.new_page()
        browser.close()


@pytest.fixture
def app_env(env: dict[str, str], infra: Infrastructure, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The test's settings in os.environ for in-process AppTest runs, with Streamlit caches cleared."""
    import streamlit as st

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DEV_SIGNIN", "1")
    st.cache_resource.clear()
    st.cache_data.clear()
    yield env
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def worker(env: dict[str, str], infra: Infrastructure) -> Iterator[subprocess.Popen]:
    process = start_worker(env, infra.redis)
    yield process
    stop_worker(process)


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (for real asynchronous work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
