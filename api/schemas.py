"""The API's JSON shapes, with the product spec's field names (`simulationType`, `frameCount`, `isApproved`,
`videoUrl` …). Conversions from domain objects live here; nothing here decides anything."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.domain import Frame, SimulationExport, SimulationImport, TreatmentSimulation


class Problem(BaseModel):
    """An RFC 9457 problem detail (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


class Simulation(BaseModel):
    """One simulation version, without its frames (see `/frames`)."""

    id: str
    patientId: str
    treatmentId: str | None
    name: str
    simulationType: str
    status: str
    version: int
    frameCount: int
    stageCount: int
    views: list[str]
    isApproved: bool
    approvedAt: datetime | None
    sourceSystem: str | None
    createdAt: datetime
    updatedAt: datetime

    @classmethod
    def of(cls, sim: TreatmentSimulation) -> Simulation:
        return cls(id=sim.id, patientId=sim.patientId, treatmentId=sim.treatmentId, name=sim.name,
                   simulationType=sim.simulationType.value, status=sim.status.value, version=sim.version,
                   frameCount=sim.frameCount, stageCount=sim.stage_count, views=list(sim.views),
                   isApproved=sim.isApproved, approvedAt=sim.approvedAt, sourceSystem=sim.sourceSystem,
                   createdAt=sim.createdAt, updatedAt=sim.updatedAt)


class SimulationPage(BaseModel):
    """A page of a patient's simulation versions, newest first. `nextCursor` continues it (null: last page)."""

    kind: Literal["list"] = "list"
    items: list[Simulation]
    nextCursor: str | None


class SimulationDetail(Simulation):
    kind: Literal["simulation"] = "simulation"


class FrameOut(BaseModel):
    index: int
    stage: int
    view: str
    width: int
    height: int
    label: str
    imageUrl: str = Field(description="A download link for this API token only, valid for 10 minutes.")
    thumbUrl: str | None

    @classmethod
    def of(cls, frame: Frame, image_url: str, thumb_url: str | None) -> FrameOut:
        return cls(index=frame.index, stage=frame.stage, view=frame.view, width=frame.width, height=frame.height,
                   label=frame.label, imageUrl=image_url, thumbUrl=thumb_url)


class FramePage(BaseModel):
    simulationId: str
    items: list[FrameOut]
    nextCursor: str | None


class Export(BaseModel):
    """An export (rendered in the background, or made at once for snapshots and comparisons)."""

    id: str
    simulationId: str
    exportType: str
    state: str
    progress: int
    step: str
    error: str | None
    name: str | None
    createdAt: datetime
    imageUrl: str | None = None
    videoUrl: str | None = None
    gifUrl: str | None = None
    pdfUrl: str | None = None
    comparisonUrl: str | None = None

    @classmethod
    def of(cls, export: SimulationExport, links: dict[str, str]) -> Export:
        """`links`: the download link of each URL field the export has (only when it is done)."""
        return cls(id=export.id, simulationId=export.simulationId, exportType=export.exportType.value,
                   state=export.state.value, progress=export.progress, step=export.step, error=export.error,
                   name=export.name, createdAt=export.createdAt, **links)


class ImportOut(BaseModel):
    id: str
    state: str
    progress: int
    step: str
    error: str | None
    patientId: str | None
    simulationId: str | None
    createdAt: datetime

    @classmethod
    def of(cls, record: SimulationImport) -> ImportOut:
        return cls(id=record.id, state=record.state.value, progress=record.progress, step=record.step,
                   error=record.error, patientId=record.patientId, simulationId=record.simulationId,
                   createdAt=record.createdAt)


class Overlays(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stageLabel: bool = True
    date: bool = True
    clinic: bool = True
    patient: Literal["none", "initials", "full"] = "none"


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: str = Field("1080p", max_length=20, description="1080p, 4k, square, story, a4, letter …")
    orientation: Literal["landscape", "portrait"] = "landscape"
    format: Literal["png", "jpeg"] = "png"


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frameIndex: int = Field(0, ge=0, le=100_000)
    output: Output = Field(default_factory=Output)
    overlays: Overlays = Field(default_factory=Overlays)


class ComparisonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beforeAssetId: str | None = Field(None, pattern=r"^[0-9a-f]{24}$",
                                      description="A photo of the patient's gallery as 'before' …")
    beforeFrameIndex: int | None = Field(None, ge=0, le=100_000, description="… or a frame of this version.")
    predicted: list[int] = Field(min_length=1, max_length=12, description="Frame indexes shown as predicted.")
    layout: Literal["side_by_side", "stacked", "split", "blend", "grid"] = "side_by_side"
    output: Output = Field(default_factory=Output)
    overlays: Overlays = Field(default_factory=Overlays)


class VideoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    view: str | None = Field(None, max_length=20)
    firstStage: int | None = Field(None, ge=0, le=10_000)
    lastStage: int | None = Field(None, ge=0, le=10_000)
    preset: str = Field("1080p", max_length=20)
    fps: int = Field(30, ge=1, le=60)
    secondsPerStage: float = Field(0.5, gt=0, le=10)
    codec: Literal["h264", "vp9"] = "h264"
    titleCard: bool = True
    endCard: bool = True


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["zip", "gif", "pdf"] = Field("zip", description="zip: every frame and a manifest; gif; "
                                                                     "pdf: print sheet.")
    view: str | None = Field(None, max_length=20)
    firstStage: int | None = Field(None, ge=0, le=10_000)
    lastStage: int | None = Field(None, ge=0, le=10_000)
