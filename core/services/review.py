"""Doctor review: the approval queue, approving / revoking a version, and change requests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.domain import Patient, Permission, SimulationStatus, TreatmentSimulation
from core.errors import ConflictError, ValidationError
from core.infra import Infrastructure
from core.permissions import Actor
from core.repositories.base import Page
from core.services.base import ServiceBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueItem:
    simulation: TreatmentSimulation
    patient: Patient


class ReviewService(ServiceBase):
    def __init__(self, infra: Infrastructure, *,
                 events: Callable[[str, str, dict[str, object]], object] | None = None) -> None:
        """`events(clinic_id, event, data)` is told of each approval (`simulation.approved`)."""
        self._infra = infra
        self._events = events

    def queue(self, actor: Actor, *, limit: int = 50, cursor: str | None = None) -> Page[QueueItem]:
        """Active versions awaiting approval in the doctor's clinic, longest waiting first (a page)."""
        actor.require(Permission.IMAGING_APPROVE)
        sims = self._infra.simulations.awaiting_approval(actor.clinic_id, limit=limit, cursor=cursor)
        patients = self._infra.patients.get_many(actor.clinic_id, {s.patientId for s in sims})
        items = tuple(QueueItem(sim, patients[sim.patientId]) for sim in sims if sim.patientId in patients)
        return Page(items, sims.cursor)

    def approve(self, actor: Actor, simulation_id: str) -> TreatmentSimulation:
        return self._set(actor, simulation_id, approved=True)

    def revoke(self, actor: Actor, simulation_id: str) -> TreatmentSimulation:
        return self._set(actor, simulation_id, approved=False)

    def _set(self, actor: Actor, simulation_id: str, *, approved: bool) -> TreatmentSimulation:
        actor.require(Permission.IMAGING_APPROVE)
        sim = self._infra.simulations.get(actor.clinic_id, simulation_id)
        if sim.status is not SimulationStatus.ACTIVE:
            self._audit(actor, sim, "approval.refused", outcome="refused")
            raise ConflictError(f"Version {sim.version} is {sim.status.value.lower()}; only the active version of "
                                "a series can be approved. Open the latest version.")
        if sim.isApproved == approved:
            return sim
        updated = self._infra.simulations.set_approval(actor.clinic_id, sim.id, approved=approved, user_id=actor.id,
                                                       expected_revision=sim.revision)
        self._audit(actor, updated, "approval.granted" if approved else "approval.revoked")
        if approved and self._events is not None:
            try:
                self._events(actor.clinic_id, "simulation.approved",
                             {"simulationId": updated.id, "version": updated.version, "patientId": updated.patientId})
            except Exception:  # the approval stands; a notification that could not be queued is logged
                log.exception("simulation %s: approval notification not recorded", updated.id)
        return updated

    def request_changes(self, actor: Actor, simulation_id: str, comment: str) -> None:
        actor.require(Permission.IMAGING_APPROVE)
        comment = comment.strip()
        if not comment:
            raise ValidationError("Say what should change, so the coordinator can act on it.")
        sim = self._infra.simulations.get(actor.clinic_id, simulation_id)
        self._audit(actor, sim, "review.changes_requested", comment=comment[:2000])

    def change_requests(self, actor: Actor, simulation_id: str) -> list[tuple[str, str, str]]:
        """(when, who, comment) of change requests on this version, newest first."""
        actor.require(Permission.IMAGING_VIEW)
        sim = self._infra.simulations.get(actor.clinic_id, simulation_id)
        events = self._infra.audit.for_simulation(actor.clinic_id, sim.id, action="review.changes_requested")
        names = {u.id: u.name for u in self._infra.users.get_many(
            actor.clinic_id, {e.userId for e in events if e.userId}).values()}
        return [(e.at.strftime("%Y-%m-%d %H:%M"), names.get(e.userId or "", "a doctor"), e.details.get("comment", ""))
                for e in events]

    def _audit(self, actor: Actor, sim: TreatmentSimulation, action: str, outcome: str = "ok", **details: str) -> None:
        self._infra.audit.append(actor.clinic_id, action=action, outcome=outcome, user_id=actor.id,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"version": sim.version, **details})
