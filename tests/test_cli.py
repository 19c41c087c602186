"""The admin CLI, run as a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import pytest

from core.config import PROJECT_ROOT
from core.domain import Role, SimulationType
from tests.factories import make_clinic, new_frames


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_the_admin_commands(env):
    result = _cli(env, "--help")
    assert result.returncode == 0
    for command in ("seed-demo", "patients", "simulations"):
        assert command in result.stdout


def test_patients_and_simulations_act_as_the_named_user(env, services, infra):
    world = make_clinic(infra)
    make_clinic(infra, "beta", chart="C-9")
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="ClinCheck", frames=new_frames(3), queue_renditions=False)

    patients = _cli(env, "patients", "--as", world.users[Role.COORDINATOR].email)
    assert patients.returncode == 0, patients.stderr
    assert world.patient.id in patients.stdout and "Patientalpha" in patients.stdout
    assert "Patientbeta" not in patients.stdout  # the other clinic's patient

    sims = _cli(env, "simulations", "--as", "doctor@alpha.test", world.patient.id)
    assert sims.returncode == 0, sims.stderr
    assert sim.id in sims.stdout and "ACTIVE" in sims.stdout and "3 frames" in sims.stdout


def test_an_unknown_user_gets_a_clear_error(env, infra):
    result = _cli(env, "patients", "--as", "nobody@nowhere.test")
    assert result.returncode == 1
    assert "No user with e-mail nobody@nowhere.test" in result.stderr


def test_import_creates_a_version_and_prints_its_id(env, services, infra, tmp_path):
    from core.imaging import encode_png
    from tests.factories import gradient_frame

    world = make_clinic(infra)
    folder = tmp_path / "screenshots"
    folder.mkdir()
    for stage in (10, 2, 1):
        (folder / f"Stage {stage}.png").write_bytes(encode_png(gradient_frame(stage)).data)
    result = _cli(env, "import", "--as", "coordinator@alpha.test", "--patient", world.patient.id,
                  "--source", "files", "--name", "CLI import", str(folder))
    assert result.returncode == 0, result.stderr
    assert "found 3 frames" in result.stdout and "version 1 (3 frames)" in result.stdout
    sim_id = result.stdout.strip().splitlines()[-1].split()[2]
    sim = services.simulations.get(world.actor(), sim_id)
    assert [f.label for f in sim.frames] == ["Stage 1", "Stage 2", "Stage 10"]

    again = _cli(env, "import", "--as", "coordinator@alpha.test", "--series", sim_id, "--source", "files",
                 str(folder / "Stage 1.png"))
    assert again.returncode == 0, again.stderr
    assert "version 2 (1 frame)" in again.stdout


def test_import_of_a_bad_file_says_why(env, infra, tmp_path):
    world = make_clinic(infra)
    (tmp_path / "stage.png").write_text("not really a picture")
    result = _cli(env, "import", "--as", "coordinator@alpha.test", "--patient", world.patient.id,
                  "--source", "files", str(tmp_path / "stage.png"))
    assert result.returncode == 1
    assert "not an image" in result.stderr
    assert infra.db.simulations.count_documents({}) == 0


def test_gc_removes_only_old_unreferenced_files(env, services, infra, settings):
    world = make_clinic(infra)
    services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="kept", frames=new_frames(2), queue_renditions=False)
    orphan = infra.store.put(b"left behind by a crashed import")
    fresh_orphan = infra.store.put(b"an import still in flight")
    old = 3 * 24 * 3600
    for path in (settings.data_dir / "assets").glob("??/??/*"):
        if path.name != fresh_orphan.sha256:
            os.utime(path, (path.stat().st_atime - old, path.stat().st_mtime - old))

    dry = _cli(env, "gc", "--dry-run")
    assert dry.returncode == 0 and "would remove 1 unreferenced file(s)" in dry.stdout
    assert infra.store.exists(orphan.sha256)
    result = _cli(env, "gc")
    assert "removed 1 unreferenced file(s)" in result.stdout
    assert not infra.store.exists(orphan.sha256)
    assert infra.store.exists(fresh_orphan.sha256)  # too young: may belong to an import in progress
    assert all(infra.store.exists(a.sha256) for a in infra.assets.list_for_patient(world.clinic.id, world.patient.id))


def _import_job_ids(redis) -> list[str]:
    """Every imports-queue job RQ knows of: queued, scheduled, running, finished or failed."""
    from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    from core.queueing import queue

    imports = queue(redis, "imports")
    ids = list(imports.job_ids)
    for registry in (StartedJobRegistry, FinishedJobRegistry, FailedJobRegistry, ScheduledJobRegistry):
        ids += registry(queue=imports).get_job_ids()
    return ids


@pytest.mark.worker
def test_cli_imports_with_a_worker_running_save_each_version_once(env, services, infra, worker, tmp_path):
    from core.fixtures.itero import VARIATIONS, make_itero_export
    from core.imaging import encode_png
    from tests.factories import gradient_frame

    world = make_clinic(infra)
    infra.patients.create(world.clinic.id, first_name="Alex", last_name="Example", date_of_birth=date(2009, 4, 17),
                          chart_number="CH-4711")
    export = tmp_path / "OrthoCAD_Export_70011 (4)"
    make_itero_export(export, order_id="70011", patient=("Example", "Alex"), doctor="Dr. Sample, Pat",
                      variation=VARIATIONS["orthocad"], view_size=(320, 180))
    shots = tmp_path / "shots"
    shots.mkdir()
    for stage in (1, 2):
        (shots / f"Stage {stage}.png").write_bytes(encode_png(gradient_frame(stage)).data)

    runs = [_cli(env, "import", "--as", "coordinator@alpha.test", "--source", "itero", str(export)),
            _cli(env, "import", "--as", "coordinator@alpha.test", "--patient", world.patient.id, "--source", "files",
                 "--name", "Shots", str(shots)),
            _cli(env, "import", "--as", "coordinator@alpha.test", "--source", "itero", str(export))]
    for run in runs:
        assert run.returncode == 0, run.stderr + run.stdout
        assert run.stderr == ""
    versions = [run.stdout.strip().splitlines()[-1] for run in runs]
    assert [line.split()[-3:] for line in versions] == [["1", "(5", "frames)"], ["1", "(2", "frames)"],
                                                        ["2", "(5", "frames)"]]
    assert infra.db.simulations.count_documents({}) == 3
    assert infra.db.imports.count_documents({"state": "DONE"}) == 3
    # The CLI committed each import itself: no commit job was ever queued for a worker to repeat.
    assert not [job for job in _import_job_ids(infra.redis) if job.startswith("import-commit-")]


def test_cli_output_shows_control_characters_and_bidi_overrides_as_escapes(env, infra, tmp_path):
    world = make_clinic(infra)
    name = "Stage 1 \x1b[31mred\x1b[0m \u202egnp.exe"
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / name).write_text("not a picture")
    result = _cli(env, "import", "--as", "coordinator@alpha.test", "--patient", world.patient.id,
                  "--source", "files", str(folder))
    assert result.returncode == 1
    assert "Stage 1 \\x1b[31mred\\x1b[0m \\u202egnp.exe is not an image" in result.stderr
    assert "\x1b" not in result.stderr + result.stdout and "\u202e" not in result.stderr + result.stdout
