"""The launcher as a supervisor, with real processes and real signals: restarts with a logged reason,
Ctrl-C within 10 s (work-horses included), and the survivors of a killed launcher stopped by the next one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from core.config import PROJECT_ROOT
from core.jobs import ping
from core.launcher import free_port
from core.queueing import enqueue, queue
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.worker]


def _launch(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "REDIS_URL")}
    env.update({"DATA_DIR": str(data_dir), "STREAMLIT_SECRETS_PATH": str(data_dir / "none.toml"),
                "MONGODB_DB": "supervisor_test", "SUPERVISOR_BACKOFF_SECONDS": "0.5",
                "WORKER_MONITORING_INTERVAL": "2", "WORKER_MAINTENANCE_INTERVAL": "5",
                "EXPORT_LEASE_SECONDS": "4", "MAINTENANCE_SECONDS": "5"})
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "core.launcher", "--port", str(port), "--workers", "1", "--demo", "none"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _pids(data_dir: Path) -> dict[str, list[int]]:
    try:
        data = json.loads((data_dir / "run" / "pids.json").read_text())
    except (OSError, ValueError):
        return {}
    names: dict[str, list[int]] = {}
    for entry in data["children"]:
        names.setdefault(entry["name"], []).append(entry["pid"])
    return names


def _up(data_dir: Path, port: int, launcher: subprocess.Popen, log: Path) -> Redis:
    """Wait until Streamlit answers and the worker is registered; the stack's Redis."""
    def ready() -> bool:
        if launcher.poll() is not None:
            raise AssertionError(f"launcher exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                return response.read() == b"ok"
        except OSError:
            return False

    wait_until(ready, timeout=90, what="Streamlit health")
    redis = Redis.from_url(json.loads((data_dir / "run" / "endpoints.json").read_text())["REDIS_URL"])
    wait_until(lambda: Worker.all(connection=redis), timeout=30, what="a registered worker")
    return redis


def _leads_group(proc: psutil.Process) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except OSError:
        return False


def _everything(launcher: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(launcher.pid).children(recursive=True)


def _ctrl_c(launcher: subprocess.Popen, processes: list[psutil.Process]) -> float:
    started = time.monotonic()
    launcher.send_signal(signal.SIGINT)
    launcher.wait(30)
    _gone, alive = psutil.wait_procs(processes, timeout=max(0.0, 15 - (time.monotonic() - started)))
    assert alive == [], f"left running: {[(p.pid, p.name()) for p in alive]}"
    return time.monotonic() - started


def _kill_all(launcher: subprocess.Popen) -> None:
    for proc in [*_everything(launcher), psutil.Process(launcher.pid)]:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def test_a_killed_worker_and_a_killed_redis_are_restarted_with_the_reason_logged(tmp_path):
    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"
    launcher = _launch(data_dir, port, log)
    try:
        redis = _up(data_dir, port, launcher, log)
        worker_pid = _pids(data_dir)["worker-1"][0]
        os.kill(worker_pid, signal.SIGKILL)
        wait_until(lambda: (pids := _pids(data_dir).get("worker-1")) and worker_pid not in pids, timeout=30,
                   what="a new worker")
        assert "worker-1 exited (killed by SIGKILL)" in log.read_text()

        os.kill(_pids(data_dir)["redis"][0], signal.SIGKILL)
        wait_until(lambda: "redis restarted" in log.read_text(), timeout=30, what="redis restarted")
        assert "redis exited (killed by SIGKILL)" in log.read_text()

        def round_trip() -> bool:
            try:
                job = enqueue(redis, "ping", ping, "after", job_id=f"ping-{time.monotonic_ns()}")
                return bool(wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=10,
                                       what="ping"))
            except (RedisError, AssertionError):
                return False

        wait_until(round_trip, timeout=45, interval=1, what="jobs running again after the Redis restart")
        assert launcher.poll() is None  # the stack carried on
        seconds = _ctrl_c(launcher, _everything(launcher))
        assert seconds <= 10
    finally:
        if launcher.poll() is None:
            _kill_all(launcher)


def test_ctrl_c_stops_every_child_and_a_busy_work_horse_within_ten_seconds(tmp_path):
    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"
    launcher = _launch(data_dir, port, log)
    try:
        redis = _up(data_dir, port, launcher, log)
        queue(redis, "interactive").enqueue("time.sleep", 300, job_timeout=600)  # a horse busy for minutes
        worker = psutil.Process(_pids(data_dir)["worker-1"][0])

        def horse() -> psutil.Process | None:  # RQ's horse leads a process group of its own (the scheduler does not)
            return next((c for c in worker.children() if _leads_group(c)), None)

        horse = wait_until(horse, timeout=30, what="a work-horse")
        assert os.getpgid(horse.pid) != os.getpgid(worker.pid)  # killing the worker's group misses it
        everything = _everything(launcher)
        assert horse in everything and len(everything) >= 5  # database, redis, worker, horse, streamlit
        seconds = _ctrl_c(launcher, everything)
        assert seconds <= 10, f"Ctrl-C took {seconds:.1f} s"
        assert launcher.returncode == 0
        assert not (data_dir / "run" / "pids.json").exists()
    finally:
        if launcher.poll() is None:
            _kill_all(launcher)


def test_the_next_start_stops_what_a_killed_launcher_left_running(tmp_path):
    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"
    first = _launch(data_dir, port, log)
    second = None
    survivors: list[psutil.Process] = []
    try:
        _up(data_dir, port, first, log).close()
        refused = _launch(data_dir, free_port(), tmp_path / "refused.log")
        assert refused.wait(30) == 2
        assert f"Another launcher (pid {first.pid}) is running" in (tmp_path / "refused.log").read_text()

        survivors = _everything(first)
        first.kill()  # kill -9 of the launcher alone, as a closed terminal or the OOM killer would
        first.wait(10)
        time.sleep(1)
        assert all(p.is_running() for p in survivors)  # what used to block the next start

        second = _launch(data_dir, port, tmp_path / "second.log")
        wait_until(lambda: "left running by a launcher that was killed" in (tmp_path / "second.log").read_text(),
                   timeout=30, what="the survivors stopped")
        _gone, alive = psutil.wait_procs(survivors, timeout=1)
        assert alive == []
        # The new stack is up (not the old one's Streamlit answering on the port).
        wait_until(lambda: "Treatment Simulation Studio is running" in (tmp_path / "second.log").read_text(),
                   timeout=90, what="the second stack")
        _up(data_dir, port, second, tmp_path / "second.log").close()
        _ctrl_c(second, _everything(second))
    finally:
        for launcher in (first, second):
            if launcher is not None and launcher.poll() is None:
                _kill_all(launcher)
        for proc in survivors:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_a_killed_database_is_restarted_on_its_port_and_the_stack_carries_on(tmp_path):
    from pymongo import MongoClient

    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"
    launcher = _launch(data_dir, port, log)
    try:
        _up(data_dir, port, launcher, log).close()
        uri = json.loads((data_dir / "run" / "endpoints.json").read_text())["MONGODB_URI"]
        with MongoClient(uri, serverSelectionTimeoutMS=2000) as client:
            client.supervisor_test.probe.insert_one({"_id": "before"})
        os.kill(_pids(data_dir)["database"][0], signal.SIGKILL)
        wait_until(lambda: "database restarted" in log.read_text(), timeout=60, what="database restarted")
        assert "database exited (killed by SIGKILL)" in log.read_text()
        with MongoClient(uri, serverSelectionTimeoutMS=10000) as client:  # same URI: clients reconnect
            assert client.supervisor_test.probe.find_one({"_id": "before"}) is not None  # acknowledged write kept
        assert launcher.poll() is None
        _ctrl_c(launcher, _everything(launcher))
    finally:
        if launcher.poll() is None:
            _kill_all(launcher)


def test_after_every_process_is_killed_at_once_a_restart_finishes_the_renders_and_the_audit_verifies(tmp_path):
    from core.config import load_settings
    from core.domain import ExportState, ExportType, Role, SimulationType
    from core.services import build_services
    from core.services.exports import RenderRequest
    from tests.factories import make_clinic, new_frames

    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"

    def services():
        endpoints = json.loads((data_dir / "run" / "endpoints.json").read_text())
        return build_services(load_settings({**endpoints, "DATA_DIR": str(data_dir), "MONGODB_DB": "supervisor_test",
                                             "STREAMLIT_SECRETS_PATH": str(data_dir / "none.toml")}))

    launcher = _launch(data_dir, port, log)
    second = None
    try:
        _up(data_dir, port, launcher, log).close()
        first = services()
        world = make_clinic(first.infra)
        sim = first.simulations.create_version(
            world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
            simulation_type=SimulationType.ALIGNER, name="Plan", frames=new_frames(8, size=(1920, 1080)),
            queue_renditions=False)
        first.review.approve(world.actor(Role.DOCTOR), sim.id)
        video = first.exports.request(world.actor(), sim.id, RenderRequest(
            ExportType.VIDEO, preset="1080p", transition="morph", seconds_per_stage=1.0, title_card=False,
            end_card=False))
        queued = [first.exports.request(world.actor(), sim.id, RenderRequest(kind))
                  for kind in (ExportType.ASSETS, ExportType.PDF)]
        wait_until(lambda: (e := first.exports.get(world.actor(), video.id)).state is ExportState.RUNNING
                   and e.progress >= 5, timeout=60, what="the video rendering")
        first.infra.db.client.close()
        everything = [psutil.Process(launcher.pid), *_everything(launcher)]
        for proc in everything:  # a power cut, as far as processes go: everything at once, no clean-up
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(everything, timeout=10)

        second = _launch(data_dir, port, tmp_path / "second.log")
        wait_until(lambda: "Treatment Simulation Studio is running" in (tmp_path / "second.log").read_text(),
                   timeout=90, what="the second stack")
        _up(data_dir, port, second, tmp_path / "second.log").close()
        again = services()
        ids = [video.id, *(e.id for e in queued)]
        finished = wait_until(lambda: all(again.exports.get(world.actor(), i).state in
                                          (ExportState.DONE, ExportState.FAILED) for i in ids)
                              and [again.exports.get(world.actor(), i) for i in ids],
                              timeout=120, interval=0.5, what="the interrupted and queued renders")
        assert [e.state for e in finished] == [ExportState.DONE] * 3, [e.error for e in finished]
        assert again.infra.db.imaging_assets.count_documents({"kind": "EXPORT"}) == 3
        assert all(report.intact for report in again.audit.verify_all())
        again.infra.db.client.close()
        _ctrl_c(second, _everything(second))
    finally:
        for each in (launcher, second):
            if each is not None and each.poll() is None:
                _kill_all(each)


def test_a_database_killed_mid_render_is_restarted_and_the_render_still_ends_with_one_file(tmp_path):
    from core.config import load_settings
    from core.domain import ExportState, ExportType, Role, SimulationType
    from core.services import build_services
    from core.services.exports import RenderRequest
    from tests.factories import make_clinic, new_frames

    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"
    launcher = _launch(data_dir, port, log)
    try:
        _up(data_dir, port, launcher, log).close()
        endpoints = json.loads((data_dir / "run" / "endpoints.json").read_text())
        svc = build_services(load_settings({**endpoints, "DATA_DIR": str(data_dir), "MONGODB_DB": "supervisor_test",
                                            "STREAMLIT_SECRETS_PATH": str(data_dir / "none.toml")}))
        world = make_clinic(svc.infra)
        sim = svc.simulations.create_version(
            world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
            simulation_type=SimulationType.ALIGNER, name="Plan", frames=new_frames(8, size=(1920, 1080)),
            queue_renditions=False)
        svc.review.approve(world.actor(Role.DOCTOR), sim.id)
        export = svc.exports.request(world.actor(), sim.id, RenderRequest(
            ExportType.VIDEO, preset="1080p", transition="morph", seconds_per_stage=1.0, title_card=False,
            end_card=False))
        wait_until(lambda: (e := svc.exports.get(world.actor(), export.id)).state is ExportState.RUNNING
                   and e.progress >= 5, timeout=60, what="the render")
        os.kill(_pids(data_dir)["database"][0], signal.SIGKILL)
        wait_until(lambda: "database restarted" in log.read_text(), timeout=60, what="database restarted")
        done = wait_until(lambda: (e := svc.exports.get(world.actor(), export.id)).state
                          in (ExportState.DONE, ExportState.FAILED) and e, timeout=120, interval=0.5,
                          what="the export after the database came back")
        assert done.state is ExportState.DONE, done.error
        assert svc.infra.db.imaging_assets.count_documents({"kind": "EXPORT"}) == 1
        assert launcher.poll() is None
        svc.infra.db.client.close()
        _ctrl_c(launcher, _everything(launcher))
    finally:
        if launcher.poll() is None:
            _kill_all(launcher)


def test_a_database_killed_mid_import_commit_leaves_exactly_one_version_and_every_file(tmp_path):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from core.config import load_settings
    from core.domain import AssetKind, ImportSource, ImportState
    from core.imaging import encode_png
    from core.services import build_services
    from core.services.imports import Upload
    from tests.factories import gradient_frame, make_clinic

    data_dir, port, log = tmp_path / "var", free_port(), tmp_path / "launcher.log"
    launcher = _launch(data_dir, port, log)
    try:
        redis = _up(data_dir, port, launcher, log)
        endpoints = json.loads((data_dir / "run" / "endpoints.json").read_text())
        svc = build_services(load_settings({**endpoints, "DATA_DIR": str(data_dir), "MONGODB_DB": "supervisor_test",
                                            "STREAMLIT_SECRETS_PATH": str(data_dir / "none.toml")}))
        world = make_clinic(svc.infra)
        uploads = [Upload(f"ClinCheck Stage {n}.png", encode_png(gradient_frame(n, (1920, 1080))).data)
                   for n in range(16)]
        record = svc.imports.start(world.actor(), source=ImportSource.FILES, uploads=uploads,
                                   patient_id=world.patient.id, treatment_id=world.treatment.id, name="ClinCheck")
        preview = wait_until(lambda: (r := svc.imports.get(world.actor(), record.id)).state is ImportState.PREVIEW
                             and r, timeout=90, interval=0.3, what="the preview")
        confirmed = svc.imports.confirm(world.actor(), record.id, order=[c.key for c in preview.candidates])
        job_id = f"import-commit-{record.id}-r{confirmed.revision}"
        wait_until(lambda: Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status() == "started",
                   timeout=30, interval=0.05, what="the commit job")
        os.kill(_pids(data_dir)["database"][0], signal.SIGKILL)  # mid-commit
        wait_until(lambda: "database restarted" in log.read_text(), timeout=60, what="database restarted")
        done = wait_until(lambda: (r := svc.imports.get(world.actor(), record.id)).state
                          in (ImportState.DONE, ImportState.FAILED) and r, timeout=150, interval=0.5,
                          what="the import after the database came back")
        if done.state is ImportState.FAILED:  # allowed only as a clean failure: nothing half-saved
            assert "nothing was saved" in (done.error or "")
            assert svc.infra.db.imaging_assets.count_documents({"kind": AssetKind.FRAME.value}) == 0
        else:
            sims = list(svc.infra.db.simulations.find({"metadata.importId": record.id}))
            assert len(sims) == 1
            frames = svc.infra.assets.list_for_simulation(world.clinic.id, str(sims[0]["_id"]),
                                                          kinds=(AssetKind.FRAME,))
            assert len(frames) == 16
            assert all(svc.infra.store.exists(a.sha256) for a in frames)
        assert svc.infra.db.simulations.count_documents({}) == (1 if done.state is ImportState.DONE else 0)
        assert launcher.poll() is None
        redis.close()
        svc.infra.db.client.close()
        _ctrl_c(launcher, _everything(launcher))
    finally:
        if launcher.poll() is None:
            _kill_all(launcher)
