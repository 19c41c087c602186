"""`make run` as a user meets it: first start on an empty data directory, a worker killed mid-render, Ctrl-C.

Runs `python -m core.launcher` (2 workers, the full demo) on a fresh temp DATA_DIR and a free port, and prints:

- first_page_s: from launch until the sign-in page answers (HTTP 200 for `/`);
- first_frames_s: until the first demo patient's frames are viewable (a simulation with renditions READY);
- recover_after_kill_s: a video export with the render panel's defaults (1080p crossfade) is requested;
  once it renders, its worker and work-horse are SIGKILLed (as a crash would); seconds from the kill until
  the export is DONE (goal ≤ 90): the lease running out, maintenance queueing it, and the whole render again;
- ctrl_c_stop_s: SIGINT to the launcher while the demo and another export render, until every child
  (work-horses included) is gone (goal ≤ 10).

The machine's load changes these figures; the script prints what one run measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import PROJECT_ROOT, load_settings
from core.domain import ExportState, ExportType, Role
from core.launcher import free_port
from core.permissions import Actor
from core.services import build_services
from core.services.exports import RenderRequest


def _wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def _page(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _horse_workers(launcher: psutil.Process) -> list[tuple[psutil.Process, psutil.Process]]:
    """(worker, work-horse) pairs of the workers rendering right now."""
    pairs = []
    for child in launcher.children():
        try:
            if "worker.py" not in " ".join(child.cmdline()):
                continue
            pairs += [(child, h) for h in child.children() if os.getpgid(h.pid) == h.pid]
        except (psutil.Error, OSError):
            continue
    return pairs


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        data_dir, port = Path(tmp) / "var", free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "REDIS_URL")}
        env.update({"DATA_DIR": str(data_dir), "STREAMLIT_SECRETS_PATH": str(Path(tmp) / "none.toml"),
                    "MONGODB_DB": "stack_bench"})
        log = (Path(tmp) / "launcher.log").open("wb")
        started = time.monotonic()
        launcher = subprocess.Popen([sys.executable, "-m", "core.launcher", "--port", str(port), "--workers", "2"],
                                    cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            _wait(lambda: _page(port), 300, "the sign-in page")
            first_page = time.monotonic() - started
            print(f"(sign-in page after {first_page:.1f} s)", flush=True)
            endpoints = _wait(lambda: (data_dir / "run" / "endpoints.json").exists()
                              and json.loads((data_dir / "run" / "endpoints.json").read_text()), 60, "endpoints")
            services = build_services(load_settings({**env, **endpoints}))
            db = services.infra.db
            _wait(lambda: db.simulations.find_one({"renditions": "READY"}, {"_id": 1}), 600, "the first frames")
            first_frames = time.monotonic() - started
            print(f"(first frames after {first_frames:.1f} s)", flush=True)

            clinic = db.clinics.find_one({}, {"_id": 1})
            clinic_id = str(clinic["_id"])
            coordinator = next(u for u in services.infra.users.list(clinic_id) if u.role is Role.COORDINATOR)
            actor = Actor(coordinator)
            sim_doc = db.simulations.find_one({"clinicId": clinic["_id"], "renditions": "READY"}, {"_id": 1})
            request = RenderRequest(ExportType.VIDEO)  # what the render panel asks by default: 1080p crossfade
            export = services.exports.request(actor, str(sim_doc["_id"]), request)
            me = psutil.Process(launcher.pid)
            _wait(lambda: (e := services.exports.get(actor, export.id)).state is ExportState.RUNNING
                  and e.progress >= 5, 600, "the export to render")
            pairs = _wait(lambda: _horse_workers(me), 60, "a rendering work-horse")
            for worker, horse in pairs:  # every rendering worker: the export's is among them
                for proc in (horse, worker):
                    with contextlib.suppress(psutil.Error):
                        proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            done = _wait(lambda: (e := services.exports.get(actor, export.id)).state
                         in (ExportState.DONE, ExportState.FAILED) and e, 600, "the export after the kill", 0.5)
            recover = time.monotonic() - killed
            print(f"(export DONE {recover:.1f} s after the kill)", flush=True)
            if done.state is not ExportState.DONE:
                print(f"export after the kill: {done.state.value} ({done.error})")

            again = services.exports.request(actor, str(sim_doc["_id"]), RenderRequest(
                ExportType.VIDEO, preset="1080p", seconds_per_stage=1.5, transition="morph", title_card=False,
                end_card=False))
            _wait(lambda: services.exports.get(actor, again.id).state is ExportState.RUNNING, 300, "a second render")
            everything = me.children(recursive=True)
            stop_started = time.monotonic()
            launcher.send_signal(signal.SIGINT)
            launcher.wait(60)
            _gone, alive = psutil.wait_procs(everything, timeout=60)
            ctrl_c = time.monotonic() - stop_started
            services.infra.db.client.close()
            print(f"children at Ctrl-C: {len(everything)}; left after 60 s: {len(alive)}")
        finally:
            if launcher.poll() is None:
                for proc in psutil.Process(launcher.pid).children(recursive=True):
                    proc.kill()
                launcher.kill()
            log.close()
        print(f"first_page_s: {first_page:.1f}")
        print(f"first_frames_s: {first_frames:.1f}")
        print(f"recover_after_kill_s: {recover:.1f}")
        print(f"ctrl_c_stop_s: {ctrl_c:.1f}")


if __name__ == "__main__":
    main()
