"""Repositories against the real embedded MongoDB-wire server."""

from __future__ import annotations

import threading
from datetime import date, datetime

import pytest

from core.domain import Frame, SimulationStatus, SimulationType
from core.errors import ConflictError, NotFoundError
from tests.factories import make_clinic


def _insert(infra, world, *, name: str = "Plan", frames=()):
    return infra.simulations.insert_version(
        world.clinic.id, patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name=name, frames=frames, metadata={"k": 1},
        created_by=world.users[next(iter(world.users))].id,
    )


def test_a_record_of_clinic_b_is_not_found_from_clinic_a(infra):
    a = make_clinic(infra, "alpha")
    b = make_clinic(infra, "beta")
    sim_b = _insert(infra, b)

    with pytest.raises(NotFoundError, match="in your clinic"):
        infra.simulations.get(a.clinic.id, sim_b.id)
    with pytest.raises(NotFoundError):
        infra.patients.get(a.clinic.id, b.patient.id)
    assert list(infra.patients.search(a.clinic.id, "Patientbeta")) == []
    assert list(infra.simulations.list_for_patient(a.clinic.id, b.patient.id)) == []
    # ...while the owner finds it
    assert infra.simulations.get(b.clinic.id, sim_b.id).id == sim_b.id


def test_a_malformed_id_is_not_found_rather_than_crashing(infra):
    a = make_clinic(infra)
    with pytest.raises(NotFoundError):
        infra.simulations.get(a.clinic.id, "not-an-object-id")


def test_ids_dates_and_frames_round_trip(infra):
    world = make_clinic(infra)
    frame = Frame(index=0, stage=3, view="upper", assetId="65a000000000000000000001", width=10, height=8,
                  label="Stage 3")
    sim = _insert(infra, world, frames=[frame])
    loaded = infra.simulations.get(world.clinic.id, sim.id)

    assert loaded == sim
    assert loaded.frames == (frame,)
    assert loaded.frameCount == 1
    assert isinstance(loaded.createdAt, datetime) and loaded.createdAt.tzinfo is not None
    assert loaded.patientId == world.patient.id and loaded.treatmentId == world.treatment.id
    patient = infra.patients.get(world.clinic.id, world.patient.id)
    assert patient.dateOfBirth == date(2001, 2, 3)


def test_a_new_version_supersedes_the_active_one(infra):
    world = make_clinic(infra)
    v1 = _insert(infra, world, name="v1")
    v2 = _insert(infra, world, name="v2")

    assert (v1.version, v2.version) == (1, 2)
    assert infra.simulations.get(world.clinic.id, v1.id).status is SimulationStatus.SUPERSEDED
    assert v2.status is SimulationStatus.ACTIVE and not v2.isApproved


def test_the_database_refuses_a_second_active_version_of_a_series(infra):
    world = make_clinic(infra)
    _insert(infra, world)
    doc = infra.db.simulations.find_one({})
    doc.pop("_id")
    doc["version"] = 99
    from pymongo.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError):  # the unique partial index, bypassing the repository
        infra.db.simulations.insert_one(doc)


def test_concurrent_inserts_leave_exactly_one_active_and_gap_free_versions(infra):
    world = make_clinic(infra)
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def insert() -> None:
        barrier.wait()
        try:
            _insert(infra, world)
        except ConflictError as exc:  # allowed outcome: told to retry, nothing written
            errors.append(exc)

    threads = [threading.Thread(target=insert) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    docs = list(infra.db.simulations.find({}, {"status": 1, "version": 1}))
    assert [d["status"] for d in docs].count("ACTIVE") == 1
    assert sorted(d["version"] for d in docs) == list(range(1, len(docs) + 1))
    assert len(docs) + len(errors) == 8
    assert len(docs) >= 1
