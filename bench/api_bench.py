"""The HTTP API under load: 16 concurrent clients against one server process (server.py), on the scale dataset.

Reuses the scale bench's cached dataset (N simulation versions; built once under var/bench/scale-N by
bench/scale_bench.py's `dataset()`), starts `streamlit run server.py` on it, makes an API token for the
clinic's coordinator, then runs two phases of --seconds each with --clients threads:

1. `GET /api/imaging/simulations/{id}` of random versions (details; the spec's hot path),
2. `GET /api/imaging/patients/{id}/simulations` of random patients (a list page of 50),
3. details again, paced at --paced-rate calls per second in all (the latency at the throughput goal,
   where 1 and 2 measure it at saturation: 16 clients that never pause wait clients ÷ throughput in line).

Every call is a real HTTP request with a Bearer token (authenticated, rate-checked and audited).

    python bench/api_bench.py [--simulations 100000] [--clients 16] [--seconds 30] [--paced-rate 150]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import httpx
from _harness import p95
from scale_bench import dataset

from core.config import PROJECT_ROOT
from core.domain import Role
from core.launcher import DEFAULT_DB_CACHE, free_port
from core.permissions import ROLE_PERMISSIONS, Actor


def log(message: str) -> None:
    print(message, flush=True)


def start_server(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not answer within 90 s")


def load(url: str, token: str, paths: Callable[[random.Random], str], *, clients: int, seconds: float,
         rate: float | None = None) -> tuple[list[float], int, int]:
    """(latencies in seconds of successful calls, successful calls, failed calls) of `clients` threads.

    Without `rate` each client calls again as soon as it has its answer (saturation: latency is then
    mostly waiting in line, clients ÷ throughput). With `rate` (calls per second, all clients together)
    calls start on a fixed schedule and latency counts from the scheduled start, so a slow answer that
    delays the next call is not hidden (no coordinated omission)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    begin = time.perf_counter()
    stop = begin + seconds
    interval = clients / rate if rate else 0.0

    def client(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        failed = 0
        due = begin + interval * seed / clients
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while (now := time.perf_counter()) < stop:
                if rate:
                    if due > now:
                        time.sleep(due - now)
                    started, due = due, due + interval
                else:
                    started = now
                answer = http.get(paths(rng))
                elapsed = time.perf_counter() - started
                if answer.status_code == 200:
                    mine.append(elapsed)
                else:
                    failed += 1
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies), failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--paced-rate", type=float, default=150.0,
                        help="calls per second of the paced details phase (the throughput goal)")
    parser.add_argument("--cache-size", default=os.environ.get("EMBEDDED_DB_CACHE", DEFAULT_DB_CACHE))
    args = parser.parse_args()

    with dataset(args.simulations, cache_size=args.cache_size, rebuild=False) as (services, world, env, _mongo):
        admin = Actor(services.infra.users.get(world.clinic_id, world.users[Role.ADMIN.value]))
        coordinator = world.users[Role.COORDINATOR.value]
        token, record = services.api_tokens.create(admin, user_id=coordinator, name="api bench",
                                                   permissions=set(ROLE_PERMISSIONS[Role.COORDINATOR]), days=1)
        root = PROJECT_ROOT / "var" / "bench" / f"scale-{args.simulations}"
        server_env = {**env, "API_RATE_PER_MINUTE": "1000000", "DEV_SIGNIN": "0"}
        process, url = start_server(server_env, root / "api-server.log")
        try:
            warm = httpx.get(f"{url}/api/imaging/simulations/{world.simulation_ids[0]}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
            if warm.status_code != 200:
                raise SystemExit(f"the API answered {warm.status_code}: {warm.text}")
            sims, patients = world.simulation_ids, world.patient_ids
            log(f"{len(sims):,} versions sampled; {args.clients} clients × {args.seconds:.0f} s per phase")
            details, ok, failed = load(url, token, lambda r: f"/api/imaging/simulations/{r.choice(sims)}",
                                       clients=args.clients, seconds=args.seconds)
            log(f"details: {ok:,} calls ({failed} failed), p50 {sorted(details)[len(details) // 2] * 1000:.1f} ms")
            rate = ok / args.seconds
            paced, paced_ok, paced_failed = load(url, token, lambda r: f"/api/imaging/simulations/{r.choice(sims)}",
                                                 clients=args.clients, seconds=args.seconds, rate=args.paced_rate)
            failed += paced_failed
            log(f"details at {args.paced_rate:.0f} calls/s: {paced_ok:,} calls, "
                f"p50 {sorted(paced)[len(paced) // 2] * 1000:.1f} ms")
            lists, list_ok, list_failed = load(
                url, token, lambda r: f"/api/imaging/patients/{r.choice(patients)}/simulations?limit=50",
                clients=args.clients, seconds=args.seconds)
            log(f"lists: {list_ok:,} calls ({list_failed} failed), p50 {sorted(lists)[len(lists) // 2] * 1000:.1f} ms")
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
            services.api_tokens.revoke(admin, record.id)
    if failed or list_failed:
        log(f"warning: {failed + list_failed} calls did not answer 200")
    print(f"api_get_simulation_p95_ms: {p95(details) * 1000:.1f}")
    print(f"api_list_p95_ms: {p95(lists) * 1000:.1f}")
    print(f"api_requests_per_s: {rate:.1f}")
    print(f"api_get_simulation_p95_ms_at_{args.paced_rate:.0f}_per_s: {p95(paced) * 1000:.1f}")


if __name__ == "__main__":
    main()
