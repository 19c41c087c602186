"""Simulation versions: reading them and their frames, creating versions, making renditions."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.client_session import ClientSession

from core.blobs import release_blobs
from core.domain import (
    AssetKind,
    Frame,
    Permission,
    RenditionState,
    SimulationType,
    Treatment,
    TreatmentSimulation,
)
from core.errors import ConflictError, NotFoundError, ServiceUnavailableError, ValidationError
from core.imaging import DISPLAY_SIZE, THUMB_SIZE, EncodedImage, decode_rgb, make_rendition
from core.infra import Infrastructure
from core.permissions import Actor
from core.queueing import enqueue, job_state
from core.repositories.base import Page, check_limit, decode_cursor, encode_cursor
from core.services.base import ServiceBase
from core.stages import stage_count_text

log = logging.getLogger(__name__)

#: Which rendition of a frame to read.
RENDITIONS = ("original", "display", "thumb")
MAX_FRAMES = 2000


@dataclass(frozen=True)
class NewFrame:
    """A frame to store in a new version: the encoded image of one stage seen from one view."""

    stage: int
    view: str
    image: EncodedImage
    label: str = ""


@dataclass(frozen=True)
class SimulationContext:
    """What the side panel shows next to a version: its treatment and the series' versions."""

    treatment: Treatment | None
    versions: tuple[TreatmentSimulation, ...]  # newest first


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    who: str
    version: int
    what: str


#: Stored metadata worth telling a doctor about, in words; other keys are bookkeeping and stay hidden.
METADATA_LABELS = {"sourceFiles": "Files imported", "alignerCount": "Aligners", "treatmentPlan": "Treatment plan",
                   "movementScaleMm": "Movement scale (mm)"}

HISTORY_ACTIONS = ("simulation.import", "simulation.modified", "approval.granted", "approval.revoked",
                   "review.changes_requested")


def _describe(action: str, details: dict[str, Any]) -> str:
    if action == "simulation.import":
        return f"imported ({details.get('frames')} frames from {details.get('sourceSystem') or 'upload'})"
    if action == "simulation.modified":
        change = details.get("change", "changed")
        if "before" in details or "after" in details:
            return f"{change}: {details.get('before', '–')} → {details.get('after', '–')}"
        return change
    if action == "review.changes_requested":
        return f"changes requested: {details.get('comment', '')}"
    return {"approval.granted": "approved", "approval.revoked": "approval revoked"}.get(action, action)


@dataclass(frozen=True)
class RenditionProgress:
    state: RenditionState
    percent: int


def renditions_job_id(simulation_id: str) -> str:
    return f"renditions-{simulation_id}"


def _derived_oid(*parts: str) -> ObjectId:
    """A deterministic ObjectId, so a retried job rewrites the same records instead of adding more."""
    return ObjectId(hashlib.sha256("/".join(parts).encode()).digest()[:12])


class SimulationService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra

    # --- reading -------------------------------------------------------------------------------
    def get(self, actor: Actor, simulation_id: str) -> TreatmentSimulation:
        """A version the actor may see (presenters: approved versions only)."""
        actor.require(Permission.IMAGING_VIEW)
        sim = self._infra.simulations.get(actor.clinic_id, simulation_id)
        if actor.approved_only and not sim.isApproved:
            raise NotFoundError("This simulation version is not approved yet; presenters see approved versions only.")
        return sim

    def find(self, actor: Actor, record_id: str) -> TreatmentSimulation | None:
        """The version with this id if the actor may see it, else None (the API's `/simulations/{id}`
        also takes patient ids: a miss here is not a refusal yet)."""
        actor.require(Permission.IMAGING_VIEW)
        try:  # the whole document: on the embedded server an `_id` read is cheaper without a projection
            sim = self._infra.simulations.get(actor.clinic_id, record_id)
        except NotFoundError:  # not a version of this clinic (maybe a patient id)
            return None
        return None if actor.approved_only and not sim.isApproved else sim

    def list_for_patient(self, actor: Actor, patient_id: str, *, limit: int = 50, cursor: str | None = None,
                         include_archived: bool = False) -> Page[TreatmentSimulation]:
        """A patient's versions newest first, without frames (presenters: approved versions only); a page."""
        actor.require(Permission.IMAGING_VIEW)
        patient = self._infra.patients.get(actor.clinic_id, patient_id)
        return self._infra.simulations.list_for_patient(actor.clinic_id, patient.id, limit=limit, cursor=cursor,
                                                        include_archived=include_archived,
                                                        approved_only=actor.approved_only)

    def frames_page(self, actor: Actor, simulation_id: str, *, limit: int = 100, cursor: str | None = None
                    ) -> tuple[TreatmentSimulation, Page[Frame]]:
        """A version and a page of its frames in index order (`cursor` continues after the last shown)."""
        sim = self.get(actor, simulation_id)
        start = 0
        if cursor:
            value, _ = decode_cursor(cursor)
            if not isinstance(value, int):
                raise ValidationError("That page link is not valid (or out of date); start again from the first page.")
            start = value
        chosen = [f for f in sim.frames if f.index >= start][:check_limit(limit) + 1]
        more = len(chosen) > limit
        return sim, Page(tuple(chosen[:limit]), encode_cursor(chosen[limit].index, ObjectId(sim.id)) if more else None)

    def record_view(self, actor: Actor, simulation_id: str) -> None:
        """Audit that the actor opened this version (pages call it once per opened version)."""
        sim = self.get(actor, simulation_id)
        self._infra.audit.append(actor.clinic_id, action="simulation.view", user_id=actor.id, role=actor.role.value,
                                 patient_id=sim.patientId, simulation_id=sim.id, details={"version": sim.version})

    def context(self, actor: Actor, sim: TreatmentSimulation) -> SimulationContext:
        self.get(actor, sim.id)
        treatment = self._infra.treatments.get(actor.clinic_id, sim.treatmentId) if sim.treatmentId else None
        versions = [v for v in self._infra.simulations.series_versions(actor.clinic_id, sim.id, limit=50)
                    if v.isApproved or not actor.approved_only]
        return SimulationContext(treatment, tuple(versions))

    @staticmethod
    def differences(before: TreatmentSimulation, after: TreatmentSimulation) -> list[str]:
        """What changed between two versions of a series, in words a doctor reads."""
        lines = []
        if before.name != after.name:
            lines.append(f"Renamed from “{before.name}” to “{after.name}”")
        if before.stage_count != after.stage_count:
            lines.append(f"Stages: {stage_count_text(f.stage for f in before.frames)} → "
                         f"{stage_count_text(f.stage for f in after.frames)}")
        if before.views != after.views:
            lines.append(f"Views: {', '.join(before.views)} → {', '.join(after.views)}")
        if before.sourceSystem != after.sourceSystem:
            lines.append(f"Source: {before.sourceSystem or '–'} → {after.sourceSystem or '–'}")
        if before.scanId != after.scanId:
            lines.append("Linked scan changed")
        for key in sorted(set(before.metadata) | set(after.metadata)):
            if key not in METADATA_LABELS or before.metadata.get(key) == after.metadata.get(key):
                continue  # bookkeeping (import ids, demo marks, edit links) is not a clinical change
            lines.append(f"{METADATA_LABELS[key]}: {before.metadata.get(key, '–')} → {after.metadata.get(key, '–')}")
        return lines or ["New frames with the same stages and views"]

    def frame_images(
        self, actor: Actor, sim: TreatmentSimulation, frames: Sequence[Frame], rendition: str = "display"
    ) -> list[bytes]:
        """Bytes of the frames' renditions (falls back to the original while renditions are pending)."""
        if rendition not in RENDITIONS:
            raise ValidationError(f"Unknown rendition {rendition!r}; choose one of {', '.join(RENDITIONS)}.")
        self.get(actor, sim.id)  # permission, scope and approval for this exact version
        wanted = [self._asset_id(f, rendition) for f in frames]
        assets = self._infra.assets.get_many(actor.clinic_id, set(wanted))
        return [self._infra.store.get(assets[a].sha256) for a in wanted]

    @staticmethod
    def _asset_id(frame: Frame, rendition: str) -> str:
        if rendition == "display" and frame.displayAssetId:
            return frame.displayAssetId
        if rendition == "thumb" and frame.thumbAssetId:
            return frame.thumbAssetId
        return frame.assetId

    # --- creating versions ---------------------------------------------------------------------
    def create_version(
        self,
        actor: Actor,
        *,
        patient_id: str,
        treatment_id: str | None,
        simulation_type: SimulationType,
        name: str,
        frames: Sequence[NewFrame],
        metadata: dict[str, Any] | None = None,
        source_system: str | None = None,
        source_id: str | None = None,
        scan_id: str | None = None,
        queue_renditions: bool = True,
        extra_assets: Sequence[dict[str, Any]] = (),
        simulation_id: str | None = None,
    ) -> TreatmentSimulation:
        """Store the frames and add them as the next ACTIVE version of the series, atomically.

        On any failure nothing remains: no version, no asset records, no unreferenced files.
        `extra_assets` (documents from `AssetRepository.new_document`, e.g. the source recording or
        scan files of an import) are inserted in the same transaction. `simulation_id` fixes the new
        version's id in advance (so those assets can refer to it, and a retried job can find it).
        """
        actor.require(Permission.IMAGING_CAPTURE)
        clinic_id = actor.clinic_id
        patient = self._infra.patients.get(clinic_id, patient_id)
        if treatment_id:
            treatment = self._infra.treatments.get(clinic_id, treatment_id)
            if treatment.patientId != patient.id:
                raise ValidationError("That treatment plan belongs to another patient.")
        name = name.strip()
        if not name:
            raise ValidationError("Give the simulation a name (e.g. 'ClinCheck v2, upper and lower').")
        self._check_frames(frames)

        simulation_id = simulation_id or str(ObjectId())
        stored: list[str] = []
        asset_docs: list[dict[str, Any]] = []
        frame_records: list[Frame] = []
        try:
            for index, new in enumerate(sorted(frames, key=lambda f: (f.stage, f.view))):
                blob = self._infra.store.put(new.image.data)
                stored.append(blob.sha256)
                doc = self._infra.assets.new_document(
                    clinic_id, patient_id=patient.id, kind=AssetKind.FRAME,
                    content_type=new.image.content_type, size=blob.size, sha256=blob.sha256,
                    created_by=actor.id, width=new.image.width, height=new.image.height,
                    label=new.label, simulation_id=simulation_id,
                )
                asset_docs.append(doc)
                frame_records.append(
                    Frame(index=index, stage=new.stage, view=new.view, assetId=str(doc["_id"]),
                          width=new.image.width, height=new.image.height, label=new.label)
                )

            def insert_assets(session: ClientSession) -> None:
                self._infra.assets.insert_many(clinic_id, [*asset_docs, *extra_assets], session=session)

            sim = self._infra.simulations.insert_version(
                clinic_id, patient_id=patient.id, treatment_id=treatment_id,
                simulation_type=simulation_type, name=name, frames=frame_records,
                metadata=dict(metadata or {}), created_by=actor.id, source_system=source_system,
                source_id=source_id, scan_id=scan_id, simulation_id=simulation_id,
                in_transaction=insert_assets,
            )
        except BaseException:
            self._discard_blobs(stored)
            raise
        self._infra.audit.append(
            clinic_id, action="simulation.import", user_id=actor.id, role=actor.role.value,
            patient_id=patient.id, simulation_id=sim.id,
            details={"version": sim.version, "frames": sim.frameCount, "sourceSystem": source_system},
        )
        if queue_renditions:
            self.request_renditions(clinic_id, sim.id)
        return sim

    @staticmethod
    def _check_frames(frames: Sequence[NewFrame]) -> None:
        if not frames:
            raise ValidationError("A simulation needs at least one frame.")
        if len(frames) > MAX_FRAMES:
            raise ValidationError(f"The simulation has {len(frames):,} frames; the limit is {MAX_FRAMES:,}.")
        seen: set[tuple[int, str]] = set()
        for frame in frames:
            key = (frame.stage, frame.view)
            if frame.stage < 0:
                raise ValidationError(f"Stage {frame.stage} is negative; stages count from 0.")
            if key in seen:
                raise ValidationError(f"Stage {frame.stage} ({frame.view} view) appears twice; remove one.")
            seen.add(key)

    def _discard_blobs(self, sha256s: Sequence[str]) -> None:
        release_blobs(self._infra, sha256s)

    # --- modifications (recorded in the audit trail, shown as the series' history) -----------------
    def rename(self, actor: Actor, simulation_id: str, name: str) -> TreatmentSimulation:
        actor.require(Permission.IMAGING_CAPTURE)
        name = name.strip()
        if not name:
            raise ValidationError("A simulation needs a name.")
        sim = self.get(actor, simulation_id)
        updated = self._infra.simulations.update_fields(actor.clinic_id, sim.id, expected_revision=sim.revision,
                                                        name=name)
        self._modified(actor, updated, "rename", before=sim.name, after=name)
        return updated

    def link_scan(self, actor: Actor, simulation_id: str, scan_id: str | None) -> TreatmentSimulation:
        actor.require(Permission.IMAGING_CAPTURE)
        sim = self.get(actor, simulation_id)
        if scan_id:
            scan = self._infra.assets.get(actor.clinic_id, scan_id)
            if scan.patientId != sim.patientId or scan.kind is not AssetKind.SCAN:
                raise ValidationError("Link a scan of this patient (from the gallery's scans).")
        updated = self._infra.simulations.update_fields(actor.clinic_id, sim.id, expected_revision=sim.revision,
                                                        scanId=scan_id)
        self._modified(actor, updated, "link scan", before=sim.scanId, after=scan_id)
        return updated

    def edit_frames(self, actor: Actor, simulation_id: str, keep: Sequence[int]) -> TreatmentSimulation:
        """Reorder / trim frames. Always a new version: what a doctor approved is never altered."""
        actor.require(Permission.IMAGING_CAPTURE)
        sim = self.get(actor, simulation_id)
        by_index = {f.index: f for f in sim.frames}
        if not keep or any(i not in by_index for i in keep) or len(set(keep)) != len(keep):
            raise ValidationError("Choose the frames to keep, each once, from this version.")
        stage_order = list(dict.fromkeys(by_index[i].stage for i in keep))
        assets = self._infra.assets.get_many(actor.clinic_id, {by_index[i].assetId for i in keep})
        frames = []
        for i in keep:
            frame = by_index[i]
            original = assets[frame.assetId]
            data = self._infra.store.get(original.sha256)
            frames.append(NewFrame(stage_order.index(frame.stage), frame.view,
                                   EncodedImage(data, original.contentType, frame.width, frame.height), frame.label))
        new = self.create_version(
            actor, patient_id=sim.patientId, treatment_id=sim.treatmentId, simulation_type=sim.simulationType,
            name=sim.name, frames=frames, metadata={**sim.metadata, "editedFrom": sim.id},
            source_system=sim.sourceSystem, source_id=sim.sourceId, scan_id=sim.scanId)
        self._modified(actor, new, "frames edited", before=f"v{sim.version}: {sim.frameCount} frames",
                       after=f"v{new.version}: {new.frameCount} frames")
        return new

    def set_archived(self, actor: Actor, simulation_id: str, *, archived: bool) -> None:
        """Archive the whole series (hidden by default), or restore it with its latest version active."""
        actor.require(Permission.IMAGING_CAPTURE)
        sim = self.get(actor, simulation_id)
        self._infra.simulations.set_series_archived(actor.clinic_id, sim.id, archived=archived)
        self._modified(actor, sim, "archive" if archived else "restore")

    def history(self, actor: Actor, simulation_id: str) -> list[HistoryEntry]:
        """Who did what to any version of this series, newest first."""
        sim = self.get(actor, simulation_id)
        versions = {v.id: v.version for v in self._infra.simulations.series_versions(actor.clinic_id, sim.id,
                                                                                   limit=50)}
        events = self._infra.audit.for_simulations(actor.clinic_id, list(versions), actions=HISTORY_ACTIONS)
        names = {u.id: u.name for u in self._infra.users.get_many(
            actor.clinic_id, {e.userId for e in events if e.userId}).values()}
        return [HistoryEntry(e.at, names.get(e.userId or "", "system"), versions.get(e.simulationId or "", 0),
                             _describe(e.action, e.details)) for e in events]

    def _modified(self, actor: Actor, sim: TreatmentSimulation, change: str, **details: Any) -> None:
        self._infra.audit.append(actor.clinic_id, action="simulation.modified", user_id=actor.id,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"change": change, "version": sim.version,
                                          **{k: v for k, v in details.items() if v is not None}})

    # --- renditions (display size + thumbnails) -------------------------------------------------
    def request_renditions(self, clinic_id: str, simulation_id: str) -> RenditionState:
        """Queue the renditions job. With Redis down the version stays PENDING for the reconciler."""
        from core.jobs import make_renditions  # the job module imports this one

        sim = self._infra.simulations.get(clinic_id, simulation_id)
        if sim.renditions is RenditionState.READY:
            return sim.renditions
        try:
            enqueue(self._infra.redis, "renditions", make_renditions, clinic_id, simulation_id,
                    job_id=renditions_job_id(simulation_id))
        except ServiceUnavailableError:
            log.warning("renditions of simulation %s left pending: Redis unreachable", simulation_id)
            return RenditionState.PENDING
        self._infra.simulations.set_renditions(clinic_id, simulation_id, state=RenditionState.QUEUED)
        return RenditionState.QUEUED

    def ensure_renditions(self, actor: Actor, simulation_id: str) -> RenditionState:
        """Re-queue renditions left PENDING (Redis was down when the version was made)."""
        sim = self.get(actor, simulation_id)
        return self.request_renditions(actor.clinic_id, sim.id)

    def rendition_progress(self, actor: Actor, simulation_id: str) -> RenditionProgress:
        sim = self.get(actor, simulation_id)
        done = sum(1 for f in sim.frames if f.displayAssetId and f.thumbAssetId)
        percent = round(100 * done / max(1, len(sim.frames)))
        state = sim.renditions
        if state in (RenditionState.QUEUED, RenditionState.RUNNING):
            # The job may have died with its worker: ask RQ, the one place that knows.
            rq_state = job_state(self._infra.redis, renditions_job_id(sim.id))
            if rq_state is None or rq_state is RenditionState.FAILED:
                state = RenditionState.FAILED if rq_state else RenditionState.PENDING
        return RenditionProgress(state, 100 if state is RenditionState.READY else percent)

    def make_renditions(
        self, clinic_id: str, simulation_id: str, progress: Callable[[int, str], None] | None = None
    ) -> TreatmentSimulation:
        """Make the display rendition and thumbnail of every frame (the job's body; idempotent)."""
        sim = self._infra.simulations.get(clinic_id, simulation_id)
        self._infra.simulations.set_renditions(clinic_id, sim.id, state=RenditionState.RUNNING)
        originals = self._infra.assets.get_many(clinic_id, {f.assetId for f in sim.frames})
        docs: list[dict[str, Any]] = []
        updated: list[Frame] = []
        for n, frame in enumerate(sim.frames, start=1):
            original = originals[frame.assetId]
            rgb = decode_rgb(self._infra.store.get(original.sha256))
            ids: dict[str, str] = {}
            for kind, box in ((AssetKind.FRAME_DISPLAY, DISPLAY_SIZE), (AssetKind.FRAME_THUMB, THUMB_SIZE)):
                image = make_rendition(rgb, box, quality=88 if kind is AssetKind.FRAME_DISPLAY else 80)
                blob = self._infra.store.put(image.data)
                doc = self._infra.assets.new_document(
                    clinic_id, patient_id=sim.patientId, kind=kind, content_type=image.content_type,
                    size=blob.size, sha256=blob.sha256, created_by=sim.createdBy, width=image.width,
                    height=image.height, simulation_id=sim.id,
                    asset_id=_derived_oid(sim.id, frame.assetId, kind.value),
                )
                docs.append(doc)
                ids[kind.value] = str(doc["_id"])
            updated.append(
                Frame(**{**frame.to_doc(), "displayAssetId": ids[AssetKind.FRAME_DISPLAY.value],
                         "thumbAssetId": ids[AssetKind.FRAME_THUMB.value]})
            )
            if progress and (n % 5 == 0 or n == len(sim.frames)):
                progress(round(100 * n / len(sim.frames)), f"frame {n} of {len(sim.frames)}")
        self._infra.assets.upsert_many(clinic_id, docs)
        for _ in range(5):
            try:
                return self._infra.simulations.set_renditions(
                    clinic_id, sim.id, state=RenditionState.READY, frames=updated, expected_revision=sim.revision)
            except ConflictError:
                # Something else changed the version (e.g. an approval); fine while its frames did not.
                sim = self._infra.simulations.get(clinic_id, simulation_id)
                if [f.assetId for f in sim.frames] != [f.assetId for f in updated]:
                    raise
        raise ConflictError("The simulation kept changing while its display frames were saved; retrying.")

    def reconcile_renditions(self, clinic_id: str) -> int:
        """Queue renditions of versions left PENDING (e.g. Redis was down). Returns how many."""
        pending = self._infra.simulations.pending_renditions(clinic_id)
        return sum(1 for sim_id in pending
                   if self.request_renditions(clinic_id, sim_id) is RenditionState.QUEUED)
