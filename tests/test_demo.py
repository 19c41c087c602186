"""The demo clinic: its shape (full plan) and a real seed (mini profile, rendered inline)."""

from __future__ import annotations

import pytest

from core.demo.seed import demo_plan, seed_demo
from core.domain import AssetKind, Role, SimulationStatus, SimulationType
from core.errors import ValidationError
from core.permissions import Actor


def test_the_full_demo_plan_looks_like_an_orthodontic_practice():
    clinics = demo_plan("full")
    patients = [p for c in clinics for p in c.patients]
    sims = [s for p in patients for s in p.simulations]

    assert len(clinics) == 2
    assert len(patients) >= 6
    assert all(1 <= len(p.simulations) <= 3 for p in patients)
    aligners = [s for s in sims if s.simulation_type is SimulationType.ALIGNER]
    assert aligners and all(20 <= s.stages <= 40 for s in aligners)
    assert any(s.stages == 40 for s in aligners)
    assert any(s.simulation_type is SimulationType.SMILE_DESIGN for s in sims)
    assert any(s.versions > 1 for s in sims)  # a series with a SUPERSEDED older version
    assert len({p.chart for p in patients}) == len(patients)


def test_seeding_creates_users_of_every_role_patients_photos_and_versioned_simulations(services, infra):
    seeded = seed_demo(services, profile="mini", inline=True)

    clinics = infra.db.clinics.count_documents({})
    assert clinics == 2
    for clinic_id in infra.clinics.list_ids():
        roles = sorted(u.role.value for u in infra.users.list(clinic_id))
        assert roles == sorted(r.value for r in Role)
    brightside = next(c for c in infra.clinics.list_ids() if infra.clinics.get(c).slug == "brightside")
    coordinator = Actor(next(u for u in infra.users.list(brightside) if u.role is Role.COORDINATOR))
    patients = services.patients.search(coordinator)
    assert len(patients) == 6
    for patient in patients:
        assert infra.treatments.list_for_patient(brightside, patient.id)
        photos = infra.assets.list_for_patient(brightside, patient.id, kinds=[AssetKind.PHOTO])
        assert len(photos) == 6 and all("before" in p.tags for p in photos)
    statuses = [d["status"] for d in infra.db.simulations.find({})]
    assert statuses.count(SimulationStatus.SUPERSEDED.value) >= 2
    assert seeded == sum(len(p.simulations) for c in demo_plan("mini") for p in c.patients)
    smile = infra.db.simulations.find_one({"simulationType": "SMILE_DESIGN"})
    assert smile["frameCount"] == 2
    # The photos job (how `make run` seeds them) run again after a crash replaces, never adds.
    from core.demo.seed import render_demo_photos

    render_demo_photos(services, coordinator, patients[0].id, profile="mini")
    again = infra.assets.list_for_patient(brightside, patients[0].id, kinds=[AssetKind.PHOTO])
    assert len(again) == 6


def test_the_demo_is_only_seeded_into_an_empty_database(services):
    seed_demo(services, profile="mini", inline=True)
    with pytest.raises(ValidationError, match="empty database only"):
        seed_demo(services, profile="mini", inline=True)
