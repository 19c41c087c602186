"""Doctor review: queue, approval rules, change requests, and the review page."""

from __future__ import annotations

import threading

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import Role, SimulationType
from core.errors import ConflictError, PermissionDeniedError
from tests.factories import make_clinic, new_frames


def _version(services, world, name="Plan"):
    return services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name=name, frames=new_frames(3), queue_renditions=False)


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def test_the_queue_lists_active_unapproved_versions_oldest_first(services, world, infra):
    other = infra.treatments.create(world.clinic.id, world.patient.id, name="Phase II")
    first = _version(services, world, "First")
    services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=other.id, simulation_type=SimulationType.ALIGNER,
        name="Second", frames=new_frames(2), queue_renditions=False)
    queue = services.review.queue(world.actor(Role.DOCTOR))
    assert [item.simulation.name for item in queue] == ["First", "Second"]
    services.review.approve(world.actor(Role.DOCTOR), first.id)
    assert [item.simulation.name for item in services.review.queue(world.actor(Role.DOCTOR))] == ["Second"]


def test_approval_records_who_and_when_on_that_exact_version(services, world):
    sim = _version(services, world)
    approved = services.review.approve(world.actor(Role.DOCTOR), sim.id)
    assert approved.isApproved and approved.approvedBy == world.users[Role.DOCTOR].id
    assert approved.approvedAt is not None
    revoked = services.review.revoke(world.actor(Role.DOCTOR), sim.id)
    assert not revoked.isApproved and revoked.approvedAt is None and revoked.approvedBy is None


def test_a_superseded_version_cannot_be_approved_and_new_versions_start_unapproved(services, world, infra):
    v1 = _version(services, world)
    services.review.approve(world.actor(Role.DOCTOR), v1.id)
    v2 = _version(services, world)
    assert not v2.isApproved
    with pytest.raises(ConflictError, match="superseded; only the active version"):
        services.review.approve(world.actor(Role.DOCTOR), v1.id)
    events = [e.action for e in infra.audit.list(world.clinic.id)]
    assert events.count("approval.refused") == 1


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.PRESENTER, Role.ADMIN])
def test_only_doctors_approve(services, world, role):
    sim = _version(services, world)
    with pytest.raises(PermissionDeniedError, match="imaging:approve"):
        services.review.approve(world.actor(role), sim.id)
    assert not services.simulations.get(world.actor(), sim.id).isApproved


def test_change_requests_are_visible_on_the_simulation(services, world):
    sim = _version(services, world)
    services.review.request_changes(world.actor(Role.DOCTOR), sim.id, "Stage 12 shows an open bite")
    requests = services.review.change_requests(world.actor(Role.COORDINATOR), sim.id)
    assert [(who, comment) for _, who, comment in requests] == [("doctor", "Stage 12 shows an open bite")]


def test_fifty_concurrent_approvals_and_revocations_leave_a_consistent_version(services, world, infra):
    sim = _version(services, world)
    doctor = world.actor(Role.DOCTOR)
    barrier = threading.Barrier(50)
    outcomes = []

    def act(n: int) -> None:
        barrier.wait()
        try:
            (services.review.approve if n % 2 else services.review.revoke)(doctor, sim.id)
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=act, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = infra.db.simulations.find_one({})
    assert doc["status"] == "ACTIVE"
    assert doc["isApproved"] == (doc["approvedAt"] is not None) == (doc["approvedBy"] is not None)
    granted = infra.db.audit_events.count_documents({"action": {"$in": ["approval.granted", "approval.revoked"]}})
    assert doc["revision"] == granted  # every applied change is audited once: no lost updates


def test_a_doctor_approves_a_version_on_the_review_page(services, world, infra, env, monkeypatch):
    sim = _version(services, world)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=30)
    at.session_state["user_id"] = world.users[Role.DOCTOR].id
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception and at.metric[0].value == "1"
    at.button(key=f"approve-{sim.id}").click().run()  # asks first: what is approved, with thumbnails
    assert not at.exception
    assert not services.simulations.get(world.actor(), sim.id).isApproved
    assert any(f"version {sim.version}" in m.value and "Start + 2 stages" in m.value for m in at.markdown)
    assert [i.proto.imgs[0].caption for i in at.get("image")][-3:] == ["Start", "Stage 1", "Stage 2"]
    at.button(key=f"cancel-approve-{sim.id}").click().run()
    assert not services.simulations.get(world.actor(), sim.id).isApproved

    at.button(key=f"approve-{sim.id}").click().run()
    at.button(key=f"confirm-approve-{sim.id}").click().run()
    assert not at.exception
    assert services.simulations.get(world.actor(), sim.id).isApproved
    assert any("Nothing is waiting" in s.value for s in at.success)
    assert any(f"Approved {sim.name} version {sim.version}" in s.value for s in at.success)
    at.button(key=f"undo-{sim.id}").click().run()  # within the undo window
    assert not at.exception
    assert not services.simulations.get(world.actor(), sim.id).isApproved
    assert at.metric[0].value == "1"  # back in the waiting list

    at.get("button_group")[0].set_value("approved").run()  # revoke from the page, after a confirmation
    services.review.approve(world.actor(Role.DOCTOR), sim.id)
    at.run()
    at.button(key=f"revoke-{sim.id}").click().run()
    at.button(key=f"confirm-revoke-{sim.id}").click().run()
    assert not at.exception
    assert not services.simulations.get(world.actor(), sim.id).isApproved
    st.cache_resource.clear()
