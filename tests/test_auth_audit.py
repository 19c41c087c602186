"""Sign-in mapping, revocation and idle timeout, and the tamper-evident audit trail."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import Role
from core.errors import PermissionDeniedError, ValidationError
from tests.factories import make_clinic

ISSUER = "http://127.0.0.1:9/oidc"


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def test_an_invited_user_is_bound_on_first_sign_in_and_matched_by_subject_afterwards(services, world):
    admin = world.actor(Role.ADMIN)
    invited = services.sessions.invite(admin, email="new.doctor@alpha.test", name="New Doctor", role=Role.DOCTOR)
    actor = services.sessions.oidc_signin(issuer=ISSUER, subject="sub-123", email="new.doctor@alpha.test",
                                          email_verified=True)
    assert actor.id == invited.id and actor.role is Role.DOCTOR
    again = services.sessions.oidc_signin(issuer=ISSUER, subject="sub-123", email="changed@else.test",
                                          email_verified=False)
    assert again.id == invited.id  # the subject, not the e-mail, identifies the person
    with pytest.raises(PermissionDeniedError, match="no access"):
        services.sessions.oidc_signin(issuer=ISSUER, subject="someone-else", email="new.doctor@alpha.test",
                                      email_verified=True)


def test_an_unverified_email_never_binds_an_invitation(services, world):
    services.sessions.invite(world.actor(Role.ADMIN), email="x@alpha.test", name="X", role=Role.COORDINATOR)
    with pytest.raises(PermissionDeniedError, match="no access"):
        services.sessions.oidc_signin(issuer=ISSUER, subject="s", email="x@alpha.test", email_verified=False)


def test_admins_cannot_lock_themselves_out(services, world):
    admin = world.actor(Role.ADMIN)
    with pytest.raises(ValidationError, match="cannot disable yourself"):
        services.sessions.update_user(admin, admin.id, active=False)
    with pytest.raises(PermissionDeniedError):
        services.sessions.update_user(world.actor(Role.DOCTOR), admin.id, active=False)


def _signed_in(world, role: Role) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=30)
    at.session_state["user_id"] = world.users[role].id
    return at.run()


def test_disabling_a_user_takes_effect_on_their_next_interaction(app_env, services, world):
    at = _signed_in(world, Role.COORDINATOR)
    assert not at.exception, at.exception
    assert at.title[0].value == "Patients"
    services.sessions.update_user(world.actor(Role.ADMIN), world.users[Role.COORDINATOR].id, active=False)
    at.run()
    shown = " ".join([*(w.value for w in at.warning), *(i.value for i in at.info)])
    assert "disabled" in shown
    assert "user_id" not in at.session_state
    assert not at.selectbox and not at.dataframe  # nothing of the patient list is drawn


def test_a_role_change_applies_on_the_next_rerun(app_env, services, world):
    from core.domain import SimulationType
    from tests.factories import new_frames

    services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Draft plan", frames=new_frames(2), queue_renditions=False)
    at = _signed_in(world, Role.COORDINATOR)
    assert len(at.dataframe) == 1  # the coordinator sees the draft version
    services.sessions.update_user(world.actor(Role.ADMIN), world.users[Role.COORDINATOR].id, role=Role.PRESENTER)
    at.run()
    assert not at.dataframe  # as a presenter, unapproved material is hidden at once
    assert any("No simulations" in i.value for i in at.info)


def test_an_idle_session_is_signed_out_and_patient_data_hidden(app_env, world):
    at = _signed_in(world, Role.COORDINATOR)
    at.session_state["last_activity"] = time.time() - 16 * 60
    at.run()
    shown = " ".join([*(w.value for w in at.warning), *(i.value for i in at.info)])
    assert "without activity" in shown
    assert "user_id" not in at.session_state
    assert not at.selectbox and not at.dataframe


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_audit_verify_detects_an_edited_and_a_deleted_event(env, services, world, infra):
    admin = world.actor(Role.ADMIN)
    for n in range(4):
        services.sessions.invite(admin, email=f"u{n}@alpha.test", name=f"U{n}", role=Role.COORDINATOR)
    ok = _cli(env, "audit", "verify")
    assert ok.returncode == 0 and "audit trail intact" in ok.stdout

    infra.db.audit_events.update_one({"seq": 2}, {"$set": {"details.role": "admin"}})
    edited = _cli(env, "audit", "verify")
    assert edited.returncode == 1 and "event 2 was altered" in edited.stdout

    infra.db.audit_events.update_one({"seq": 2}, {"$set": {"details.role": "coordinator"}})
    infra.db.audit_events.delete_one({"seq": 3})
    deleted = _cli(env, "audit", "verify")
    assert deleted.returncode == 1 and "event 3 is missing" in deleted.stdout


def test_each_action_leaves_exactly_one_event(services, world, infra):
    admin = world.actor(Role.ADMIN)
    services.sessions.invite(admin, email="one@alpha.test", name="One", role=Role.COORDINATOR)
    assert infra.db.audit_events.count_documents({"action": "user.invited"}) == 1
    csv = services.audit.to_csv(admin, services.audit.search(admin, action="user.invited")).decode()
    assert csv.count("user.invited") == 1 and csv.startswith("when (UTC),action")
