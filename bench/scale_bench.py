"""Every page and service call at the size of a real orthodontic group, on the embedded database.

Builds (once; cached under var/bench/scale-N) a synthetic clinic of N simulation versions with the
proportions of a 10,000-patient group (core/fixtures/scale.py), and the same at N/100, then measures
p95 over --reps repetitions of each service operation and of a headless AppTest open of each page
(server time of the script run), the growth of each p95 from N/100 to N, a full `audit verify` of the
trail through the CLI, and the embedded server's memory.

    python bench/scale_bench.py [--simulations 100000] [--reps 40] [--cache-size 256M] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _harness import p95

from core.config import PROJECT_ROOT, load_settings
from core.domain import Role
from core.fixtures.scale import ScaleSpec, ScaleWorld, build_scale_clinic
from core.launcher import DEFAULT_DB_CACHE, free_port, start_mongo, start_redis
from core.migrations import prepare_database
from core.permissions import Actor
from core.services import Services, build_services

CACHE = PROJECT_ROOT / "var" / "bench"
PAGES = {"patients": Role.COORDINATOR, "simulation": Role.COORDINATOR, "compare": Role.COORDINATOR,
         "gallery": Role.COORDINATOR, "exports": Role.COORDINATOR, "decks": Role.COORDINATOR,
         "imports": Role.COORDINATOR, "review": Role.DOCTOR, "audit": Role.ADMIN, "users": Role.ADMIN,
         "integrations": Role.ADMIN, "clinic": Role.ADMIN}


def log(message: str) -> None:
    print(message, flush=True)


#: The bulk load runs the server standalone, without its change log (oplog): with it, every 1,000 inserts
#: the server walks the log's oldest entries, and past ~500,000 inserts in one load that walk made inserts
#: 5–10× slower (measured; a restart did not help). The load uses no transactions, which need the log;
#: the benchmark then serves the data in the normal (replica-set) mode, as `make run` does.
_BULK_LOAD = ("--standalone",)


def _env(root: Path, uri: str, url: str) -> dict[str, str]:
    return {"MONGODB_URI": uri, "REDIS_URL": url, "MONGODB_DB": "scale", "DATA_DIR": str(root / "data"),
            "STREAMLIT_SECRETS_PATH": str(root / "none.toml"), "DEV_SIGNIN": "1"}


def _build(root: Path, simulations: int, cache_size: str) -> None:
    log(f"building the {simulations:,}-version dataset (once; cached in {root})")
    mongo, uri = start_mongo(root / "db", free_port(), log_path=root / "db.log", cache_size=cache_size,
                             extra_args=_BULK_LOAD)
    try:
        services = build_services(load_settings(_env(root, uri, "redis://127.0.0.1:1/0")))
        started = time.monotonic()
        prepare_database(services.infra)
        world = build_scale_clinic(services.infra, ScaleSpec(simulations),
                                   progress=lambda m: log(f"  {time.monotonic() - started:6.0f} s  {m}"))
        services.infra.db.client.close()
        log(f"  loaded in {time.monotonic() - started:.0f} s")
    finally:
        mongo.stop()
    (root / "world.json").write_text(json.dumps(world.as_dict()))


@contextmanager
def dataset(simulations: int, *, cache_size: str, rebuild: bool) -> Iterator[tuple[Services, ScaleWorld, dict, Any]]:
    """The cached dataset of this size, served by a fresh embedded server (built first if missing)."""
    root = CACHE / f"scale-{simulations}"
    marker = root / "world.json"
    if rebuild or not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        _build(root, simulations, cache_size)
    started = time.monotonic()
    mongo, uri = start_mongo(root / "db", free_port(), log_path=root / "db.log", cache_size=cache_size)
    startup = time.monotonic() - started
    redis, url = start_redis(root / "redis", free_port(), log_path=root / "redis.log")
    env = _env(root, uri, url)
    try:
        services = build_services(load_settings(env))
        started = time.monotonic()
        prepare_database(services.infra)
        log(f"dataset scale-{simulations}: server up in {startup:.1f} s, start-up checks (indexes, migrations) "
            f"{time.monotonic() - started:.2f} s, server RSS {rss_mb(mongo):.0f} MB")
        world = ScaleWorld(**json.loads(marker.read_text()))
        yield services, world, env, mongo
        services.infra.db.client.close()
    finally:
        redis.stop()
        mongo.stop()


def service_operations(services: Services, world: ScaleWorld, rng: random.Random) -> dict[str, Callable[[], object]]:
    infra = services.infra
    actors = {role: Actor(infra.users.get(world.clinic_id, world.users[role.value])) for role in Role}
    coordinator, doctor, admin = actors[Role.COORDINATOR], actors[Role.DOCTOR], actors[Role.ADMIN]
    now = datetime.now(UTC)

    def patient() -> str:
        return rng.choice(world.patient_ids)

    def sim_id() -> str:
        return rng.choice(world.simulation_ids)

    def open_simulation() -> None:
        sim = services.simulations.get(coordinator, sim_id())
        frames = sim.frames_for_view(sim.views[0])
        services.simulations.frame_images(coordinator, sim, frames[:1], "display")  # the frame on screen
        services.simulations.frame_images(coordinator, sim, frames[:9], "thumb")  # the thumbnail strip

    def gallery() -> None:
        page = services.visuals.gallery(coordinator, patient())
        services.visuals.thumbnails(coordinator, [i.asset.id for i in page
                                                  if i.asset.contentType in ("image/png", "image/jpeg")])

    def exports_page() -> None:
        page = services.exports.recent(coordinator)
        services.exports.files(coordinator, page.items)
        services.exports.recent(coordinator, cursor=page.cursor)

    return {
        "patient list": lambda: services.patients.page(coordinator),
        "patient search (name)": lambda: services.patients.search(coordinator, rng.choice(("Sm", "Okafor", "Ng",
                                                                                           "Maya", "Kim, J"))),
        "patient search (chart)": lambda: services.patients.search(coordinator, f"SG-{rng.randrange(1, 999):06d}"),
        "patient's simulations": lambda: services.patients.overview(coordinator, patient()),
        "open simulation": open_simulation,
        "simulation history": lambda: services.simulations.history(coordinator, sim_id()),
        "review queue": lambda: services.review.queue(doctor),
        "gallery page": gallery,
        "exports page": exports_page,
        "audit (default)": lambda: services.audit.search(admin),
        "audit (user)": lambda: services.audit.search(admin, user_id=world.users["doctor"]),
        "audit (patient)": lambda: services.audit.search(admin, patient_id=patient()),
        "audit (action)": lambda: services.audit.search(admin, action="approval.granted"),
        "audit (dates)": lambda: services.audit.search(admin, day_from=(now - timedelta(days=400)).date(),
                                                       day_to=(now - timedelta(days=30)).date()),
        "audit append": lambda: infra.audit.append(world.clinic_id, action="signin", user_id=world.users["admin"]),
        "export state": lambda: services.exports.get(coordinator, rng.choice(world.export_ids)),
    }


def measure_services(services: Services, world: ScaleWorld, reps: int) -> dict[str, float]:
    rng = random.Random(3)
    results = {}
    for name, operation in service_operations(services, world, rng).items():
        operation()  # warm the connection pool and code paths
        samples = []
        for _ in range(reps):
            started = time.perf_counter()
            operation()
            samples.append(time.perf_counter() - started)
        results[name] = p95(samples) * 1000
    return results


def measure_pages(services: Services, world: ScaleWorld, env: dict[str, str], reps: int) -> dict[str, float]:
    import streamlit as st
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner
    from streamlit.testing.v1 import AppTest

    os.environ.update(env)
    st.cache_resource.clear()
    st.cache_data.clear()
    runs: list[float] = []
    original = ScriptRunner._run_script

    def timed_run(self: Any, rerun_data: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, rerun_data)
        finally:
            runs.append(time.perf_counter() - started)

    ScriptRunner._run_script = timed_run  # type: ignore[method-assign]
    rng = random.Random(5)
    results = {}
    try:
        for page, role in PAGES.items():
            samples = []
            for n in range(reps + 1):
                sim = services.infra.simulations.get(world.clinic_id, rng.choice(world.simulation_ids))
                at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
                at.session_state["user_id"] = world.users[role.value]
                at.session_state["patient_id"] = sim.patientId
                at.session_state["simulation_id"] = sim.id
                at.run()
                runs.clear()
                at.switch_page(f"pages/{page}.py").run()
                if at.exception:
                    raise RuntimeError(f"{page}: {at.exception[0].value}")
                if n:  # the first open warms caches
                    samples.append(sum(runs))
            results[page] = p95(samples) * 1000
    finally:
        ScriptRunner._run_script = original  # type: ignore[method-assign]
    st.cache_resource.clear()
    return results


def verify_trail(env: dict[str, str], events: int) -> float:
    """Seconds per million events for `python -m core.cli audit verify` (the whole trail)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core.cli", "audit", "verify"], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    log(f"audit verify: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()}")
    if done.returncode != 0:
        raise RuntimeError(f"audit verify failed: {done.stdout}{done.stderr}")
    return elapsed * 1_000_000 / max(events, 1)


def rss_mb(child: Any) -> float:
    import psutil

    process = psutil.Process(child.process.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def run(simulations: int, reps: int, cache_size: str, rebuild: bool) -> dict[str, Any]:
    with dataset(simulations, cache_size=cache_size, rebuild=rebuild) as (services, world, env, mongo):
        log(f"-- {simulations:,} versions: {world.counts}")
        ops = measure_services(services, world, reps)
        for name, value in ops.items():
            log(f"   {name:28s} p95 {value:8.1f} ms")
        pages = measure_pages(services, world, env, reps)
        for name, value in pages.items():
            log(f"   page {name:23s} p95 {value:8.1f} ms")
        verify = verify_trail(env, world.counts.get("audit", 0))
        return {"ops": ops, "pages": pages, "verify_s_per_million": verify, "rss_mb": rss_mb(mongo)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=100_000)
    # p95 of 20 samples (statistics.quantiles, exclusive) is ~the slowest one: one stall of the machine is the
    # figure; 40 let the p95 be the second slowest.
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--cache-size", default=os.environ.get("EMBEDDED_DB_CACHE", DEFAULT_DB_CACHE))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached datasets")
    parser.add_argument("--build-only", action="store_true", help="build (or check) the datasets, measure nothing")
    args = parser.parse_args()
    from streamlit import logger as streamlit_logger

    streamlit_logger.set_log_level("error")  # headless page runs warn "missing ScriptRunContext" per widget
    if args.build_only:
        for size in (args.simulations, max(100, args.simulations // 100)):
            with dataset(size, cache_size=args.cache_size, rebuild=args.rebuild):
                pass
        return
    if args.reps < 20:
        parser.error("use at least 20 repetitions for a p95")
    large = run(args.simulations, args.reps, args.cache_size, args.rebuild)
    small = run(max(100, args.simulations // 100), args.reps, args.cache_size, args.rebuild)
    growth = {name: large["ops"][name] / max(small["ops"][name], 0.001) for name in large["ops"]}
    worst_growth = max(growth, key=growth.__getitem__)
    worst_op = max(large["ops"], key=large["ops"].__getitem__)
    worst_page = max(large["pages"], key=large["pages"].__getitem__)
    log(f"growth N/(N/100): worst {worst_growth} ({growth[worst_growth]:.2f}); "
        f"slowest op {worst_op}; slowest page {worst_page}")
    print(f"scale_simulations: {args.simulations}")
    print(f"scale_worst_op_p95_ms: {large['ops'][worst_op]:.1f}")
    print(f"scale_worst_page_p95_ms: {large['pages'][worst_page]:.1f}")
    print(f"scale_growth_worst: {growth[worst_growth]:.2f}")
    print(f"audit_verify_s_per_million: {large['verify_s_per_million']:.1f}")
    print(f"scale_db_rss_mb: {large['rss_mb']:.0f}")


if __name__ == "__main__":
    main()
