"""Watch-folder integrations: pick-up, patient matching, the unmatched queue, exactly-once claims."""

from __future__ import annotations

import os
import time
from datetime import date

import pytest

from core.domain import ImportState, IntegrationKind, Role
from core.errors import PermissionDeniedError, ValidationError
from core.imaging import encode_png
from core.services.integrations import DropFolderConnector, IntegrationService, name_hint
from tests.factories import gradient_frame, make_clinic


@pytest.fixture
def world(infra):
    return make_clinic(infra)


@pytest.fixture
def service(services, infra):
    connectors = {kind: DropFolderConnector(settle_seconds=0) for kind in IntegrationKind}
    return IntegrationService(infra, services.imports, connectors)


def _export(folder, name: str, stages: int = 3) -> None:
    path = folder / name
    path.mkdir(parents=True)
    for stage in range(stages):
        (path / f"Stage {stage}.png").write_bytes(encode_png(gradient_frame(stage)).data)
    old = time.time() - 60
    for p in [path, *path.iterdir()]:
        os.utime(p, (old, old))


def test_only_admins_configure_integrations_and_the_folder_must_exist(service, world, tmp_path):
    with pytest.raises(PermissionDeniedError):
        service.create(world.actor(Role.COORDINATOR), kind=IntegrationKind.CLINCHECK, name="x", folder=str(tmp_path),
                       import_as=world.users[Role.COORDINATOR].id)
    with pytest.raises(ValidationError, match="not an existing folder"):
        service.create(world.actor(Role.ADMIN), kind=IntegrationKind.CLINCHECK, name="x",
                       folder=str(tmp_path / "missing"), import_as=world.users[Role.COORDINATOR].id)
    with pytest.raises(ValidationError, match="coordinator or doctor"):
        service.create(world.actor(Role.ADMIN), kind=IntegrationKind.CLINCHECK, name="x", folder=str(tmp_path),
                       import_as=world.users[Role.PRESENTER].id)


def test_a_named_export_is_imported_and_an_unknown_one_waits_for_a_coordinator(service, services, world, infra,
                                                                                  tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    patient = world.patient
    _export(drop, f"{patient.lastName}_{patient.firstName}_{patient.dateOfBirth:%Y-%m-%d}")
    _export(drop, "Someone_Else_1999-01-01", stages=2)
    integration = service.create(world.actor(Role.ADMIN), kind=IntegrationKind.CLINCHECK, name="ClinCheck captures",
                                 folder=str(drop), import_as=world.users[Role.COORDINATOR].id)

    assert service.sync(integration) == 2
    assert service.sync(integration) == 0  # each export is picked up once
    stats = infra.integrations.get(world.clinic.id, integration.id)
    assert (stats.imported, stats.unmatched, stats.failed) == (1, 1, 0) and stats.lastSyncAt is not None

    sims = services.patients.overview(world.actor(), patient.id).series
    assert len(sims) == 1 and sims[0].latest.frameCount == 3
    waiting = service.unmatched(world.actor())
    assert len(waiting) == 1 and waiting[0].state is ImportState.UNMATCHED
    record = services.imports.get(world.actor(), waiting[0].id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in record.candidates],
                             patient_id=patient.id, queue=False)
    done = services.imports.commit(world.clinic.id, record.id)
    assert done.state is ImportState.DONE
    assert services.patients.overview(world.actor(), patient.id).series[0].latest.version == 2


def test_real_orthocad_exports_in_an_itero_drop_folder_are_matched_or_wait(service, services, world, infra,
                                                                            tmp_path):
    from core.fixtures.itero import VARIATIONS, make_itero_export

    patient = infra.patients.create(world.clinic.id, first_name="Alex", last_name="Example",
                                    date_of_birth=date(2009, 4, 17), chart_number="CH-4711")
    drop = tmp_path / "drop"
    for order, who in (("70011", ("Example", "Alex")), ("70012", ("Unknown", "Person"))):
        make_itero_export(drop / f"OrthoCAD_Export_{order} (4)", order_id=order, patient=who, doctor="Dr. Sample",
                          variation=VARIATIONS["orthocad"], view_size=(320, 180))
    old = time.time() - 60
    for path in drop.rglob("*"):
        os.utime(path, (old, old))
    integration = service.create(world.actor(Role.ADMIN), kind=IntegrationKind.ITERO, name="iTero scanner",
                                 folder=str(drop), import_as=world.users[Role.COORDINATOR].id)

    assert service.sync(integration) == 2
    stats = infra.integrations.get(world.clinic.id, integration.id)
    assert (stats.imported, stats.unmatched, stats.failed) == (1, 1, 0)
    series = services.patients.overview(world.actor(), patient.id).series
    assert len(series) == 1 and series[0].latest.frameCount == 5 and series[0].latest.sourceId == "70011"
    waiting = service.unmatched(world.actor())
    assert [w.metadata["sourceId"] for w in waiting] == ["70012"]
    # Its chart number is the matched patient's (a typo at the scanner?), but the names disagree: no match.
    assert waiting[0].metadata["matchReason"] == ("The chart number on the export belongs to a patient with another "
                                                  "name; no patient has the name either.")


def test_a_missing_drop_folder_is_reported_on_the_integration(service, world, infra, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    integration = service.create(world.actor(Role.ADMIN), kind=IntegrationKind.ITERO, name="iTero",
                                 folder=str(drop), import_as=world.users[Role.DOCTOR].id)
    drop.rmdir()
    assert service.sync(integration) == 0
    assert "does not exist" in infra.integrations.get(world.clinic.id, integration.id).lastError


@pytest.mark.parametrize(("label", "expected"), [
    ("Okafor_Maya_2009-04-17", ("Okafor", "Maya", "2009-04-17")),
    ("Okafor, Maya", ("Okafor", "Maya", None)),
    ("capture.mp4", None),
])
def test_export_names_give_patient_hints(label, expected):
    hint = name_hint(label)
    if expected is None:
        assert hint is None
    else:
        assert (hint[0], hint[1], hint[2].isoformat() if hint[2] else None) == expected
