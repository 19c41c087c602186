"""Importing simulations: upload → analysis job → preview (reorder / trim) → import job → new version.

Uploaded files are staged in the asset store under their SHA-256 (never under the uploaded name;
the name stays in the database only). Analysis proposes candidate frames, decoded through the
allow-listed, size-capped readers of `core.importing`. The import job creates the version
atomically through `SimulationService.create_version`; a failed or cancelled import leaves no
simulation, no version bump and no staged files behind.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bson import ObjectId

from core.blobs import release_blobs
from core.domain import (
    AssetKind,
    ImportCandidate,
    ImportSource,
    ImportState,
    Permission,
    SimulationImport,
    SimulationType,
    StagedFile,
)
from core.errors import NotFoundError, ServiceUnavailableError, StudioError, ValidationError
from core.imaging import THUMB_SIZE, EncodedImage, encode_png, make_rendition
from core.importing.archives import read_zip
from core.importing.images import load_still
from core.importing.limits import DEFAULT_LIMITS, ImportLimits
from core.importing.naming import natural_key, stage_number
from core.importing.sniff import STILL_IMAGE_FORMATS, sniff
from core.infra import Infrastructure
from core.permissions import Actor
from core.queueing import enqueue
from core.repositories.base import Page
from core.services.base import ServiceBase
from core.services.simulations import NewFrame, SimulationService

log = logging.getLogger(__name__)
Progress = Callable[[int, str], None]
LIVE_STATES = (ImportState.QUEUED, ImportState.ANALYZING, ImportState.PREVIEW, ImportState.UNMATCHED,
               ImportState.IMPORTING)
PREVIEW_SIZE = (640, 360)


@dataclass(frozen=True)
class Upload:
    """One uploaded file as the page received it."""

    name: str
    data: bytes


@dataclass(frozen=True)
class _Frame:
    stage: int
    view: str
    rgb: np.ndarray
    label: str


def _no_progress(_percent: int, _step: str) -> None:
    return None


#: Import states the jobs tray follows: running, or waiting for the user who started it.
IN_PROGRESS = (ImportState.QUEUED, ImportState.ANALYZING, ImportState.PREVIEW, ImportState.IMPORTING)

class ImportService(ServiceBase):
    def __init__(self, infra: Infrastructure, simulations: SimulationService,
                 limits: ImportLimits = DEFAULT_LIMITS,
                 on_version: Callable[[str, str], object] | None = None) -> None:
        """`on_version(clinic_id, simulation_id)` runs after an import created a version (e.g. to queue
        the 3D models' preparation)."""
        self._infra = infra
        self._simulations = simulations
        self._limits = limits
        self._on_version = on_version

    # --- requests from pages and the CLI ---------------------------------------------------------
    def start(self, actor: Actor, *, source: ImportSource, uploads: Sequence[Upload], patient_id: str | None,
              treatment_id: str | None = None, simulation_type: SimulationType = SimulationType.ALIGNER,
              name: str = "", series_of: str | None = None, options: dict[str, Any] | None = None,
              queue_analysis: bool = True, integration_id: str | None = None) -> SimulationImport:
        """Stage the uploads and queue their analysis. Cheap checks only; content is checked by the job."""
        actor.require(Permission.IMAGING_CAPTURE)
        if series_of:  # a new version of an existing series: patient, treatment and type come from it
            base = self._simulations.get(actor, series_of)
            patient_id, treatment_id, simulation_type = base.patientId, base.treatmentId, base.simulationType
            name = name or base.name
        if patient_id:
            self._infra.patients.get(actor.clinic_id, patient_id)
        elif source is not ImportSource.ITERO and integration_id is None:
            raise ValidationError("Choose the patient this simulation belongs to.")
        if treatment_id:
            treatment = self._infra.treatments.get(actor.clinic_id, treatment_id)
            if treatment.patientId != patient_id:
                raise ValidationError("That treatment plan belongs to another patient.")
        self._check_uploads(source, uploads)
        staged = [StagedFile(u.name, self._infra.store.put(u.data).sha256, len(u.data)) for u in uploads]
        record = self._infra.imports.create(
            actor.clinic_id, source=source, created_by=actor.id, patient_id=patient_id, treatment_id=treatment_id,
            simulation_type=simulation_type, name=name.strip(), files=staged, options=dict(options or {}),
            series_of=series_of, integration_id=integration_id)
        self._infra.audit.append(actor.clinic_id, action="import.requested", user_id=actor.id,
                                 role=actor.role.value, patient_id=patient_id,
                                 details={"importId": record.id, "source": source.value, "files": len(staged)})
        if queue_analysis:
            self._queue(record, "analyze")
        return record

    def _check_uploads(self, source: ImportSource, uploads: Sequence[Upload]) -> None:
        if not uploads:
            raise ValidationError("Add the files to import.")
        if len(uploads) > self._limits.max_files:
            raise ValidationError(f"{len(uploads):,} files were uploaded; the limit is {self._limits.max_files:,}. "
                                  "Put them in a ZIP or import in parts.")
        total = sum(len(u.data) for u in uploads)
        if total > self._limits.max_total_bytes:
            raise ValidationError(f"The upload is {total / 2**20:,.0f} MB; the limit is "
                                  f"{self._limits.max_total_bytes / 2**20:,.0f} MB.")
        if source is ImportSource.RECORDING and len(uploads) != 1:
            raise ValidationError("Import one screen recording at a time.")

    def get(self, actor: Actor, import_id: str) -> SimulationImport:
        actor.require(Permission.IMAGING_CAPTURE)
        return self._infra.imports.get(actor.clinic_id, import_id)

    def recent(self, actor: Actor, *, patient_id: str | None = None, states: Sequence[ImportState] | None = None,
               limit: int = 20, cursor: str | None = None) -> Page[SimulationImport]:
        """Imports newest first (of a patient, or in these states); a page."""
        actor.require(Permission.IMAGING_CAPTURE)
        return self._infra.imports.list(actor.clinic_id, patient_id=patient_id, states=states, limit=limit,
                                        cursor=cursor)

    def in_progress(self, actor: Actor, *, limit: int = 4) -> list[SimulationImport]:
        """The user's own imports of the last week still running or waiting for them to confirm the
        preview, newest first (the jobs tray); nothing for users who cannot import."""
        if not actor.can(Permission.IMAGING_CAPTURE):
            return []
        return self._infra.imports.list_started_by(actor.clinic_id, actor.id, states=IN_PROGRESS, limit=limit)

    def candidate_image(self, actor: Actor, import_id: str, key: str, *, thumb: bool = True) -> bytes:
        record = self.get(actor, import_id)
        candidate = next((c for c in record.candidates if c.key == key), None)
        if candidate is None:
            raise NotFoundError("That frame is not part of this import.")
        return self._infra.store.get(candidate.thumbSha256 if thumb else candidate.sha256)

    def unassigned(self, actor: Actor) -> list[SimulationImport]:
        """The clinic's imports of the last 30 days that have no patient yet (unmatched exports, or
        failed before one was chosen), newest first: they appear under no patient's recent imports."""
        actor.require(Permission.IMAGING_CAPTURE)
        return self._infra.imports.list_unassigned(actor.clinic_id)

    def confirm(self, actor: Actor, import_id: str, *, order: Sequence[str], name: str | None = None,
                views: Sequence[str] | None = None, patient_id: str | None = None,
                treatment_id: str | None = None, queue: bool = True) -> SimulationImport:
        """Accept the preview: the candidate keys to import, in order (left-out keys are dropped)."""
        record = self.get(actor, import_id)
        keys = {c.key: c for c in record.candidates}
        unknown = [k for k in order if k not in keys]
        if unknown or len(set(order)) != len(order):
            raise ValidationError("The frame list changed; reload the preview and try again.")
        if not order:
            raise ValidationError("Keep at least one frame.")
        patient_id = patient_id or record.patientId
        if not patient_id:
            raise ValidationError("Choose the patient this import belongs to.")
        self._infra.patients.get(actor.clinic_id, patient_id)
        chosen = [ImportCandidate(**{**keys[k].__dict__, "include": True}) for k in order]
        dropped = [ImportCandidate(**{**c.__dict__, "include": False}) for c in record.candidates
                   if c.key not in set(order)]
        options = dict(record.options)
        if views is not None:
            if not views:
                raise ValidationError("Pick at least one view to render.")
            options["views"] = list(views)
        final_name = (name or record.name or "").strip()
        if not final_name and record.source is ImportSource.ITERO and record.metadata.get("sourceId"):
            final_name = f"iTero scan · order {record.metadata['sourceId']}"
        if not final_name:
            raise ValidationError("Give the simulation a name (e.g. 'ClinCheck v2').")
        updated = self._infra.imports.transition(
            actor.clinic_id, import_id, from_states=(ImportState.PREVIEW, ImportState.UNMATCHED),
            to=ImportState.IMPORTING, candidates=[*chosen, *dropped], name=final_name, options=options,
            patientId=patient_id, treatmentId=treatment_id or record.treatmentId, progress=0, step="queued")
        if queue:
            self._queue(updated, "commit")
        return updated

    def mark_unmatched(self, clinic_id: str, import_id: str) -> SimulationImport:
        """A watch-folder import whose patient is unknown waits for a coordinator to assign one."""
        return self._infra.imports.transition(clinic_id, import_id, from_states=(ImportState.PREVIEW,),
                                              to=ImportState.UNMATCHED, step="waiting for a patient")

    def cancel(self, actor: Actor, import_id: str) -> SimulationImport:
        record = self.get(actor, import_id)
        cancelled = self._infra.imports.transition(
            actor.clinic_id, record.id, from_states=(ImportState.QUEUED, ImportState.PREVIEW,
                                                     ImportState.UNMATCHED, ImportState.FAILED),
            to=ImportState.CANCELLED, step="cancelled")
        self._discard(cancelled)
        return cancelled

    def _queue(self, record: SimulationImport, phase: str) -> None:
        from core import jobs

        func = jobs.analyze_import if phase == "analyze" else jobs.commit_import
        try:
            enqueue(self._infra.redis, "imports", func, record.clinicId, record.id,
                    job_id=f"import-{phase}-{record.id}-r{record.revision}")
        except ServiceUnavailableError:
            log.warning("import %s: %s job not queued, Redis unreachable", record.id, phase)
            raise ServiceUnavailableError(
                "The job queue is not reachable right now, so the import could not start. "
                "Try again in a minute; your files are kept.") from None

    # --- the analysis job ----------------------------------------------------------------------
    def analyze(self, clinic_id: str, import_id: str, progress: Progress = _no_progress) -> SimulationImport:
        current = self._infra.imports.get(clinic_id, import_id)
        if current.state not in (ImportState.QUEUED, ImportState.ANALYZING):
            # A retried job whose analysis already ended (it failed and was recorded, or was cancelled):
            # there is nothing left to analyse, and forcing a transition would only raise.
            log.info("import %s: analysis job skipped, the import is %s", import_id, current.state.value)
            return current
        # From ANALYZING too: a retried job (worker died mid-analysis) starts the analysis over.
        record = self._infra.imports.transition(clinic_id, import_id,
                                                from_states=(ImportState.QUEUED, ImportState.ANALYZING),
                                                to=ImportState.ANALYZING, step="reading files")
        try:
            frames, metadata = self._analyze_source(record, progress)
            if not frames:
                raise ValidationError("No frames were found in what was uploaded.")
            candidates = self._stage_candidates(frames, progress)
        except StudioError as exc:
            return self._fail(record, str(exc))
        except Exception as exc:
            log.error("import %s: analysis failed (%s)", record.id, type(exc).__name__)
            self._fail(record, "The files could not be analysed. Check they are exports of a supported system.")
            raise
        preview = self._infra.imports.transition(
            clinic_id, import_id, from_states=(ImportState.ANALYZING,), to=ImportState.PREVIEW,
            candidates=candidates, metadata={**record.metadata, **metadata}, progress=100, step="ready")
        if preview.options.get("autoConfirm"):
            return self._auto_confirm(preview)
        return preview

    def _auto_confirm(self, record: SimulationImport) -> SimulationImport:
        """Imports that asked for no preview (the HTTP API): accept every proposed frame in order."""
        try:
            return self.confirm(self._acting_user(record), record.id, order=[c.key for c in record.candidates])
        except StudioError as exc:
            return self._fail(record, str(exc), from_state=ImportState.PREVIEW)

    def _analyze_source(self, record: SimulationImport, progress: Progress) -> tuple[list[_Frame], dict[str, Any]]:
        if record.source is ImportSource.FILES:
            return self._analyze_images(record, progress), {"sourceFiles": len(record.files)}
        if record.source is ImportSource.RECORDING:
            return self._analyze_recording(record, progress)
        if record.source is ImportSource.ITERO:
            from core.services.itero import analyze_itero

            return analyze_itero(self._infra, record, self._read_files(record), self._limits)
        from core.services.staged3d import analyze_staged

        return analyze_staged(self._read_files(record), record.options, self._limits, progress)

    def _read_files(self, record: SimulationImport) -> list[tuple[str, bytes]]:
        """Staged uploads, with ZIPs expanded safely (caps, zip-slip and bomb checks)."""
        out: list[tuple[str, bytes]] = []
        for staged in record.files:
            data = self._infra.store.get(staged.sha256)
            if sniff(data) == "zip":
                out += [(m.name, m.data) for m in read_zip(data, limits=self._limits)]
            else:
                out.append((staged.name, data))
        if len(out) > self._limits.max_files:
            raise ValidationError(f"The upload holds {len(out):,} files; the limit is {self._limits.max_files:,}.")
        return out

    def _analyze_images(self, record: SimulationImport, progress: Progress) -> list[_Frame]:
        files = sorted(self._read_files(record), key=lambda f: natural_key(f[0]))
        frames = []
        for position, (name, data) in enumerate(files):
            kind = sniff(data)
            if kind not in STILL_IMAGE_FORMATS:
                raise ValidationError(f"{name} is {'not an image' if kind is None else f'a {kind.upper()} file'}; "
                                      "import PNG, JPEG or WebP screenshots (or one ZIP of them).")
            rgb = load_still(data, name=name, limits=self._limits)
            number = stage_number(name)
            frames.append(_Frame(position, "front", rgb, f"Stage {number}" if number is not None else name))
            progress(round(80 * (position + 1) / len(files)), f"read {position + 1} of {len(files)} images")
        return frames

    def _analyze_recording(self, record: SimulationImport, progress: Progress) -> tuple[list[_Frame], dict[str, Any]]:
        from core.importing.recording import CropBox, detect_stage_frames, probe_video

        data = self._infra.store.get(record.files[0].sha256)
        with tempfile.TemporaryDirectory(prefix="import-") as tmp:
            path = Path(tmp) / "recording"  # a generated name: the upload's name never reaches ffmpeg
            path.write_bytes(data)
            info = probe_video(path, limits=self._limits)
            crop = record.options.get("crop")
            box = CropBox(**crop) if crop else None
            stills = detect_stage_frames(path, info=info, crop=box,
                                         progress=lambda f: progress(round(80 * f), "finding stage frames"))
        frames = [_Frame(i, "front", s.frame, f"Stage {i} · {s.time_s:.1f} s") for i, s in enumerate(stills)]
        metadata = {"video": {"codec": info.codec, "width": info.width, "height": info.height, "fps": info.fps,
                              "durationSeconds": info.duration_s},
                    "detectedStages": len(frames), "crop": crop}
        return frames, metadata

    def _stage_candidates(self, frames: Sequence[_Frame], progress: Progress) -> list[ImportCandidate]:
        def stage(frame: _Frame) -> ImportCandidate:
            # Re-encoded from pixels, so no EXIF/XMP/comments of the upload survive.
            full = encode_png(frame.rgb, compression=1)
            thumb = make_rendition(frame.rgb, THUMB_SIZE, quality=80)
            return ImportCandidate(
                key=str(ObjectId()), stage=frame.stage, view=frame.view, sha256=self._infra.store.put(full.data).sha256,
                thumbSha256=self._infra.store.put(thumb.data).sha256, width=full.width, height=full.height,
                label=frame.label)

        # OpenCV encodes outside the GIL: two threads use both cores of a small server.
        with ThreadPoolExecutor(max_workers=2) as pool:
            candidates = []
            for n, candidate in enumerate(pool.map(stage, frames), start=1):
                candidates.append(candidate)
                progress(80 + round(20 * n / len(frames)), "preparing the preview")
        return candidates

    # --- the import job ----------------------------------------------------------------------------
    def commit(self, clinic_id: str, import_id: str, progress: Progress = _no_progress) -> SimulationImport:
        record = self._infra.imports.get(clinic_id, import_id)
        if record.state in (ImportState.DONE, ImportState.FAILED, ImportState.CANCELLED):
            return record  # a retried job after success, or after a failure already recorded: nothing to do
        if record.state is not ImportState.IMPORTING:
            raise ValidationError(f"Import {import_id} is {record.state.value.lower()}, not importing.")
        existing = self._infra.simulations.find_by_import(clinic_id, record.id)
        if existing is not None:  # a retried job whose first run saved the version before dying
            return self._infra.imports.transition(clinic_id, import_id, from_states=(ImportState.IMPORTING,),
                                                  to=ImportState.DONE, simulationId=existing, progress=100,
                                                  step="done")
        extra: dict[str, Any] = {}
        try:
            actor = self._acting_user(record)
            frames, extra = self._final_frames(actor, record, progress)
            progress(90, "saving the new version")
            sim = self._simulations.create_version(
                actor, patient_id=record.patientId or "", treatment_id=record.treatmentId,
                simulation_type=record.simulationType, name=record.name, frames=frames,
                metadata={**{k: v for k, v in record.metadata.items() if k not in _IMPORT_ONLY_METADATA},
                          "importId": record.id, "importSource": record.source.value, **extra.get("metadata", {})},
                source_system=record.metadata.get("sourceSystem", _SOURCE_SYSTEMS[record.source]),
                source_id=record.metadata.get("sourceId") or f"import-{record.id}",
                scan_id=extra.get("scanId"),
                extra_assets=extra.get("assets", ()),
                simulation_id=extra.get("simulationId"),
            )
        except StudioError as exc:
            self._discard_unused(extra.get("assets", ()))
            return self._fail(record, str(exc), from_state=ImportState.IMPORTING)
        except Exception as exc:
            log.error("import %s: import failed (%s)", record.id, type(exc).__name__)
            self._discard_unused(extra.get("assets", ()))
            self._fail(record, "The import failed unexpectedly; nothing was saved. Try again.",
                       from_state=ImportState.IMPORTING)
            raise
        done = self._infra.imports.transition(clinic_id, import_id, from_states=(ImportState.IMPORTING,),
                                              to=ImportState.DONE, simulationId=sim.id, progress=100, step="done")
        self._discard(done)
        if self._on_version is not None:
            self._on_version(clinic_id, sim.id)
        return done

    def _acting_user(self, record: SimulationImport) -> Actor:
        """The requesting user, reloaded: a permission revoked since the request stops the job."""
        user = self._infra.users.get(record.clinicId, record.createdBy)
        actor = Actor(user)
        actor.require(Permission.IMAGING_CAPTURE)
        return actor

    def _final_frames(self, actor: Actor, record: SimulationImport,
                      progress: Progress) -> tuple[list[NewFrame], dict[str, Any]]:
        chosen = [c for c in record.candidates if c.include]
        if record.source is ImportSource.STAGED_3D:
            from core.services.staged3d import render_staged, source_models

            files = self._read_files(record)
            simulation_id = str(ObjectId())  # the kept model files refer to the version they belong to
            return render_staged(files, chosen, record.options, self._limits, progress), {
                "simulationId": simulation_id,
                "assets": source_models(self._infra, actor, record, files, chosen=chosen,
                                        simulation_id=simulation_id)}
        if record.source is ImportSource.ITERO:
            from core.services.itero import commit_itero

            return commit_itero(self._infra, actor, record, chosen, self._read_files(record), limits=self._limits)
        frames = []
        extra: dict[str, Any] = {}
        if record.source is ImportSource.RECORDING:
            extra["assets"] = [self._source_asset(actor, record)]
        for position, candidate in enumerate(chosen):  # stages follow the order the user accepted
            data = self._infra.store.get(candidate.sha256)
            image = EncodedImage(data, "image/png", candidate.width, candidate.height)
            frames.append(NewFrame(position, candidate.view, image, candidate.label))
            progress(round(90 * (position + 1) / len(chosen)), f"frame {position + 1} of {len(chosen)}")
        return frames, extra

    def _source_asset(self, actor: Actor, record: SimulationImport) -> dict[str, Any]:
        """The screen recording kept as the version's source (inserted with the version)."""
        staged = record.files[0]
        kind = sniff(self._infra.store.get(staged.sha256)) or "mp4"
        return self._infra.assets.new_document(
            actor.clinic_id, patient_id=record.patientId or "", kind=AssetKind.SOURCE,
            content_type={"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}.get(kind, "video/mp4"),
            size=staged.size, sha256=staged.sha256, created_by=actor.id, label="Source screen recording",
            tags=("source", "recording"), details={"importId": record.id})

    # --- failure and clean-up ----------------------------------------------------------------------
    def _fail(self, record: SimulationImport, reason: str,
              from_state: ImportState = ImportState.ANALYZING) -> SimulationImport:
        failed = self._infra.imports.transition(record.clinicId, record.id, from_states=(from_state,),
                                                to=ImportState.FAILED, error=reason, step="failed")
        self._infra.audit.append(record.clinicId, action="import.failed", outcome="failed",
                                 user_id=record.createdBy, patient_id=record.patientId,
                                 details={"importId": record.id, "source": record.source.value})
        self._discard(failed)
        return failed

    def _discard_unused(self, docs: Sequence[dict[str, Any]]) -> None:
        """Delete the stored files of asset documents that were never saved (the version failed)."""
        release_blobs(self._infra, (d["sha256"] for d in docs))

    def _discard(self, record: SimulationImport) -> None:
        """Delete staged blobs no record needs any more (the one rule of `core.blobs`: a thumbnail the
        renditions job is storing right now, byte-identical to a candidate's, is young and so kept)."""
        shas = {f.sha256 for f in record.files}
        shas |= {c.sha256 for c in record.candidates} | {c.thumbSha256 for c in record.candidates}
        release_blobs(self._infra, shas)


#: What the analysis records for the coordinator (who the export names, the proposed patients,
#: warnings): kept on the import, not copied onto the version it creates.
_IMPORT_ONLY_METADATA = frozenset({"exportPatient", "manifestPatient", "patientMatch", "matchReason", "warnings"})

_SOURCE_SYSTEMS = {
    ImportSource.FILES: "Screenshots",
    ImportSource.RECORDING: "Screen recording",
    ImportSource.ITERO: "iTero",
    ImportSource.STAGED_3D: "Staged 3D models",
}
