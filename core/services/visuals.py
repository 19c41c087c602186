"""Snapshots, before/predicted comparisons and outcome cards.

Previews render at display size from display renditions (fast, for every rerun); exports render
once at the chosen output size from the originals and are saved to the patient's record as a
`SimulationExport` plus an `ImagingAsset` (SHA-256, version, approval state, creator). Identical
requests return the existing export. Approval rules are applied here, not in the page: every
patient-facing output carries the "simulated outcome" stamp and every unapproved version the
DRAFT watermark, whatever the caller asks for.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from threading import Lock
from typing import Any

import cv2
import numpy as np
from bson import ObjectId
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError

from core.blobs import release_blobs
from core.domain import (
    CLINICAL_VIEWS,
    VIEW_LABELS,
    AssetKind,
    ExportType,
    Frame,
    FrameRange,
    ImagingAsset,
    PatientNames,
    Permission,
    SimulationExport,
    SimulationType,
    TreatmentSimulation,
)
from core.errors import NotFoundError, ValidationError
from core.imaging import DISPLAY_SIZE, decode_rgb, encode_jpeg, fit_within
from core.imaging.align import Alignment, apply_crop, auto_align
from core.imaging.compose import ComparisonSpec, compose, fit, title_band_height
from core.imaging.encode import FORMATS, encode_export
from core.imaging.guides import draw_guides
from core.imaging.overlays import OverlaySpec, apply_overlays
from core.imaging.sizes import output_size
from core.infra import Infrastructure
from core.permissions import Actor
from core.privacy import caption_level, output_context, patient_caption
from core.repositories.base import Page
from core.services.approval import patient_ready
from core.services.base import ServiceBase
from core.stages import stage_of

PATIENT_TEXT = ("none", "initials", "full")
GALLERY_KINDS = (AssetKind.PHOTO, AssetKind.SCAN, AssetKind.EXPORT)
_DECODED_CACHE_ENTRIES = 48


@dataclass(frozen=True)
class Overlays:
    """Which captions to burn in. The stamp and the DRAFT watermark are decided by the service."""

    stage_label: bool = True
    date: bool = True
    clinic: bool = True
    patient: str = "none"  # "none" | "initials" | "full"
    for_patient: bool = True  # patient-facing: the "simulated outcome" stamp cannot be turned off
    stamp: bool = True  # only honoured when not for_patient

    def __post_init__(self) -> None:
        if self.patient not in PATIENT_TEXT:
            raise ValidationError(f"Patient caption {self.patient!r} is not valid; choose one of "
                                  f"{', '.join(PATIENT_TEXT)}.")


@dataclass(frozen=True)
class OutputSpec:
    size: str = "1080p"
    orientation: str = "landscape"
    fmt: str = "png"

    def __post_init__(self) -> None:
        output_size(self.size, self.orientation)  # validates both
        if self.fmt not in FORMATS:
            raise ValidationError(f"Format {self.fmt!r} is not supported; choose one of {', '.join(FORMATS)}.")

    @property
    def pixels(self) -> tuple[int, int]:
        return output_size(self.size, self.orientation).size

    @property
    def dpi(self) -> int | None:
        return output_size(self.size, self.orientation).dpi


@dataclass(frozen=True)
class SnapshotSpec:
    frame_index: int
    output: OutputSpec = field(default_factory=OutputSpec)
    overlays: Overlays = field(default_factory=Overlays)


@dataclass(frozen=True)
class BeforeRef:
    """The 'before' side: a gallery image of the patient, or a frame of the simulation."""

    asset_id: str | None = None
    frame_index: int | None = None

    def __post_init__(self) -> None:
        if (self.asset_id is None) == (self.frame_index is None):
            raise ValidationError("Choose the 'before' image: a gallery image or a simulation frame.")


@dataclass(frozen=True)
class Guides:
    midline: bool = False
    smile_line: bool = False
    incisal_plane: bool = False

    @property
    def any(self) -> bool:
        return self.midline or self.smile_line or self.incisal_plane


@dataclass(frozen=True)
class ComparisonRequest:
    before: BeforeRef
    predicted: tuple[int, ...]  # frame indexes: one for pair layouts, several for a grid
    layout: ComparisonSpec = field(default_factory=ComparisonSpec)
    alignment: Alignment | None = None
    guides: Guides = field(default_factory=Guides)
    output: OutputSpec = field(default_factory=OutputSpec)
    overlays: Overlays = field(default_factory=Overlays)

    def __post_init__(self) -> None:
        if not self.predicted:
            raise ValidationError("Choose at least one predicted stage.")
        if self.layout.layout != "grid" and len(self.predicted) != 1:
            raise ValidationError(f"The {self.layout.layout.replace('_', ' ')} layout compares two images; "
                                  "choose one predicted stage, or the grid layout for several.")


@dataclass(frozen=True)
class ExportResult:
    export: SimulationExport
    asset: ImagingAsset
    reused: bool  # an identical earlier export was returned instead of rendering again


@dataclass(frozen=True)
class GalleryItem:
    asset: ImagingAsset
    export: SimulationExport | None


class _DecodedCache:
    """Decoded pixels by content hash (immutable content, so no invalidation is ever needed)."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def get(self, sha256: str, load: Any) -> np.ndarray:
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return self._items[sha256]
        value = decode_rgb(load())
        value.setflags(write=False)
        with self._lock:
            self._items[sha256] = value
            while len(self._items) > self._entries:
                self._items.popitem(last=False)
        return value


def _canonical(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: _canonical(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value



def export_request_key(sim: TreatmentSimulation, settings: dict[str, Any], **extra: Any) -> str:
    """The key of an export request: identical requests share one file.

    What the file shows: the version, its name (title cards, covers), its approval (DRAFT marks; approving
    again after a revocation makes new files) and the settings — not bookkeeping such as renditions, which
    also move the record's revision.
    """
    return hashlib.sha256(json.dumps({"simulationId": sim.id, "version": sim.version, "name": sim.name,
                                      "approvedAt": sim.approvedAt, "settings": settings, **extra},
                                     sort_keys=True, default=str).encode()).hexdigest()

class VisualService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra
        self._decoded = _DecodedCache(_DECODED_CACHE_ENTRIES)

    # --- loading pixels ------------------------------------------------------------------------
    def _sim(self, actor: Actor, simulation_id: str, permission: Permission) -> TreatmentSimulation:
        actor.require(permission)
        sim = self._infra.simulations.get(actor.clinic_id, simulation_id)
        if actor.approved_only and not sim.isApproved:
            raise NotFoundError("This simulation version is not approved yet; presenters see approved versions only.")
        return sim

    def _asset_pixels(self, clinic_id: str, asset_id: str) -> np.ndarray:
        asset = self._infra.assets.get(clinic_id, asset_id)
        return self._decoded.get(asset.sha256, lambda: self._infra.store.get(asset.sha256))

    def _frame(self, sim: TreatmentSimulation, index: int) -> Frame:
        if not 0 <= index < len(sim.frames):
            raise ValidationError(f"Frame {index} does not exist; this version has frames 0–{len(sim.frames) - 1}.")
        return sim.frames[index]

    def _frame_pixels(self, sim: TreatmentSimulation, frame: Frame, *, preview: bool) -> np.ndarray:
        asset_id = frame.displayAssetId if preview and frame.displayAssetId else frame.assetId
        return self._asset_pixels(sim.clinicId, asset_id)

    def before_pixels(self, actor: Actor, sim: TreatmentSimulation, before: BeforeRef) -> tuple[np.ndarray, str]:
        """Full-resolution 'before' pixels and the asset id that identifies them."""
        if before.frame_index is not None:
            frame = self._frame(sim, before.frame_index)
            return self._asset_pixels(sim.clinicId, frame.assetId), frame.assetId
        asset = self._infra.assets.get(actor.clinic_id, before.asset_id or "")
        if asset.patientId != sim.patientId:
            raise ValidationError("That image belongs to another patient; choose one of this patient's images.")
        if asset.kind not in (AssetKind.PHOTO, AssetKind.SCAN, AssetKind.FRAME, AssetKind.EXPORT) \
                or not asset.contentType.startswith("image/"):
            raise ValidationError("That gallery item is not an image that can be compared.")
        return self._asset_pixels(actor.clinic_id, asset.id), asset.id

    # --- overlays --------------------------------------------------------------------------------
    def overlay_spec(self, actor: Actor, sim: TreatmentSimulation, overlays: Overlays,
                      stage_text: str | None) -> OverlaySpec:
        clinic = self._infra.clinics.get(actor.clinic_id)
        level = caption_level(clinic, overlays.patient)  # the clinic's policy caps the caption choice
        patient_text = patient_caption(self._infra.patients.get(actor.clinic_id, sim.patientId), level) \
            if level is not PatientNames.NONE else None
        return OverlaySpec(
            stage_label=stage_text if overlays.stage_label else None,
            date_text=datetime.now(UTC).strftime("%d %b %Y") if overlays.date else None,
            clinic_name=clinic.name if overlays.clinic else None,
            patient_text=patient_text,
            outcome_stamp=True if overlays.for_patient else overlays.stamp,
            draft_watermark=not sim.isApproved,  # cannot be turned off
        )

    @staticmethod
    def _stage_text(sim: TreatmentSimulation, frame: Frame) -> str:
        if sim.simulationType is SimulationType.SMILE_DESIGN:
            return frame.label or ("Before" if frame.stage == 0 else "Predicted")
        last = max(f.stage for f in sim.frames)
        return stage_of(frame.stage, last)

    @staticmethod
    def _preview_size(output: OutputSpec) -> tuple[int, int]:
        return fit_within(*output.pixels, DISPLAY_SIZE)

    # --- snapshots ---------------------------------------------------------------------------------
    def render_snapshot(self, actor: Actor, simulation_id: str, spec: SnapshotSpec, *, preview: bool) -> np.ndarray:
        sim = self._sim(actor, simulation_id, Permission.IMAGING_VIEW if preview else Permission.IMAGING_EXPORT)
        frame = self._frame(sim, spec.frame_index)
        size = self._preview_size(spec.output) if preview else spec.output.pixels
        canvas = fit(self._frame_pixels(sim, frame, preview=preview), size)
        return apply_overlays(canvas, self.overlay_spec(actor, sim, spec.overlays, self._stage_text(sim, frame)))

    def export_snapshot(self, actor: Actor, simulation_id: str, spec: SnapshotSpec) -> ExportResult:
        sim = self._sim(actor, simulation_id, Permission.IMAGING_EXPORT)
        frame = self._frame(sim, spec.frame_index)
        return self._save(
            actor, sim, ExportType.SNAPSHOT, spec, FrameRange(spec.frame_index, spec.frame_index),
            render=lambda: self.render_snapshot(actor, sim.id, spec, preview=False), output=spec.output,
            label=f"Snapshot · {self._stage_text(sim, frame)}", url_field="imageUrl",
        )

    # --- comparisons -------------------------------------------------------------------------------
    def render_comparison(self, actor: Actor, simulation_id: str, request: ComparisonRequest, *,
                          preview: bool) -> np.ndarray:
        sim = self._sim(actor, simulation_id, Permission.IMAGING_VIEW if preview else Permission.IMAGING_EXPORT)
        frames = [self._frame(sim, i) for i in request.predicted]
        predicted = [self._frame_pixels(sim, f, preview=preview) for f in frames]
        before, _ = self.before_pixels(actor, sim, request.before)
        reference = self._frame_pixels(sim, frames[-1], preview=False)  # alignment is defined at full size
        if request.alignment is not None:
            before = self._warp(before, request.alignment, reference.shape, predicted[-1].shape)
            predicted = [apply_crop(p, request.alignment) for p in predicted]
        if request.guides.any:
            guides = asdict(request.guides)
            before = draw_guides(before, **guides)
            predicted = [draw_guides(p, **guides) for p in predicted]
        labels = request.layout.labels
        if labels == ("Before", "Predicted") and len(frames) > 1:
            labels = ("Before", *(self._stage_text(sim, f).split(" of ")[0] for f in frames))
        spec = ComparisonSpec(**{**asdict(request.layout), "labels": labels})
        size = self._preview_size(request.output) if preview else request.output.pixels
        canvas = compose([before, *predicted], spec, size)
        reserved = title_band_height(*size) if spec.has_title_band else 0  # captions stay below the title
        return apply_overlays(canvas, self.overlay_spec(actor, sim, request.overlays, None), reserved_top=reserved)

    @staticmethod
    def _warp(before: np.ndarray, alignment: Alignment, reference_shape: tuple[int, ...],
              target_shape: tuple[int, ...]) -> np.ndarray:
        """Warp `before` into the predicted frame as shown at `target_shape` (alignment is stored
        against the full-size predicted frame of `reference_shape`), then crop."""
        scale = target_shape[1] / reference_shape[1]
        matrix = alignment.matrix((before.shape[1], before.shape[0])) * scale
        warped = cv2.warpAffine(before, matrix, (target_shape[1], target_shape[0]), flags=cv2.INTER_AREA
                                if scale < 1 else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        return apply_crop(warped, alignment)

    def export_comparison(self, actor: Actor, simulation_id: str, request: ComparisonRequest) -> ExportResult:
        sim = self._sim(actor, simulation_id, Permission.IMAGING_EXPORT)
        before_id = self.before_pixels(actor, sim, request.before)[1]
        first, last = min(request.predicted), max(request.predicted)
        return self._save(
            actor, sim, ExportType.COMPARISON, request, FrameRange(first, last),
            render=lambda: self.render_comparison(actor, sim.id, request, preview=False), output=request.output,
            label=f"Comparison · {request.layout.layout.replace('_', ' ')}", url_field="comparisonUrl",
            before_image_id=before_id if request.before.asset_id else None,
        )

    # --- alignment -----------------------------------------------------------------------------------
    def auto_alignment(self, actor: Actor, simulation_id: str, before: BeforeRef, predicted_index: int) -> Alignment:
        """Automatic alignment of 'before' onto the predicted frame, with a confidence (0..1)."""
        sim = self._sim(actor, simulation_id, Permission.IMAGING_VIEW)
        pixels, _ = self.before_pixels(actor, sim, before)
        return auto_align(pixels, self._frame_pixels(sim, self._frame(sim, predicted_index), preview=False))

    def remembered_alignment(self, actor: Actor, simulation_id: str, before: BeforeRef,
                             predicted_index: int) -> Alignment | None:
        sim = self._sim(actor, simulation_id, Permission.IMAGING_VIEW)
        _, before_id = self.before_pixels(actor, sim, before)
        stored = self._infra.alignments.get(actor.clinic_id, before_id, self._frame(sim, predicted_index).assetId)
        return Alignment.from_dict(stored) if stored else None

    def remember_alignment(self, actor: Actor, simulation_id: str, before: BeforeRef, predicted_index: int,
                           alignment: Alignment) -> None:
        sim = self._sim(actor, simulation_id, Permission.IMAGING_VIEW)
        _, before_id = self.before_pixels(actor, sim, before)
        self._infra.alignments.save(actor.clinic_id, before_id, self._frame(sim, predicted_index).assetId,
                                    alignment.to_dict(), actor.id)

    # --- outcome card ----------------------------------------------------------------------------------
    def outcome_card_request(self, actor: Actor, simulation_id: str, output: OutputSpec,
                             overlays: Overlays) -> ComparisonRequest:
        """The final stage from every clinical view this version has, as a labelled grid."""
        sim = self._sim(actor, simulation_id, Permission.IMAGING_VIEW)
        last = max(f.stage for f in sim.frames)
        finals = {f.view: f.index for f in sim.frames if f.stage == last}
        views = [v for v in CLINICAL_VIEWS if v in finals] or list(finals)
        if len(views) < 2:
            raise ValidationError("An outcome card needs the final stage in at least two views; "
                                  "this version has only one view.")
        indexes = tuple(finals[v] for v in views)
        layout = ComparisonSpec(layout="grid", labels=tuple(VIEW_LABELS.get(v, v) for v in views),
                                title="Predicted outcome", grid_columns=3 if len(views) > 4 else 2, gap=8)
        # The grid's first cell is 'before' in comparisons; an outcome card is all predicted views.
        return ComparisonRequest(before=BeforeRef(frame_index=indexes[0]), predicted=indexes[1:], layout=layout,
                                 output=output, overlays=overlays)

    def export_outcome_card(self, actor: Actor, simulation_id: str, output: OutputSpec,
                            overlays: Overlays) -> ExportResult:
        request = self.outcome_card_request(actor, simulation_id, output, overlays)
        sim = self._sim(actor, simulation_id, Permission.IMAGING_EXPORT)
        indexes = (request.before.frame_index or 0, *request.predicted)
        return self._save(
            actor, sim, ExportType.SNAPSHOT, {"outcomeCard": request}, FrameRange(min(indexes), max(indexes)),
            render=lambda: self.render_comparison(actor, sim.id, request, preview=False), output=output,
            label="Outcome card · predicted result", url_field="imageUrl",
        )

    # --- saving ----------------------------------------------------------------------------------------
    def _save(self, actor: Actor, sim: TreatmentSimulation, export_type: ExportType, spec: Any,
              frame_range: FrameRange, *, render: Any, output: OutputSpec, label: str, url_field: str,
              before_image_id: str | None = None) -> ExportResult:
        settings = {"spec": _canonical(spec), "approved": sim.isApproved,
                    "clinic": output_context(self._infra.clinics.get(actor.clinic_id))}
        request_key = export_request_key(sim, settings, type=export_type.value)
        existing = self._infra.exports.find_by_request_key(actor.clinic_id, request_key)
        if existing is not None:
            return self._result(actor, existing, reused=True)

        image = encode_export(render(), output.fmt, dpi=output.dpi)
        blob = self._infra.store.put(image.data)
        export_id, asset_id = str(ObjectId()), ObjectId()
        asset_doc = self._infra.assets.new_document(
            actor.clinic_id, patient_id=sim.patientId, kind=AssetKind.EXPORT, content_type=image.content_type,
            size=blob.size, sha256=blob.sha256, created_by=actor.id, width=image.width, height=image.height,
            label=label, simulation_id=sim.id, tags=(export_type.value.lower(),), asset_id=asset_id,
            export_id=export_id, details={"simulationVersion": sim.version, "approved": sim.isApproved,
                                          "dpi": output.dpi, "format": output.fmt},
        )

        def write(session: ClientSession) -> SimulationExport:
            self._infra.assets.insert_many(actor.clinic_id, [asset_doc], session=session)
            return self._infra.exports.create(
                actor.clinic_id, simulation_id=sim.id, export_type=export_type, settings=settings,
                frame_range=frame_range, created_by=actor.id, name=label, before_image_id=before_image_id,
                urls={url_field: f"asset://{asset_id}"}, request_key=request_key, export_id=export_id,
                session=session)

        try:
            export = self._infra.transaction(write)
        except DuplicateKeyError:  # an identical request won the race (double click, two tabs)
            release_blobs(self._infra, [blob.sha256])
            existing = self._infra.exports.find_by_request_key(actor.clinic_id, request_key)
            if existing is None:
                raise
            return self._result(actor, existing, reused=True)
        self._infra.audit.append(actor.clinic_id, action="export.completed", user_id=actor.id,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"type": export_type.value, "version": sim.version, "sha256": blob.sha256})
        return self._result(actor, export, reused=False)

    def _result(self, actor: Actor, export: SimulationExport, *, reused: bool) -> ExportResult:
        url = export.imageUrl or export.comparisonUrl or ""
        asset = self._infra.assets.get(actor.clinic_id, url.removeprefix("asset://"))
        return ExportResult(export, asset, reused)

    # --- gallery -----------------------------------------------------------------------------------------
    def gallery(self, actor: Actor, patient_id: str, kinds: tuple[AssetKind, ...] = GALLERY_KINDS, *,
                limit: int = 24, cursor: str | None = None) -> Page[GalleryItem]:
        """The patient's photos, scans and exports, newest first (presenters: approved exports only); a page."""
        actor.require(Permission.IMAGING_VIEW)
        patient = self._infra.patients.get(actor.clinic_id, patient_id)
        assets = self._infra.assets.list_for_patient(actor.clinic_id, patient.id, kinds=kinds, limit=limit,
                                                     cursor=cursor)
        export_ids = [a.exportId for a in assets if a.exportId]
        exports = {e.id: e for e in self._infra.exports.list_by_ids(actor.clinic_id, export_ids)}
        items = [GalleryItem(a, exports.get(a.exportId) if a.exportId else None) for a in assets]
        if actor.approved_only:
            ready = self._patient_ready([i.asset for i in items if i.asset.kind is AssetKind.EXPORT])
            items = [i for i in items if i.asset.kind is not AssetKind.EXPORT or i.asset.id in ready]
        return Page(tuple(items), assets.cursor)

    def _patient_ready(self, exports: Sequence[ImagingAsset]) -> set[str]:
        """Ids of the produced files a patient may see (approved version, made after the approval)."""
        sims = self._infra.simulations.summaries(exports[0].clinicId, {a.simulationId for a in exports
                                                                       if a.simulationId}) if exports else {}
        return {a.id for a in exports if patient_ready(approved_when_made=bool(a.details.get("approved")),
                                                         made_at=a.createdAt, sim=sims.get(a.simulationId or ""))}

    def before_candidates(self, actor: Actor, patient_id: str) -> list[ImagingAsset]:
        """The patient's pictures a comparison can start from ("before"): clinical photos and scanner
        views (iTero penta views are photos), newest first."""
        actor.require(Permission.IMAGING_VIEW)
        patient = self._infra.patients.get(actor.clinic_id, patient_id)
        return before_images(list(self._infra.assets.list_for_patient(
            actor.clinic_id, patient.id, kinds=(AssetKind.PHOTO, AssetKind.SCAN), limit=200)))

    def thumbnail(self, actor: Actor, asset_id: str, box: tuple[int, int] = (480, 360)) -> np.ndarray:
        """A small picture of an image asset (PNG/JPEG); other files have no thumbnail."""
        return self.thumbnails(actor, [asset_id], box)[asset_id]

    def thumbnails(self, actor: Actor, asset_ids: Sequence[str], box: tuple[int, int] = (480, 360)
                   ) -> dict[str, np.ndarray]:
        """Small pictures of image assets (one database query for all of them), by asset id."""
        actor.require(Permission.IMAGING_VIEW)
        assets = self._infra.assets.get_many(actor.clinic_id, asset_ids)
        out = {}
        for asset_id, asset in assets.items():
            key = f"thumb:{box[0]}x{box[1]}:{asset.sha256}"
            pixels = self._decoded.get(key, lambda a=asset: self._thumb_png(a.sha256, box))
            out[asset_id] = pixels
        return out

    def _thumb_png(self, sha256: str, box: tuple[int, int]) -> bytes:
        pixels = decode_rgb(self._infra.store.get(sha256))
        return encode_jpeg(fit(pixels, fit_within(pixels.shape[1], pixels.shape[0], box)), quality=85).data

    def download(self, actor: Actor, asset_id: str) -> tuple[bytes, str, str]:
        """(bytes, file name, content type) of a gallery file; needs imaging:export; audited.

        The file name carries no patient data: kind, short id and extension only.
        """
        actor.require(Permission.IMAGING_EXPORT)
        asset = self._infra.assets.get(actor.clinic_id, asset_id)
        if actor.approved_only and asset.kind is AssetKind.EXPORT and not self._patient_ready([asset]):
            raise NotFoundError("Presenters can download files made from approved versions only (this one was made "
                                "before the approval, or the approval was revoked).")
        data = self._infra.store.get(asset.sha256)
        self._infra.audit.append(actor.clinic_id, action="download", user_id=actor.id, role=actor.role.value,
                                 patient_id=asset.patientId, simulation_id=asset.simulationId,
                                 details={"assetId": asset.id, "sha256": asset.sha256})
        return data, download_name(asset), asset.contentType


_PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def asset_facts(asset: ImagingAsset) -> list[str]:
    """What a gallery file is, in a few words, by kind of file: pixel size of pictures, length of
    videos, pages or slides of documents, triangles of meshes, the order of an iTero manifest."""
    details = asset.details
    facts: list[str] = []
    if asset.width and asset.height:
        facts.append(f"{asset.width} × {asset.height}")
    if asset.contentType.startswith("video/") and details.get("durationSeconds"):
        facts.append(f"{float(details['durationSeconds']):.1f} s")
    elif asset.contentType == "image/gif" and details.get("fps"):
        facts.append(f"{details['fps']} fps")
    elif asset.contentType in ("model/stl", "model/ply"):
        triangles = details.get("triangles")
        facts.append(f"{triangles:,} triangles" if isinstance(triangles, int) else "3D scan")
        if details.get("jaw"):
            facts.append(f"{details['jaw']} jaw")
    elif asset.contentType == "application/xml":
        order = details.get("orderId")
        facts.append(f"{details.get('sourceSystem') or 'scan'} manifest" + (f" · order {order}" if order else ""))
    elif asset.contentType == _PPTX or details.get("slides"):
        slides = details.get("slides")
        facts.append(f"{slides} slide{'' if slides == 1 else 's'}" if isinstance(slides, int) else "slide deck")
    elif asset.contentType == "application/pdf" and details.get("pages"):
        facts.append(f"{details['pages']} page{'' if details['pages'] == 1 else 's'}")
    elif asset.contentType == "application/zip" and details.get("files"):
        facts.append(f"{details['files']} files")
    if not facts:
        facts.append(_size_text(asset.size))
    if details.get("view"):
        facts.append(VIEW_LABELS.get(details["view"], details["view"]).lower() + " view")
    return facts


def _size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{max(1, round(size / 1e3))} kB"


def before_images(assets: list[ImagingAsset]) -> list[ImagingAsset]:
    """The gallery pictures a comparison may start from: photos (scanner views among them) and the
    picture-like scans of older imports, never meshes, manifests or documents."""
    return [a for a in assets if a.kind in (AssetKind.PHOTO, AssetKind.SCAN) and a.contentType in _PICTURES]


_PICTURES = ("image/png", "image/jpeg", "image/webp")


#: What a produced file is called in its download name, by export type (the asset's tag).
_DOWNLOAD_WORDS = {"video": "simulation-video", "gif": "simulation-animation", "pdf": "simulation-print",
                   "comparison": "comparison", "snapshot": "snapshot", "assets": "simulation-frames",
                   "pptx": "presentation", "pack": "consult-pack"}


def download_name(asset: ImagingAsset) -> str:
    """A meaningful file name without patient data: what it is, the version, the date, a short id.

    e.g. `simulation-video-v2-2026-12-02-5441e8.mp4`. Names typed by users (simulation names, titles)
    are never used: they may carry a patient's name.
    """
    extension = {"image/png": "png", "image/jpeg": "jpg", "video/mp4": "mp4", "video/webm": "webm",
                 "image/gif": "gif", "application/pdf": "pdf", "application/zip": "zip", "model/stl": "stl",
                 "model/ply": "ply", "application/xml": "xml", _PPTX: "pptx",
                 }.get(asset.contentType, "bin")
    word = next((_DOWNLOAD_WORDS[t] for t in asset.tags if t in _DOWNLOAD_WORDS), asset.kind.value.lower())
    version = asset.details.get("simulationVersion") or asset.details.get("version")
    parts = [word, *([f"v{int(version)}"] if isinstance(version, int) else []), f"{asset.createdAt:%Y-%m-%d}",
             asset.id[-6:]]
    return "-".join(parts) + f".{extension}"
