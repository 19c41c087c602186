"""Rendered exports (video, GIF, print PDF, frames ZIP, 3D movement-map images) as reliable background jobs.

The page asks `request`: the spec is validated, a `SimulationExport` is recorded QUEUED (or PENDING
when Redis is down) and a job whose only argument is the export id is queued. Identical requests
(same version, type and settings) attach to the existing export — the unique request key makes that
hold under double clicks in two tabs. The job re-checks permission and clinic scope, renders to a
temp file, and commits the asset and the export record in one transaction.

Fencing: each render attempt claims the export under a fresh lease token. A heartbeat thread renews
the lease every third of its time, whatever the renderer's progress granularity, so a slow but live
render is never taken over; the maintenance job queues an export again only once its lease ran out
(a dead worker). Progress, the heartbeat, failure and the final commit all match on the token, and
the commit moves the export to DONE in the same transaction as it inserts the file record: an
attempt that was superseded adds nothing. A unique index on the asset's `exportId` backs that up.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bson import ObjectId
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError, PyMongoError

from core.blobs import release_blobs
from core.domain import (
    VIEW_LABELS,
    AssetKind,
    ExportState,
    ExportType,
    FrameRange,
    ImagingAsset,
    PatientNames,
    Permission,
    SimulationExport,
    TreatmentSimulation,
)
from core.errors import (
    NotFoundError,
    ServiceUnavailableError,
    StorageFullError,
    StudioError,
    ValidationError,
    is_disk_full,
)
from core.imaging import decode_rgb
from core.imaging.compose import fit
from core.imaging.overlays import CaptionLayer, OverlaySpec, apply_overlays
from core.infra import Infrastructure
from core.permissions import Actor
from core.privacy import caption_level, output_context, patient_caption
from core.queueing import enqueue
from core.repositories.base import Page
from core.services.approval import patient_ready
from core.services.base import ServiceBase
from core.services.visuals import OutputSpec, Overlays, VisualService, export_request_key
from core.stages import stage_name, stage_of

if TYPE_CHECKING:
    from core.services.mesh3d import Mesh3DService

log = logging.getLogger(__name__)
RENDERED_TYPES = (ExportType.VIDEO, ExportType.GIF, ExportType.PDF, ExportType.ASSETS, ExportType.PPTX,
                  ExportType.PACK, ExportType.SNAPSHOT, ExportType.COMPARISON)
#: Snapshots and comparisons of frames are made inline on the Compare page; these two are rendered as
#: jobs only for images of the 3D models (offscreen rendering belongs in a worker).
_MESH_IMAGE_TYPES = (ExportType.SNAPSHOT, ExportType.COMPARISON)
ACTIVE_STATES = (ExportState.PENDING, ExportState.QUEUED, ExportState.RUNNING)
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif", "pdf": "application/pdf",
                 "zip": "application/zip", "png": "image/png", "jpg": "image/jpeg",
                 "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation"}
# The seed's URL fields name images, videos, GIFs and PDFs; other files (frame ZIPs, decks, packs) use imageUrl.
URL_FIELDS = {ExportType.VIDEO: "videoUrl", ExportType.GIF: "gifUrl", ExportType.PDF: "pdfUrl",
              ExportType.ASSETS: "imageUrl", ExportType.PPTX: "imageUrl", ExportType.PACK: "imageUrl",
              ExportType.SNAPSHOT: "imageUrl", ExportType.COMPARISON: "comparisonUrl"}


@dataclass(frozen=True)
class RenderRequest:
    """What to render. Plain values only: it is stored as the export's settings and rebuilt by the job."""

    export_type: ExportType
    view: str | None = None
    first_stage: int | None = None
    last_stage: int | None = None
    preset: str = "1080p"
    fps: int = 30
    seconds_per_stage: float = 0.5
    transition: str = "crossfade"
    hold_final_seconds: float = 1.5
    title_card: bool = True
    end_card: bool = True
    codec: str = "h264"
    wipe_of: str | None = None  # a saved COMPARISON export: render its before/predicted wipe instead
    gif_max_megabytes: float = 5.0
    paper: str = "a4"
    orientation: str = "portrait"
    deck_id: str | None = None  # a case presentation: build this deck instead
    deck_output: str = "pptx"  # pptx | pdf | handout | pack
    deck_revision: int = 0  # identical rebuilds of an unchanged deck attach to the earlier export
    deck_caption: str = "none"  # how the deck names the patient ("none" | "initials" | "full"), below the policy
    # 3D movement maps (SNAPSHOT: `last_stage` from `mesh_view`; COMPARISON: the first stage beside it)
    mesh_view: str | None = None
    image_size: str = "1080p"
    image_orientation: str = "landscape"
    image_format: str = "png"
    overlays: Overlays = field(default_factory=Overlays)

    def __post_init__(self) -> None:
        if self.export_type not in RENDERED_TYPES or (self.export_type in _MESH_IMAGE_TYPES and not self.mesh_view):
            raise ValidationError(f"{self.export_type.value} exports are made on the Compare page, not rendered here.")
        if self.mesh_view:
            if self.export_type not in _MESH_IMAGE_TYPES:
                raise ValidationError("Images of the 3D model are snapshots or comparisons.")
            self.image_output()  # validates size, orientation and format
        if self.export_type in (ExportType.PPTX, ExportType.PACK) and not self.deck_id:
            raise ValidationError("PowerPoint decks and consult packs are built from a case presentation.")

    def image_output(self) -> OutputSpec:
        return OutputSpec(size=self.image_size, orientation=self.image_orientation, fmt=self.image_format)

    def settings(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "overlays"}
        data["export_type"] = self.export_type.value
        data["overlays"] = dict(self.overlays.__dict__)
        return data

    @classmethod
    def from_settings(cls, data: dict[str, Any]) -> RenderRequest:
        values = dict(data)
        values["export_type"] = ExportType.coerce(values["export_type"])
        values["overlays"] = Overlays(**values.get("overlays", {}))
        return cls(**values)


class ExportService(ServiceBase):
    def __init__(self, infra: Infrastructure, visuals: VisualService, meshes: Mesh3DService | None = None, *,
                 events: Callable[[str, str, dict[str, object]], object] | None = None) -> None:
        """`events(clinic_id, event, data)` is told when a render ends (`export.done` / `export.failed`)."""
        self._infra = infra
        self._events = events
        self._visuals = visuals
        self._meshes = meshes
        self._lease = infra.settings.export_lease_seconds

    # --- requests ---------------------------------------------------------------------------------------
    def request(self, actor: Actor, simulation_id: str, request: RenderRequest) -> SimulationExport:
        """Validate, record and queue (or attach to an identical earlier request)."""
        actor.require(Permission.IMAGING_EXPORT)
        sim = self._infra.simulations.get(actor.clinic_id, simulation_id)
        if actor.approved_only and not sim.isApproved:
            raise NotFoundError("Presenters can export approved versions only.")
        frame_range = self._validate(actor, sim, request)
        settings = {**request.settings(), "approved": sim.isApproved,
                    "clinic": output_context(self._infra.clinics.get(actor.clinic_id))}
        key = export_request_key(sim, settings)
        existing = self._infra.exports.find_by_request_key(actor.clinic_id, key)
        if existing is not None:
            return self._reuse(actor, existing)
        try:
            export = self._infra.exports.create(
                actor.clinic_id, simulation_id=sim.id, export_type=request.export_type, settings=settings,
                frame_range=frame_range, created_by=actor.id, name=self._name(request, sim),
                before_image_id=None, request_key=key, state=ExportState.QUEUED)
        except DuplicateKeyError:  # the same request from another tab won the race
            existing = self._infra.exports.find_by_request_key(actor.clinic_id, key)
            if existing is None:
                raise
            return self._reuse(actor, existing)
        self._infra.audit.append(actor.clinic_id, action="export.requested", user_id=actor.id, role=actor.role.value,
                                 patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"type": request.export_type.value, "exportId": export.id,
                                          "version": sim.version})
        return self._enqueue(export)

    def _reuse(self, actor: Actor, existing: SimulationExport) -> SimulationExport:
        if existing.state in (ExportState.FAILED, ExportState.CANCELLED):
            return self.retry(actor, existing.id)
        return existing

    def request_deck(self, actor: Actor, deck_id: str, output: str, *, caption: str = "none") -> SimulationExport:
        """Build a case presentation as an export of the deck's (first) simulation version."""
        from core.services.decks import DECK_OUTPUTS

        actor.require(Permission.IMAGING_EXPORT)
        if output not in DECK_OUTPUTS:
            raise ValidationError(f"Choose one of {', '.join(DECK_OUTPUTS)}.")
        deck = self._infra.decks.get(actor.clinic_id, deck_id)
        if not deck.usedVersions:
            raise ValidationError("This deck shows no simulation; add an approved version first.")
        current = self._infra.simulations.summaries(actor.clinic_id, list(deck.usedVersions))
        for sim_id, version in deck.usedVersions.items():
            if sim_id not in current or not current[sim_id].isApproved:
                raise ValidationError(f"v{version} of this presentation is no longer approved; it can be built again "
                                      "once its slides use an approved version.")
        request = RenderRequest(DECK_OUTPUTS[output], deck_id=deck.id, deck_output=output,
                                deck_revision=deck.revision, deck_caption=PatientNames.coerce(caption).value)
        return self.request(actor, next(iter(deck.usedVersions)), request)

    def _validate(self, actor: Actor, sim: TreatmentSimulation, request: RenderRequest) -> FrameRange:
        """Build the real specs once so a bad request fails here, before anything is recorded."""
        if request.deck_id:
            if not sim.isApproved:
                raise ValidationError("Only approved versions go into a presentation.")
            return FrameRange(0, len(sim.frames) - 1)
        if request.mesh_view:
            return self._mesh_service().image_range(actor, sim, request.mesh_view, request.last_stage)
        frames = self._frames(sim, request)
        if request.export_type is ExportType.VIDEO:
            self._video_spec(request, self._infra.clinics.get(actor.clinic_id).name)
            if request.wipe_of:
                wipe = self._infra.exports.get(actor.clinic_id, request.wipe_of)
                if wipe.exportType is not ExportType.COMPARISON or wipe.simulationId != sim.id:
                    raise ValidationError("A wipe video is made from a saved comparison of this simulation.")
                if wipe.settings.get("mesh_view"):
                    raise ValidationError("A wipe video is made from a comparison of frames (Compare page), not from "
                                          "a movement-map image of the 3D model.")
        elif request.export_type is ExportType.GIF:
            self._gif_spec(request)
        elif request.export_type is ExportType.PDF:
            self._pdf_spec(request)
        return FrameRange(frames[0].index, frames[-1].index)

    def _frames(self, sim: TreatmentSimulation, request: RenderRequest) -> list[Any]:
        view = request.view or sim.views[0]
        if view not in sim.views:
            raise ValidationError(f"This version has no {view} view; choose one of {', '.join(sim.views)}.")
        frames = list(sim.frames_for_view(view))
        first = frames[0].stage if request.first_stage is None else request.first_stage
        last = frames[-1].stage if request.last_stage is None else request.last_stage
        chosen = [f for f in frames if first <= f.stage <= last]
        if not chosen or first > last:
            raise ValidationError(f"Stages {first}–{last} are outside this version's stages "
                                  f"{frames[0].stage}–{frames[-1].stage}.")
        return chosen

    def _mesh_service(self) -> Mesh3DService:
        if self._meshes is None:
            raise ValidationError("3D exports are not available in this process.")
        return self._meshes

    @staticmethod
    def _name(request: RenderRequest, sim: TreatmentSimulation) -> str:
        if request.mesh_view:
            kind = "Movement map" if request.export_type is ExportType.SNAPSHOT else "Movement comparison"
            return f"{kind} · {request.mesh_view} · v{sim.version}"
        if request.deck_id:
            return {"pptx": "Presentation (PowerPoint)", "pdf": "Presentation (PDF)",
                    "handout": "Presentation handout (PDF)", "pack": "Consult pack"}[request.deck_output]
        kind = {ExportType.VIDEO: "Wipe video" if request.wipe_of else "Video", ExportType.GIF: "GIF",
                ExportType.PDF: "Print PDF", ExportType.ASSETS: "Frames ZIP"}[request.export_type]
        return f"{kind} · v{sim.version}"

    def _enqueue(self, export: SimulationExport) -> SimulationExport:
        from core.jobs import render_export

        try:
            enqueue(self._infra.redis, f"export-{export.exportType.value.lower()}", render_export, export.clinicId,
                    export.id, job_id=f"export-{export.id}-{uuid.uuid4().hex[:8]}")  # one RQ job per queueing
        except ServiceUnavailableError:
            log.warning("export %s recorded as pending: Redis unreachable", export.id)
            pending = self._infra.exports.transition(export.clinicId, export.id, from_states=(ExportState.QUEUED,),
                                                     to=ExportState.PENDING, step="waiting for the job queue")
            return pending or export
        return export

    def get(self, actor: Actor, export_id: str) -> SimulationExport:
        actor.require(Permission.IMAGING_VIEW)
        export = self._infra.exports.get(actor.clinic_id, export_id)
        if actor.approved_only and not self._patient_ready(actor, [export]):
            raise NotFoundError("Presenters see exports of approved versions only (made after the approval).")
        return export

    def recent(self, actor: Actor, *, limit: int = 50, cursor: str | None = None) -> Page[SimulationExport]:
        """The clinic's exports, newest first (presenters: files made from versions approved now); a page."""
        actor.require(Permission.IMAGING_VIEW)
        page = self._infra.exports.list_recent(actor.clinic_id, limit=limit, cursor=cursor,
                                               approved_only=actor.approved_only)
        if not actor.approved_only:
            return page
        ready = self._patient_ready(actor, page.items)
        return Page(tuple(e for e in page if e.id in ready), page.cursor)

    def _patient_ready(self, actor: Actor, exports: Sequence[SimulationExport]) -> set[str]:
        """Ids of the exports a patient may see: of a version approved now, made after its approval."""
        sims = self._infra.simulations.summaries(actor.clinic_id, {e.simulationId for e in exports})
        return {e.id for e in exports if patient_ready(approved_when_made=bool(e.settings.get("approved")),
                                                         made_at=e.createdAt, sim=sims.get(e.simulationId))}

    def running_for(self, actor: Actor, simulation_id: str) -> list[str]:
        """Ids of the user's own exports of this version that are still queued or rendering, newest first
        (one bounded page of the version's exports)."""
        busy = (ExportState.PENDING, ExportState.QUEUED, ExportState.RUNNING)
        return [e.id for e in self.for_simulation(actor, simulation_id, limit=50)
                if e.state in busy and e.createdBy == actor.id]

    def for_simulation(self, actor: Actor, simulation_id: str, *, export_type: ExportType | None = None,
                       limit: int = 50) -> Page[SimulationExport]:
        """One version's exports (of one type), newest first."""
        actor.require(Permission.IMAGING_VIEW)
        post: dict[str, Any] = {"exportType": export_type.value} if export_type else {}
        if actor.approved_only:
            post["settings.approved"] = True
        page = self._infra.exports.list_for_simulation(actor.clinic_id, simulation_id, limit=limit, post=post or None)
        if not actor.approved_only:
            return page
        ready = self._patient_ready(actor, page.items)
        return Page(tuple(e for e in page if e.id in ready), page.cursor)

    def files(self, actor: Actor, exports: Sequence[SimulationExport]) -> dict[str, ImagingAsset]:
        """The produced file of each finished export, by export id, in one query."""
        actor.require(Permission.IMAGING_VIEW)
        wanted = {e.id: e.asset_id for e in exports if e.state is ExportState.DONE and e.asset_id}
        assets = self._infra.assets.find_many(actor.clinic_id, set(wanted.values()))
        return {export_id: assets[a] for export_id, a in wanted.items() if a in assets}

    def cancel(self, actor: Actor, export_id: str) -> SimulationExport:
        actor.require(Permission.IMAGING_EXPORT)
        export = self._infra.exports.get(actor.clinic_id, export_id)
        self._infra.exports.request_cancel(actor.clinic_id, export.id)
        waiting = self._infra.exports.transition(actor.clinic_id, export.id,
                                                 from_states=(ExportState.PENDING, ExportState.QUEUED),
                                                 to=ExportState.CANCELLED, step="cancelled")
        return waiting or self._infra.exports.get(actor.clinic_id, export.id)  # running: the job stops itself

    def retry(self, actor: Actor, export_id: str) -> SimulationExport:
        actor.require(Permission.IMAGING_EXPORT)
        export = self._infra.exports.get(actor.clinic_id, export_id)
        again = self._infra.exports.transition(
            actor.clinic_id, export.id, from_states=(ExportState.FAILED, ExportState.CANCELLED), to=ExportState.QUEUED,
            progress=0, step="waiting for a worker", error=None, cancelRequested=False)
        if again is None:
            return export
        return self._enqueue(again)

    # --- maintenance --------------------------------------------------------------------------------------
    def reconcile(self, clinic_id: str) -> int:
        """Queue exports left PENDING (Redis was down) or RUNNING with an expired lease (dead worker)."""
        queued = 0
        for export in self._infra.exports.in_states(clinic_id, (ExportState.PENDING, ExportState.RUNNING)):
            again = self._infra.exports.transition(
                clinic_id, export.id, from_states=(ExportState.PENDING, ExportState.RUNNING), to=ExportState.QUEUED,
                lease_free_only=True, step="queued again")
            if again is not None:
                self._enqueue(again)
                queued += 1
        return queued

    # --- the job --------------------------------------------------------------------------------------
    def run(self, clinic_id: str, export_id: str, *, final_attempt: bool = True) -> SimulationExport:
        export = self._infra.exports.get(clinic_id, export_id)  # scoped: a forged id of another clinic is not found
        if export.state in (ExportState.DONE, ExportState.CANCELLED):
            return export
        lease = self._claim(export)
        if lease is None:
            return self._infra.exports.get(clinic_id, export_id)  # another execution holds it
        claimed = lease.export
        try:
            actor = Actor(self._infra.users.get(clinic_id, export.createdBy))
            actor.require(Permission.IMAGING_EXPORT)  # revoked since the request: refuse in the worker too
            sim = self._infra.simulations.get(clinic_id, export.simulationId)
            request = RenderRequest.from_settings({k: v for k, v in export.settings.items()
                                                   if k not in ("approved", "clinic")})
            return self._render(actor, sim, claimed, request, lease)
        except StudioError as exc:
            return self._finish_failed(claimed, str(exc), lease.token)
        except Exception as exc:
            if is_disk_full(exc):  # e.g. the PDF or ZIP writer: as short a message as the encoder's
                log.warning("export %s: the disk is full (%s)", export_id, exc)
                return self._finish_failed(claimed, str(StorageFullError()), lease.token)
            log.error("export %s: render failed (%s)", export_id, type(exc).__name__)
            if final_attempt:
                self._finish_failed(claimed, "The render failed unexpectedly. Try again; if it keeps failing, "
                                             "contact support with the export id.", lease.token)
            else:
                self._infra.exports.transition(clinic_id, export_id, from_states=(ExportState.RUNNING,),
                                               to=ExportState.QUEUED, step="retrying after an error",
                                               token=lease.token)
            raise
        finally:
            lease.stop()

    def _claim(self, export: SimulationExport) -> _Lease | None:
        """Claim the export for this attempt and start its heartbeat; None when another attempt holds it."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self._lease + 5
        while True:
            claimed = self._infra.exports.claim(export.clinicId, export.id, from_states=ACTIVE_STATES, token=token,
                                                lease_seconds=self._lease)
            if claimed is not None:
                return _Lease(self._infra.exports, claimed, token, self._lease).start()
            if time.monotonic() > deadline:
                return None
            time.sleep(1)  # a killed predecessor's lease runs out within the lease time

    def _render(self, actor: Actor, sim: TreatmentSimulation, export: SimulationExport,
                request: RenderRequest, lease: _Lease) -> SimulationExport:
        from core.rendering import RenderCancelled

        tmp_dir = self._infra.settings.data_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        extension = self._extension(request)
        tmp = tmp_dir / f"export-{export.id}.partial.{extension}"  # generated name, never patient data
        tmp.unlink(missing_ok=True)
        stopped = False
        last_report = 0.0

        def progress(fraction: float, step: str) -> None:
            # Throttled: one database write (which also renews the lease and reads a cancel request)
            # every half second is plenty for the page, and keeps the job close to ffmpeg's own cost.
            nonlocal stopped, last_report
            now = time.monotonic()
            if now - last_report < 0.5 and fraction < 1:
                return
            last_report = now
            if not self._infra.exports.report_progress(export.clinicId, export.id, round(100 * fraction), step,
                                                       self._lease, token=lease.token):
                stopped = True

        try:
            facts = self._produce(actor, sim, request, tmp, progress=progress,
                                  cancelled=lambda: stopped or lease.stopped)
        except RenderCancelled:
            tmp.unlink(missing_ok=True)
            done = self._infra.exports.transition(export.clinicId, export.id, from_states=(ExportState.RUNNING,),
                                                  to=ExportState.CANCELLED, step="cancelled", token=lease.token)
            return done or self._infra.exports.get(export.clinicId, export.id)  # superseded: not ours to end
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._commit(actor, sim, export, request, tmp=tmp, extension=extension, facts=facts, lease=lease)

    @staticmethod
    def _extension(request: RenderRequest) -> str:
        if request.mesh_view:
            return "jpg" if request.image_format == "jpeg" else "png"
        if request.deck_id:
            return {"pptx": "pptx", "pdf": "pdf", "handout": "pdf", "pack": "zip"}[request.deck_output]
        if request.export_type is ExportType.VIDEO:
            return "webm" if request.codec == "vp9" else "mp4"
        return {ExportType.GIF: "gif", ExportType.PDF: "pdf", ExportType.ASSETS: "zip"}[request.export_type]

    def _commit(self, actor: Actor, sim: TreatmentSimulation, export: SimulationExport, request: RenderRequest, *,
                tmp: Path, extension: str, facts: dict[str, Any], lease: _Lease) -> SimulationExport:
        data = tmp.read_bytes()
        blob = self._infra.store.put(data)
        tmp.unlink(missing_ok=True)
        # The heartbeat stops before the transaction (which must not race its own lease renewals); the
        # commit is fenced by the token, not by the lease time, so a late commit is refused, never doubled.
        lease.stop()
        asset_id = ObjectId()
        asset_doc = self._infra.assets.new_document(
            actor.clinic_id, patient_id=sim.patientId, kind=AssetKind.EXPORT, content_type=CONTENT_TYPES[extension],
            size=blob.size, sha256=blob.sha256, created_by=export.createdBy, width=facts.get("width"),
            height=facts.get("height"), label=export.name or request.export_type.value, simulation_id=sim.id,
            tags=(request.export_type.value.lower(),), asset_id=asset_id, export_id=export.id,
            details={"simulationVersion": sim.version, "approved": sim.isApproved, **facts})

        def write(session: ClientSession) -> SimulationExport | None:
            # Compare-and-set on the token first: a superseded attempt stops here, before any insert.
            done = self._infra.exports.transition(
                actor.clinic_id, export.id, from_states=(ExportState.RUNNING,), to=ExportState.DONE, progress=100,
                step="done", error=None, token=lease.token, session=session,
                **{URL_FIELDS[request.export_type]: f"asset://{asset_id}"})
            if done is not None:
                self._infra.assets.insert(actor.clinic_id, asset_doc, session=session)
            return done

        try:
            done = self._infra.transaction(write)
        except DuplicateKeyError:  # another attempt's file record exists (the unique index): keep that one
            log.warning("export %s: a file record already exists; this attempt's file is discarded", export.id)
            done = None
        if done is None:  # cancelled or taken over meanwhile: nothing was committed
            release_blobs(self._infra, [blob.sha256])  # another attempt's identical file may share it
            return self._infra.exports.get(actor.clinic_id, export.id)
        self._infra.audit.append(actor.clinic_id, action="export.completed", user_id=export.createdBy,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"type": request.export_type.value, "exportId": export.id,
                                          "version": sim.version, "sha256": blob.sha256})
        self._tell("export.done", done)
        return done

    def _tell(self, event: str, export: SimulationExport) -> None:
        """Tell subscribers (webhooks); the export is already recorded, so a failure here is only logged."""
        if self._events is None:
            return
        try:
            self._events(export.clinicId, event, {"exportId": export.id, "simulationId": export.simulationId,
                                                  "exportType": export.exportType.value, "state": export.state.value})
        except Exception:  # never undo or retry a finished render because a notification could not be queued
            log.exception("export %s: %s notification not recorded", export.id, event)

    def _finish_failed(self, export: SimulationExport, reason: str, token: str) -> SimulationExport:
        failed = self._infra.exports.transition(export.clinicId, export.id, from_states=(ExportState.RUNNING,),
                                                to=ExportState.FAILED, error=reason, step="failed", token=token)
        if failed is None:  # superseded by another attempt: its outcome stands
            return self._infra.exports.get(export.clinicId, export.id)
        self._infra.audit.append(export.clinicId, action="export.failed", outcome="failed", user_id=export.createdBy,
                                 simulation_id=export.simulationId,
                                 details={"type": export.exportType.value, "exportId": export.id})
        self._tell("export.failed", failed)
        return failed

    # --- producing the file -------------------------------------------------------------------------------
    def _produce(self, actor: Actor, sim: TreatmentSimulation, request: RenderRequest, out: Path, *,
                 progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> dict[str, Any]:
        from core.rendering import RenderCancelled

        if request.deck_id:
            from core.services.decks import DeckService

            def fresh_video(video_sim: TreatmentSimulation, stale: SimulationExport, path: Path) -> None:
                """The deck's video slide, rendered again from the approved version (never the draft file)."""
                settings = {k: v for k, v in stale.settings.items() if k not in ("approved", "clinic")}
                again = RenderRequest.from_settings(settings)
                self._produce(actor, video_sim, again, path, progress=lambda _f, _s: None, cancelled=cancelled)

            return DeckService(self._infra, self._visuals).build(actor, request.deck_id, request.deck_output, out,
                                                                 progress, caption=request.deck_caption,
                                                                 render_video=fresh_video)
        if request.mesh_view:
            return self._mesh_image(actor, sim, request, out, progress)
        frames = self._frames(sim, request)
        stage_label = self._stage_labeller(sim)
        clinic = self._infra.clinics.get(actor.clinic_id)
        assets = self._infra.assets.get_many(actor.clinic_id, {f.assetId for f in frames})  # one query, not 40
        captions = self._visuals.overlay_spec(actor, sim, request.overlays, None)

        def pixels(index: int) -> np.ndarray:
            return decode_rgb(self._infra.store.get(assets[frames[index].assetId].sha256))

        layers: dict[tuple[int, int], CaptionLayer] = {}

        def overlay(rgb: np.ndarray, stage: int) -> np.ndarray:
            """The stage's captions; what repeats is drawn once per size (a GIF tries a few sizes)."""
            size = (rgb.shape[1], rgb.shape[0])
            if size not in layers:
                layers[size] = CaptionLayer(*size, captions)
            return layers[size].apply(rgb, stage_label(frames[stage]) if request.overlays.stage_label else None)

        if request.export_type is ExportType.VIDEO:
            from core.rendering.video import render_video, render_wipe

            spec = self._video_spec(request, clinic.name, draft=not sim.isApproved)
            if request.wipe_of:
                before, after = self._wipe_images(actor, sim, request.wipe_of)
                # The wipe labels its halves "Before" / "Predicted" in the top corners: no stage caption
                # (the before half is not a stage) and no corner plates under those labels.
                halves = replace(captions, stage_label=None, clinic_name=None, logo=None, patient_text=None)
                result = render_wipe(before, after, spec, out, overlay=lambda rgb, _half: apply_overlays(rgb, halves))
            else:
                # Fit and caption each stage on the decode threads, ahead of the encoder (the renderer
                # would do the same per stage, but on the thread that feeds ffmpeg). The captions other
                # than the stage label are the same on every stage: drawn once (CaptionLayer), blended per stage.
                size = spec.output_size
                layer = CaptionLayer(*size, captions)

                def captioned(i: int) -> np.ndarray:
                    rgb = pixels(i)
                    if rgb.shape[:2] != (size[1], size[0]):  # stored at the output size: no copy needed
                        rgb = fit(rgb, size, spec.background)
                    return layer.apply(rgb, stage_label(frames[i]) if request.overlays.stage_label else None)

                ready = _LazySource(len(frames), captioned)
                try:
                    result = render_video(ready, spec, out, progress=progress, cancelled=cancelled)
                finally:
                    ready.close()
            return {"width": result.width, "height": result.height, "durationSeconds": result.duration_s,
                    "frames": result.frames, "codec": result.codec}
        if request.export_type is ExportType.GIF:
            from core.rendering.gif import render_gif

            source = _LazySource(len(frames), pixels, workers=1)
            try:
                result = render_gif(source, self._gif_spec(request), out, overlay=overlay, progress=progress)
            finally:
                source.close()
            return {"width": result.width, "height": result.height, "fps": result.fps,
                    "chosen": list(result.attempts)}
        if request.export_type is ExportType.PDF:
            from core.rendering.pdf import render_pdf

            pages = self._pdf_pages(actor, sim, frames, pixels=pixels, clinic_name=clinic.name,
                                    caption=caption_level(clinic, request.overlays.patient))
            result = render_pdf(pages, self._pdf_spec(request), out, footer=clinic.name, progress=progress)
            return {"pages": result.pages, "minEffectiveDpi": result.min_effective_dpi}
        from core.rendering.archive import frames_zip

        items = []
        for n, frame in enumerate(frames):
            asset = self._infra.assets.get(actor.clinic_id, frame.assetId)
            items.append((f"stage-{frame.stage:03d}-{frame.view}.png", self._infra.store.get(asset.sha256)))
            progress((n + 1) / len(frames), f"frame {n + 1} of {len(frames)}")
            if cancelled():
                raise RenderCancelled("The export was cancelled.")
        manifest = {"simulationId": sim.id, "version": sim.version, "approved": sim.isApproved,
                    "approvedAt": sim.approvedAt.isoformat() if sim.approvedAt else None,
                    "exportedAt": datetime.now(UTC).isoformat(), "stages": [f.stage for f in frames]}
        frames_zip(items, manifest, out)
        return {"files": len(items)}

    def _mesh_image(self, actor: Actor, sim: TreatmentSimulation, request: RenderRequest, out: Path,
                    progress: Callable[[float, str], None]) -> dict[str, Any]:
        """A movement-map image of the 3D models, with the same captions, stamp and DRAFT rules as every export."""
        from core.imaging.compose import title_band_height
        from core.imaging.encode import encode_export
        from core.imaging.overlays import apply_overlays

        output = request.image_output()
        compare = request.export_type is ExportType.COMPARISON
        progress(0.1, "rendering the 3D model")
        rgb, caption = self._mesh_service().movement_image(actor, sim, view=request.mesh_view or "front",
                                                           stage=request.last_stage, compare=compare,
                                                           size=output.pixels)
        progress(0.8, "adding captions")
        spec = self._visuals.overlay_spec(actor, sim, request.overlays, caption)
        reserved = title_band_height(*output.pixels) if compare else 0  # captions stay below the title
        image = encode_export(apply_overlays(rgb, spec, reserved_top=reserved), output.fmt, dpi=output.dpi)
        out.write_bytes(image.data)
        progress(1.0, "done")
        return {"width": image.width, "height": image.height, "dpi": output.dpi, "format": output.fmt,
                "view": request.mesh_view}

    @staticmethod
    def _stage_labeller(sim: TreatmentSimulation) -> Callable[[Any], str]:
        last = max(f.stage for f in sim.frames)
        return lambda frame: stage_of(frame.stage, last)

    def _video_spec(self, request: RenderRequest, clinic_name: str, *, draft: bool = False) -> Any:
        """The video's settings; an unapproved version's title and end cards carry DRAFT like its frames."""
        from core.rendering.cards import TitleCard
        from core.rendering.video import VideoSpec

        today = datetime.now(UTC).strftime("%d %b %Y")
        return VideoSpec(
            preset=request.preset, fps=request.fps, seconds_per_stage=request.seconds_per_stage,
            transition=request.transition, transition_seconds=min(0.3, request.seconds_per_stage),
            hold_final_seconds=request.hold_final_seconds, codec=request.codec,
            title_card=TitleCard((clinic_name, "Treatment simulation", today), draft=draft)
            if request.title_card else None,
            end_card=TitleCard((clinic_name, "Simulated outcome — not a guarantee of results"), draft=draft)
            if request.end_card else None)

    @staticmethod
    def _gif_spec(request: RenderRequest) -> Any:
        from core.rendering.gif import GifSpec

        if not 0.5 <= request.gif_max_megabytes <= 50:
            raise ValidationError("Choose a GIF size target between 0.5 and 50 MB (5 MB suits e-mail).")
        return GifSpec(max_bytes=int(request.gif_max_megabytes * 2**20), seconds_per_stage=request.seconds_per_stage,
                       hold_final_seconds=request.hold_final_seconds)

    @staticmethod
    def _pdf_spec(request: RenderRequest) -> Any:
        from core.rendering.pdf import PdfSpec

        return PdfSpec(paper=request.paper, orientation=request.orientation)

    def _pdf_pages(self, actor: Actor, sim: TreatmentSimulation, frames: list[Any], *,
                   pixels: Callable[[int], np.ndarray], clinic_name: str, caption: PatientNames) -> list[Any]:
        from core.rendering.pdf import PdfPage

        patient = self._infra.patients.get(actor.clinic_id, sim.patientId)
        who = patient_caption(patient, caption)
        approval = (f"Approved {sim.approvedAt:%d %b %Y}" if sim.isApproved and sim.approvedAt
                    else "DRAFT — not approved")
        # Every picture in the document is a simulation render: each carries the outcome stamp, and
        # DRAFT while the version is not approved (the cover's text alone is not enough on a printout).
        stamp = OverlaySpec(outcome_stamp=True, draft_watermark=not sim.isApproved)

        def stamped(rgb: np.ndarray) -> np.ndarray:
            return apply_overlays(rgb, stamp)

        first, last = stamped(pixels(0)), stamped(pixels(len(frames) - 1))
        pages = [PdfPage(kind="cover", title="Treatment simulation",
                         lines=(clinic_name, *([f"Patient: {who}"] if who else []), sim.name,
                                f"Version {sim.version}", approval,
                                "Simulated outcome — not a guarantee of results")),
                 PdfPage(kind="comparison", title="Before and predicted", images=(first, last),
                         captions=(stage_name(frames[0].stage), f"{stage_name(frames[-1].stage)} (predicted)"))]
        picks = sorted({round(i * (len(frames) - 1) / 8) for i in range(9)})
        pages.append(PdfPage(kind="grid", title="Stages", images=tuple(stamped(pixels(i)) for i in picks),
                             captions=tuple(stage_name(frames[i].stage) for i in picks), columns=3))
        if len(sim.views) > 1:
            last_stage = max(f.stage for f in sim.frames)
            finals = [f for f in sim.frames if f.stage == last_stage]
            assets = self._infra.assets.get_many(actor.clinic_id, {f.assetId for f in finals})
            images = tuple(stamped(decode_rgb(self._infra.store.get(assets[f.assetId].sha256))) for f in finals)
            pages.append(PdfPage(kind="grid", title="Predicted outcome", images=images,
                                 captions=tuple(VIEW_LABELS.get(f.view, f.view.title()) for f in finals), columns=3))
        return pages

    def _wipe_images(self, actor: Actor, sim: TreatmentSimulation, comparison_id: str) -> tuple[np.ndarray, np.ndarray]:
        from core.services.visuals import BeforeRef

        comparison = self._infra.exports.get(actor.clinic_id, comparison_id)
        spec = comparison.settings.get("spec", {})
        before_spec = spec.get("before", {})
        before = BeforeRef(asset_id=before_spec.get("asset_id"), frame_index=before_spec.get("frame_index"))
        predicted = tuple(spec.get("predicted") or (sim.frames[-1].index,))
        pixels, _ = self._visuals.before_pixels(actor, sim, before)
        frame = sim.frames[predicted[-1]]
        after = decode_rgb(self._infra.store.get(self._infra.assets.get(actor.clinic_id, frame.assetId).sha256))
        return np.ascontiguousarray(pixels), after


class _Lease:
    """One render attempt's hold on an export: its token, and a heartbeat thread that renews the lease
    every third of the lease time, independent of how often the renderer reports progress.

    `stopped` turns True when the attempt lost the export (taken over after a stall, or finished
    elsewhere) or a cancel was requested; the renderer then stops at its next cancellation check.
    """

    def __init__(self, exports: Any, export: SimulationExport, token: str, seconds: int) -> None:
        self.export = export
        self.token = token
        self.stopped = False
        self._exports = exports
        self._seconds = seconds
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="export-lease", daemon=True)

    def start(self) -> _Lease:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._halt.wait(max(0.5, self._seconds / 3)):
            try:
                held = self._exports.renew_lease(self.export.clinicId, self.export.id, token=self.token,
                                                 lease_seconds=self._seconds)
            except PyMongoError as exc:  # the database is briefly away: beat again; the lease may run out
                log.warning("export %s: lease renewal failed (%s)", self.export.id, type(exc).__name__)
                continue
            if not held and not self._halt.is_set():
                self.stopped = True
                return


class _LazySource:
    """Frames decoded on demand, a few stages ahead on a thread pool.

    The renderers fetch each stage once, in order; decoding the next stages (OpenCV releases the GIL)
    while ffmpeg encodes the current ones keeps the job close to the encoder's own cost.
    """

    AHEAD = 3

    def __init__(self, count: int, load: Callable[[int], np.ndarray], *, workers: int = 2) -> None:
        self.count = count
        self._load = load
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._pending: dict[int, Future[np.ndarray]] = {}

    def get(self, index: int) -> np.ndarray:
        for ahead in range(index, min(self.count, index + self.AHEAD + 1)):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self._load, ahead)
        for old in [i for i in self._pending if i < index]:
            self._pending.pop(old).cancel()
        return self._pending.pop(index).result()

    def close(self) -> None:
        """Stop decoding ahead (after the last stage, or when a render stops early)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
