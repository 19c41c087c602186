"""The admin CLI, run as a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys

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
