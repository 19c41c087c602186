"""The Exports page's worklist: every export of the clinic with what a coordinator needs to act on it —
what it is (in words), whose it is (per the clinic's name policy), its version, state and file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.domain import ExportState, ExportType, ImagingAsset, Permission, SimulationExport
from core.infra import Infrastructure
from core.permissions import Actor
from core.privacy import patient_listing
from core.repositories.base import Page
from core.services.approval import patient_ready

TYPE_LABELS: dict[ExportType, str] = {
    ExportType.SNAPSHOT: "Snapshot", ExportType.VIDEO: "Video", ExportType.GIF: "Animated GIF",
    ExportType.COMPARISON: "Comparison", ExportType.PDF: "PDF", ExportType.ASSETS: "Frames (ZIP)",
    ExportType.PPTX: "PowerPoint", ExportType.PACK: "Consult pack (ZIP)",
}
STATE_LABELS: dict[ExportState, str] = {
    ExportState.PENDING: "Waiting for the queue", ExportState.QUEUED: "Queued", ExportState.RUNNING: "Rendering",
    ExportState.DONE: "Ready", ExportState.FAILED: "Failed", ExportState.CANCELLED: "Cancelled",
}
BUSY = frozenset({ExportState.PENDING, ExportState.QUEUED, ExportState.RUNNING})


@dataclass(frozen=True)
class ExportRow:
    export: SimulationExport
    type_label: str
    state_label: str
    patient: str
    simulation: str
    version: int | None
    made_by: str
    file: ImagingAsset | None

    @property
    def busy(self) -> bool:
        return self.export.state in BUSY


class ExportWorklist:
    """Reads only: the export service still requests, cancels and retries."""

    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra

    def rows(self, actor: Actor, *, cursor: str | None = None, limit: int = 50, types: Iterable[ExportType] = (),
             states: Iterable[ExportState] = (), mine: bool = False) -> Page[ExportRow]:
        """A page of the clinic's exports, newest first, with patient, version, maker and file looked up
        in one batched query each (presenters: only files a patient may see, as everywhere)."""
        actor.require(Permission.IMAGING_VIEW)
        page = self._infra.exports.list_recent(actor.clinic_id, limit=limit, cursor=cursor,
                                               approved_only=actor.approved_only, types=types, states=states,
                                               created_by=actor.id if mine else None)
        sims = self._infra.simulations.summaries(actor.clinic_id, {e.simulationId for e in page})
        exports = list(page)
        if actor.approved_only:
            exports = [e for e in exports if patient_ready(approved_when_made=bool(e.settings.get("approved")),
                                                           made_at=e.createdAt, sim=sims.get(e.simulationId))]
        patients = self._infra.patients.get_many(actor.clinic_id, {s.patientId for s in sims.values()})
        users = self._infra.users.get_many(actor.clinic_id, {e.createdBy for e in exports})
        wanted = {e.id: e.asset_id for e in exports if e.state is ExportState.DONE and e.asset_id}
        assets = self._infra.assets.find_many(actor.clinic_id, set(wanted.values()))
        clinic = self._infra.clinics.get(actor.clinic_id)
        rows = []
        for export in exports:
            sim = sims.get(export.simulationId)
            patient = patients.get(sim.patientId) if sim else None
            user = users.get(export.createdBy)
            rows.append(ExportRow(
                export=export, type_label=TYPE_LABELS.get(export.exportType, export.exportType.value.title()),
                state_label=STATE_LABELS.get(export.state, export.state.value.title()),
                patient=patient_listing(patient, clinic) if patient else "Patient record removed",
                simulation=sim.name if sim else "", version=sim.version if sim else None,
                made_by=user.name if user else "a former colleague",
                file=assets.get(wanted.get(export.id, ""))))
        return Page(tuple(rows), page.cursor, page.truncated)
