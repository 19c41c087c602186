"""Every service operation × role × own-clinic / other-clinic resource matches the permission table.

Refusals raise PermissionDeniedError and are audited; another clinic's records are simply not found.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.domain import ImportSource, IntegrationKind, Role, SimulationType
from core.errors import NotFoundError, PermissionDeniedError
from core.imaging import encode_png
from core.services.imports import Upload
from core.services.visuals import OutputSpec, SnapshotSpec
from tests.factories import gradient_frame, make_clinic, new_frames

ALLOWED: dict[str, set[Role]] = {
    "search patients": {Role.COORDINATOR, Role.DOCTOR, Role.PRESENTER, Role.ADMIN},
    "view approved version": {Role.COORDINATOR, Role.DOCTOR, Role.PRESENTER, Role.ADMIN},
    "view draft version": {Role.COORDINATOR, Role.DOCTOR, Role.ADMIN},
    "create version": {Role.COORDINATOR, Role.DOCTOR},
    "start import": {Role.COORDINATOR, Role.DOCTOR},
    "export approved snapshot": {Role.COORDINATOR, Role.DOCTOR, Role.PRESENTER},
    "export draft snapshot": {Role.COORDINATOR, Role.DOCTOR},
    "approve": {Role.DOCTOR},
    "invite user": {Role.ADMIN},
    "search audit trail": {Role.ADMIN},
    "configure integration": {Role.ADMIN},
}


@pytest.fixture
def clinics(services, infra):
    worlds = {}
    for slug, chart in (("alpha", "A-1"), ("beta", "B-1")):
        world = make_clinic(infra, slug, chart=chart)
        draft = services.simulations.create_version(
            world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
            simulation_type=SimulationType.ALIGNER, name="Draft", frames=new_frames(2), queue_renditions=False)
        other = infra.treatments.create(world.clinic.id, world.patient.id, name="Second plan")
        approved = services.simulations.create_version(
            world.actor(), patient_id=world.patient.id, treatment_id=other.id,
            simulation_type=SimulationType.ALIGNER, name="Approved", frames=new_frames(2), queue_renditions=False)
        services.review.approve(world.actor(Role.DOCTOR), approved.id)
        worlds[slug] = (world, draft.id, approved.id)
    return worlds


def _operations(services, target, tmp_path) -> dict[str, Callable]:
    world, draft, approved = target
    png = encode_png(gradient_frame(1)).data
    return {
        "search patients": lambda a: services.patients.overview(a, world.patient.id),
        "view approved version": lambda a: services.simulations.get(a, approved),
        "view draft version": lambda a: services.simulations.get(a, draft),
        "create version": lambda a: services.simulations.create_version(
            a, patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.CUSTOM, name="x",
            frames=new_frames(1), queue_renditions=False),
        "start import": lambda a: services.imports.start(a, source=ImportSource.FILES, patient_id=world.patient.id,
                                                         uploads=[Upload("s.png", png)], queue_analysis=False),
        "export approved snapshot": lambda a: services.visuals.export_snapshot(
            a, approved, SnapshotSpec(0, output=OutputSpec(size="square"))),
        "export draft snapshot": lambda a: services.visuals.export_snapshot(
            a, draft, SnapshotSpec(0, output=OutputSpec(size="square"))),
        "approve": lambda a: services.review.approve(a, draft),
        "invite user": lambda a: services.sessions.invite(a, email=f"n{a.id[-4:]}@x.test", name="N",
                                                          role=Role.COORDINATOR),
        "search audit trail": services.audit.search,
        "configure integration": lambda a: services.integrations.create(
            a, kind=IntegrationKind.ITERO, name=f"i{a.id[-4:]}", folder=str(tmp_path),
            import_as=world.users[Role.COORDINATOR].id),
    }


@pytest.mark.parametrize("operation", list(ALLOWED))
@pytest.mark.parametrize("role", list(Role))
def test_own_clinic_outcomes_match_the_table(services, infra, clinics, tmp_path, operation, role):
    world = clinics["alpha"][0]
    actor = services.sessions.load_actor(world.users[role].id)
    run = _operations(services, clinics["alpha"], tmp_path)[operation]
    denied_before = infra.db.audit_events.count_documents({"action": "permission.denied"})
    if role in ALLOWED[operation]:
        run(actor)
        return
    if role is Role.PRESENTER and "draft" in operation:
        with pytest.raises(NotFoundError, match="presenters see approved versions only"):
            run(actor)  # drafts do not exist for presenters
        return
    with pytest.raises(PermissionDeniedError):
        run(actor)
    assert infra.db.audit_events.count_documents({"action": "permission.denied"}) == denied_before + 1


@pytest.mark.parametrize("operation", [op for op in ALLOWED if op not in ("invite user", "search audit trail",
                                                                          "configure integration")])
@pytest.mark.parametrize("role", list(Role))
def test_another_clinics_records_are_never_reachable(services, infra, clinics, tmp_path, operation, role):
    actor = services.sessions.load_actor(clinics["alpha"][0].users[role].id)
    run = _operations(services, clinics["beta"], tmp_path)[operation]
    alpha = clinics["alpha"][0].clinic.id
    refused_before = infra.db.audit_events.count_documents({"outcome": "refused"})
    with pytest.raises((PermissionDeniedError, NotFoundError)):
        run(actor)
    # Every refusal is audited in the caller's clinic: a permission, or a record it may not reach.
    refusals = [e for e in infra.audit.list(alpha) if e.outcome == "refused"]
    assert infra.db.audit_events.count_documents({"outcome": "refused"}) == refused_before + 1
    assert refusals[0].userId == actor.id and refusals[0].action in ("permission.denied", "access.refused")
    if refusals[0].action == "access.refused":
        assert set(refusals[0].details["ids"]) <= {clinics["beta"][0].patient.id, *clinics["beta"][1:]}
    beta_id = clinics["beta"][0].clinic.id
    from bson import ObjectId

    assert infra.db.simulations.count_documents({"clinicId": ObjectId(beta_id)}) == 2  # nothing was added there
    assert infra.db.simulation_exports.count_documents({"clinicId": ObjectId(beta_id)}) == 0


def test_a_refusal_never_echoes_a_hostile_id(services, infra, clinics):
    actor = clinics["alpha"][0].actor()
    hostile = "\u202e<script>" + "x" * 5000
    with pytest.raises(NotFoundError):
        services.simulations.get(actor, hostile)
    event = infra.audit.list(clinics["alpha"][0].clinic.id)[0]
    assert event.action == "access.refused" and event.details["ids"] == [] and event.details["malformedIds"] == 1
    assert "script" not in str(event.details) and event.details["operation"] == "SimulationService.get"


def test_a_job_given_another_clinics_import_id_finds_nothing(services, clinics):
    alpha, beta = clinics["alpha"][0], clinics["beta"][0]
    record = services.imports.start(beta.actor(), source=ImportSource.FILES, patient_id=beta.patient.id,
                                    uploads=[Upload("s.png", encode_png(gradient_frame(1)).data)],
                                    queue_analysis=False)
    with pytest.raises(NotFoundError):
        services.imports.analyze(alpha.clinic.id, record.id)  # forged: alpha's clinic with beta's import
    with pytest.raises(NotFoundError):
        services.simulations.make_renditions(alpha.clinic.id, clinics["beta"][1])
