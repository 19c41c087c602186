"""Finding patients and what the clinic holds for each: treatments, simulation series, photos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.domain import (
    AssetKind,
    ImagingAsset,
    Patient,
    Permission,
    SimulationStatus,
    SimulationType,
    Treatment,
    TreatmentSimulation,
)
from core.infra import Infrastructure
from core.permissions import Actor
from core.repositories.base import Page
from core.services.base import ServiceBase


@dataclass(frozen=True)
class SimulationSeries:
    """All versions of one simulation (same patient, treatment and type), newest first."""

    simulationType: SimulationType
    treatment: Treatment | None
    versions: tuple[TreatmentSimulation, ...]

    @property
    def latest(self) -> TreatmentSimulation:
        return self.versions[0]

    @property
    def active(self) -> TreatmentSimulation | None:
        return next((v for v in self.versions if v.status is SimulationStatus.ACTIVE), None)

    @property
    def title(self) -> str:
        return self.latest.name


@dataclass(frozen=True)
class PatientOverview:
    patient: Patient
    treatments: tuple[Treatment, ...]
    series: tuple[SimulationSeries, ...]
    #: Continues the version list when the patient has more versions than one page shows.
    cursor: str | None = None


class PatientService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra

    def search(self, actor: Actor, text: str = "", *, limit: int = 50) -> Page[Patient]:
        """Patients matching a name prefix or chart number (or, without text, the first by name)."""
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.patients.search(actor.clinic_id, text, limit=limit)

    def page(self, actor: Actor, *, limit: int = 50, cursor: str | None = None) -> Page[Patient]:
        """The clinic's patients by name, a page at a time."""
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.patients.page(actor.clinic_id, limit=limit, cursor=cursor)

    def get_many(self, actor: Actor, patient_ids: Sequence[str]) -> dict[str, Patient]:
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.patients.get_many(actor.clinic_id, patient_ids)

    def get(self, actor: Actor, patient_id: str) -> Patient:
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.patients.get(actor.clinic_id, patient_id)

    def overview(self, actor: Actor, patient_id: str, *, include_archived: bool = False, limit: int = 100,
                 cursor: str | None = None) -> PatientOverview:
        """The patient, their treatments and simulation series (presenters: approved versions only).

        Series are built from the newest `limit` versions; `cursor` of the result continues with older ones.
        """
        patient = self.get(actor, patient_id)
        treatments = self._infra.treatments.list_for_patient(actor.clinic_id, patient.id)
        by_id = {t.id: t for t in treatments}
        sims = self._infra.simulations.list_for_patient(
            actor.clinic_id, patient.id, include_archived=include_archived,
            approved_only=actor.approved_only, limit=limit, cursor=cursor,
        )
        grouped: dict[tuple[str | None, str], list[TreatmentSimulation]] = {}
        for sim in sims:
            grouped.setdefault((sim.treatmentId, sim.simulationType.value), []).append(sim)
        series = [
            SimulationSeries(
                simulationType=versions[0].simulationType,
                treatment=by_id.get(treatment_id) if treatment_id else None,
                versions=tuple(sorted(versions, key=lambda s: s.version, reverse=True)),
            )
            for (treatment_id, _type), versions in grouped.items()
        ]
        series.sort(key=lambda s: s.latest.updatedAt, reverse=True)
        return PatientOverview(patient, tuple(treatments), tuple(series), sims.cursor)

    def photos(self, actor: Actor, patient_id: str, *, limit: int = 200) -> Page[ImagingAsset]:
        """The patient's clinical photos and scan views (the 'before' material of the gallery)."""
        patient = self.get(actor, patient_id)
        return self._infra.assets.list_for_patient(
            actor.clinic_id, patient.id, kinds=(AssetKind.PHOTO, AssetKind.SCAN), limit=limit
        )

    def asset(self, actor: Actor, asset_id: str) -> ImagingAsset:
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.assets.get(actor.clinic_id, asset_id)

    def asset_bytes(self, actor: Actor, asset_id: str) -> bytes:
        actor.require(Permission.IMAGING_VIEW)
        asset = self._infra.assets.get(actor.clinic_id, asset_id)
        return self._infra.store.get(asset.sha256)
