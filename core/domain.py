"""Domain types. Field names follow the seed's data model ("Treatment Simulation Exports") exactly.

Statuses and kinds are `str` enums stored by value; value objects are frozen dataclasses that
validate on construction. Ids are strings (hex ObjectIds) outside the repositories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from core.errors import ValidationError


class CoerciveEnum(StrEnum):
    """A str enum that turns user strings ("aligner", " ALIGNER ") into members at the edge."""

    @classmethod
    def coerce(cls, value: object) -> CoerciveEnum:
        if isinstance(value, cls):
            return value
        text = str(value).strip()
        for member in cls:
            if text.upper() == member.value.upper() or text.upper() == member.name:
                return member
        choices = ", ".join(m.value for m in cls)
        raise ValidationError(f"{value!r} is not a valid {cls.__name__}; choose one of {choices}.")


class SimulationType(CoerciveEnum):
    ALIGNER = "ALIGNER"
    SMILE_DESIGN = "SMILE_DESIGN"
    BRACKET_PREVIEW = "BRACKET_PREVIEW"
    SUPERIMPOSITION = "SUPERIMPOSITION"
    CUSTOM = "CUSTOM"


class SimulationStatus(CoerciveEnum):
    ACTIVE = "ACTIVE"
    SUPERSEDED = "SUPERSEDED"
    ARCHIVED = "ARCHIVED"


class ExportType(CoerciveEnum):
    SNAPSHOT = "SNAPSHOT"
    VIDEO = "VIDEO"
    GIF = "GIF"
    COMPARISON = "COMPARISON"
    PDF = "PDF"
    #: The seed's "export simulation assets" (POST /simulations/:id/export): frames + manifest as a ZIP.
    ASSETS = "ASSETS"
    #: Case presentation outputs (the deck's PDF uses PDF): PowerPoint deck and the consult pack ZIP.
    PPTX = "PPTX"
    PACK = "PACK"


class Role(CoerciveEnum):
    COORDINATOR = "coordinator"
    DOCTOR = "doctor"
    PRESENTER = "presenter"
    ADMIN = "admin"


class Permission(CoerciveEnum):
    IMAGING_VIEW = "imaging:view"
    IMAGING_CAPTURE = "imaging:capture"
    IMAGING_EXPORT = "imaging:export"
    IMAGING_APPROVE = "imaging:approve"
    ADMIN = "admin"


class AssetKind(CoerciveEnum):
    """What an `ImagingAsset` is in the patient's imaging gallery."""

    PHOTO = "PHOTO"  # clinical photo (smile, intraoral)
    SCAN = "SCAN"  # 3D scan shell or scan view
    FRAME = "FRAME"  # original simulation frame
    FRAME_DISPLAY = "FRAME_DISPLAY"  # display rendition of a frame (screen size)
    FRAME_THUMB = "FRAME_THUMB"  # thumbnail rendition of a frame
    EXPORT = "EXPORT"  # produced export file
    SOURCE = "SOURCE"  # imported source file kept for provenance (recording, manifest, staged models)
    MESH = "MESH"  # decimated 3D model of one arch at one stage, made from a SOURCE/SCAN model for the 3D viewer


class RenditionState(CoerciveEnum):
    """Progress of a simulation's display renditions and thumbnails."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    READY = "READY"
    FAILED = "FAILED"


CLINICAL_VIEWS: tuple[str, ...] = ("front", "left", "right", "upper", "lower")
VIEW_LABELS: dict[str, str] = {
    "front": "Frontal",
    "left": "Left buccal",
    "right": "Right buccal",
    "upper": "Upper occlusal",
    "lower": "Lower occlusal",
}


def view_label(view: str) -> str:
    """A view as clinicians name it ("Frontal"), for every place a stored view id would show."""
    return VIEW_LABELS.get(view, view.replace("_", " ").capitalize())


@dataclass(frozen=True)
class FrameRange:
    """Inclusive range of frame indexes."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValidationError(
                f"Frame range {self.start}–{self.end} is invalid; start must be ≥ 0 and ≤ end."
            )


class PatientNames(CoerciveEnum):
    """How much of a patient's name an output may show (a clinic's ceiling, or a caption choice)."""

    NONE = "none"
    INITIALS = "initials"
    FULL = "full"


@dataclass(frozen=True)
class Clinic:
    id: str
    name: str
    slug: str
    patientNames: PatientNames = PatientNames.INITIALS
    createdAt: datetime | None = None
    #: Branding for decks and exports, set by an admin.
    primaryColor: str = "#0f766e"
    footerText: str = ""
    logoSha256: str | None = None

    @property
    def showPatientNames(self) -> bool:
        return self.patientNames is PatientNames.FULL


@dataclass(frozen=True)
class User:
    id: str
    clinicId: str
    email: str
    name: str
    role: Role
    active: bool = True
    issuer: str | None = None
    subject: str | None = None
    createdAt: datetime | None = None


@dataclass(frozen=True)
class Patient:
    id: str
    clinicId: str
    firstName: str
    lastName: str
    dateOfBirth: date
    chartNumber: str
    createdAt: datetime | None = None

    @property
    def display_name(self) -> str:
        return f"{self.lastName}, {self.firstName}"

    @property
    def initials(self) -> str:
        return f"{self.firstName[:1]}{self.lastName[:1]}".upper()


@dataclass(frozen=True)
class Treatment:
    id: str
    clinicId: str
    patientId: str
    name: str
    status: str = "PLANNED"
    alignerCount: int | None = None
    estimatedMonths: int | None = None
    notes: str = ""
    createdAt: datetime | None = None


@dataclass(frozen=True)
class Frame:
    """One frame of a simulation: a stage seen from a view, stored as assets."""

    index: int
    stage: int
    view: str
    assetId: str
    width: int
    height: int
    displayAssetId: str | None = None
    thumbAssetId: str | None = None
    label: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "stage": self.stage,
            "view": self.view,
            "assetId": self.assetId,
            "width": self.width,
            "height": self.height,
            "displayAssetId": self.displayAssetId,
            "thumbAssetId": self.thumbAssetId,
            "label": self.label,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Frame:
        return cls(
            index=int(doc["index"]),
            stage=int(doc["stage"]),
            view=str(doc.get("view", "front")),
            assetId=str(doc["assetId"]),
            width=int(doc["width"]),
            height=int(doc["height"]),
            displayAssetId=str(doc["displayAssetId"]) if doc.get("displayAssetId") else None,
            thumbAssetId=str(doc["thumbAssetId"]) if doc.get("thumbAssetId") else None,
            label=str(doc.get("label", "")),
        )


@dataclass(frozen=True)
class TreatmentSimulation:
    id: str
    clinicId: str
    patientId: str
    name: str
    simulationType: SimulationType
    frames: tuple[Frame, ...]
    frameCount: int
    metadata: dict[str, Any]
    status: SimulationStatus
    version: int
    isApproved: bool
    createdAt: datetime
    updatedAt: datetime
    createdBy: str
    treatmentId: str | None = None
    sourceSystem: str | None = None
    sourceId: str | None = None
    approvedAt: datetime | None = None
    approvedBy: str | None = None
    scanId: str | None = None
    renditions: RenditionState = RenditionState.PENDING
    revision: int = 0
    #: Stored summaries, so lists can show them without loading the frames.
    stageCount: int | None = None
    viewNames: tuple[str, ...] | None = None
    #: When this version started waiting for a doctor's approval (None: not waiting).
    pendingSince: datetime | None = None

    @property
    def views(self) -> tuple[str, ...]:
        if not self.frames and self.viewNames is not None:
            return self.viewNames
        seen: dict[str, None] = {}
        for frame in self.frames:
            seen.setdefault(frame.view, None)
        return tuple(seen)

    @property
    def stage_count(self) -> int:
        if not self.frames and self.stageCount is not None:
            return self.stageCount
        return len({frame.stage for frame in self.frames})

    def frames_for_view(self, view: str) -> tuple[Frame, ...]:
        return tuple(sorted((f for f in self.frames if f.view == view), key=lambda f: f.stage))

    @property
    def series_key(self) -> tuple[str, str, str | None, str]:
        """Versions of one simulation share clinic, patient, treatment and type."""
        return (self.clinicId, self.patientId, self.treatmentId, self.simulationType.value)


class ExportState(CoerciveEnum):
    """Lifecycle of a rendered export. Snapshots and comparisons are made inline and start DONE."""

    PENDING = "PENDING"  # recorded, but Redis was unreachable: the reconciler queues it
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class SimulationExport:
    id: str
    clinicId: str
    simulationId: str
    exportType: ExportType
    settings: dict[str, Any]
    frameRange: FrameRange
    createdAt: datetime
    createdBy: str
    name: str | None = None
    imageUrl: str | None = None
    videoUrl: str | None = None
    gifUrl: str | None = None
    pdfUrl: str | None = None
    beforeImageId: str | None = None
    comparisonUrl: str | None = None
    state: ExportState = ExportState.DONE
    progress: int = 100
    step: str = ""
    error: str | None = None
    attempts: int = 0
    cancelRequested: bool = False
    updatedAt: datetime | None = None

    @property
    def asset_id(self) -> str | None:
        """The produced file's gallery asset (URLs are `asset://<id>`)."""
        for url in (self.videoUrl, self.gifUrl, self.pdfUrl, self.imageUrl, self.comparisonUrl):
            if url:
                return url.removeprefix("asset://")
        return None


@dataclass(frozen=True)
class ImagingAsset:
    """An entry of the patient's imaging gallery; the bytes live in the asset store under `sha256`."""

    id: str
    clinicId: str
    patientId: str
    kind: AssetKind
    contentType: str
    size: int
    sha256: str
    createdAt: datetime
    createdBy: str
    width: int | None = None
    height: int | None = None
    label: str = ""
    simulationId: str | None = None
    exportId: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: Facts recorded with a produced file: simulation version, approval state at export time, ...
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEvent:
    id: str
    clinicId: str
    action: str
    outcome: str
    at: datetime
    userId: str | None = None
    role: str | None = None
    patientId: str | None = None
    simulationId: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Position in the clinic's chain (1, 2, …).
    seq: int = 0


class ImportSource(CoerciveEnum):
    FILES = "files"  # PNG/JPEG/WebP screenshots or one ZIP of them
    RECORDING = "recording"  # MP4/MOV/WebM screen recording
    ITERO = "itero"  # iTero / OrthoCAD export folder or ZIP
    STAGED_3D = "staged-3d"  # one STL/PLY/OBJ per arch per stage


class ImportState(CoerciveEnum):
    QUEUED = "QUEUED"  # uploaded, analysis queued
    ANALYZING = "ANALYZING"
    PREVIEW = "PREVIEW"  # candidates ready for the user to order / trim / accept
    UNMATCHED = "UNMATCHED"  # from a watch folder: no unique patient match, waits for a coordinator
    IMPORTING = "IMPORTING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class StagedFile:
    """An uploaded file kept (under its SHA-256) until the import ends. `name` stays in the database."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ImportCandidate:
    """A frame the analysis proposes; the user may reorder or drop it before importing."""

    key: str
    stage: int
    view: str
    sha256: str  # staged PNG of the frame (metadata-free)
    thumbSha256: str
    width: int
    height: int
    label: str = ""
    include: bool = True


@dataclass(frozen=True)
class SimulationImport:
    id: str
    clinicId: str
    source: ImportSource
    state: ImportState
    createdAt: datetime
    updatedAt: datetime
    createdBy: str
    patientId: str | None = None
    treatmentId: str | None = None
    simulationType: SimulationType = SimulationType.ALIGNER
    name: str = ""
    seriesOf: str | None = None
    files: tuple[StagedFile, ...] = ()
    candidates: tuple[ImportCandidate, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    progress: int = 0
    step: str = ""
    error: str | None = None
    simulationId: str | None = None
    integrationId: str | None = None
    revision: int = 0


class IntegrationKind(CoerciveEnum):
    ITERO = "itero"  # MyiTero / OrthoCAD exports: one folder or ZIP per export
    THREE_SHAPE = "3shape"  # staged models: one folder or ZIP of STL/PLY/OBJ per case
    CLINCHECK = "clincheck"  # ClinCheck captures: screen recordings, or folders of screenshots


@dataclass(frozen=True)
class Integration:
    """A per-clinic drop folder that scanner/planner software exports into."""

    id: str
    clinicId: str
    kind: IntegrationKind
    name: str
    folder: str
    enabled: bool
    importAs: str  # the user (coordinator/doctor) imports are made as
    createdAt: datetime
    lastSyncAt: datetime | None = None
    imported: int = 0
    unmatched: int = 0
    failed: int = 0
    lastError: str | None = None


@dataclass(frozen=True)
class DeckSlide:
    """One slide of a case presentation, by reference: the pixels are made when the deck is built."""

    kind: str
    title: str
    caption: str = ""
    notes: str = ""
    simulationId: str | None = None  # comparison, stage grid, outcome card, video
    exportId: str | None = None  # video: a finished VIDEO export of that simulation
    assetId: str | None = None  # photo: a gallery image


@dataclass(frozen=True)
class Deck:
    id: str
    clinicId: str
    patientId: str
    template: str
    name: str
    slides: tuple[DeckSlide, ...]
    usedVersions: dict[str, int]  # simulation id -> version number, exactly what the deck shows
    createdBy: str
    createdAt: datetime
    updatedAt: datetime
    revision: int = 0


@dataclass(frozen=True)
class MeshStage:
    """One stage of a 3D model set: the MESH asset of each arch present at that stage."""

    stage: int
    arches: dict[str, str]  # "upper" / "lower" -> MESH asset id


@dataclass(frozen=True)
class MeshSet:
    """The browser-ready 3D models of one simulation version (or of its iTero jaw scans).

    Made by a job from the full-resolution source models; `state` follows the rendition states.
    `maxMovement` is the largest vertex movement (mm) of any stage from the first one; `shared`
    says every stage kept the first stage's triangles (movement measured vertex to vertex rather
    than to the nearest surface).
    """

    id: str  # the simulation version's id
    clinicId: str
    patientId: str
    state: RenditionState
    stages: tuple[MeshStage, ...] = ()
    maxMovement: float = 0.0
    shared: bool = True
    triangles: dict[str, int] = field(default_factory=dict)  # per arch, the largest decimated stage
    sourceTriangles: dict[str, int] = field(default_factory=dict)  # per arch, the largest source model
    axes: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # right/anterior/up of the model
    #: per arch, (x0, y0, z0, x1, y1, z1) over every stage in the stored grid units: a camera that does not jump
    bounds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: per arch, a lighter MESH asset of the final stage for the translucent ghost overlay
    ghost: dict[str, str] = field(default_factory=dict)
    progress: int = 0
    step: str = ""
    error: str | None = None
    attempts: int = 0  # preparation jobs queued since the last success or retry by a user
    superimposition: RenditionState | None = None  # a SUPERIMPOSITION version being made from this set
    superimpositionId: str | None = None
    superimpositionError: str | None = None
    updatedAt: datetime | None = None

    @property
    def stage_numbers(self) -> tuple[int, ...]:
        return tuple(s.stage for s in self.stages)


@dataclass(frozen=True)
class ViewerHost:
    """A host an admin allows vendor web viewers to be embedded from (exact host, or "*.domain")."""

    id: str
    clinicId: str
    host: str
    label: str
    addedBy: str
    addedAt: datetime


@dataclass(frozen=True)
class ViewerLink:
    """A vendor web viewer (ClinCheck share link, 3Shape/iTero viewer) attached to a simulation version."""

    simulationId: str
    clinicId: str
    patientId: str
    url: str
    host: str
    setBy: str
    setAt: datetime
