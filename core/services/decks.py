"""Case presentations: decks of approved material that presenters download as PPTX, PDF or a pack.

A deck stores references (simulation version, export, gallery image) and records exactly which
versions it shows; pixels are produced when it is built, as an RQ job like every other export.
Only approved versions go into a deck. Coordinators and doctors edit; presenters download.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.domain import (
    AssetKind,
    Deck,
    DeckSlide,
    ExportState,
    ExportType,
    ImagingAsset,
    PatientNames,
    Permission,
    SimulationExport,
    SimulationStatus,
    TreatmentSimulation,
)
from core.errors import ValidationError
from core.imaging import decode_rgb
from core.imaging.overlays import OverlaySpec, apply_overlays
from core.infra import Infrastructure
from core.permissions import Actor
from core.privacy import caption_level, patient_caption
from core.repositories.base import Page
from core.services.approval import patient_ready
from core.services.base import ServiceBase
from core.services.visuals import BeforeRef, ComparisonRequest, OutputSpec, Overlays, VisualService
from core.stages import stage_name

DECK_OUTPUTS = {"pptx": ExportType.PPTX, "pdf": ExportType.PDF, "handout": ExportType.PDF, "pack": ExportType.PACK}
TEMPLATE_LABELS = {
    "new_patient_consult": "New-patient consult",
    "progress_update": "Progress update",
    "treatment_complete": "Treatment complete",
}
DEFAULT_TITLES = {
    "title": "Your treatment plan",
    "comparison": "Before and predicted",
    "stage_grid": "Stage by stage",
    "outcome_card": "Your predicted result",
    "video": "Your treatment, animated",
    "photo": "Your smile today",
    "summary": "Plan summary",
    "disclaimer": "Please note",
}
TALKING_POINTS = {
    "title": "Welcome; explain that we will walk through the plan step by step.",
    "comparison": "Left is today, right is the predicted result. Point out crowding and how it resolves.",
    "stage_grid": "Each aligner moves the teeth a little; these stages show the path.",
    "outcome_card": "The predicted result from all sides. Remind: a simulation, not a guarantee.",
    "video": "Play the animation; pause where the patient has questions.",
    "photo": "The patient's current smile, for reference.",
    "summary": "Number of aligners, expected duration, visits and wear time (22 h a day).",
    "disclaimer": "Simulated outcomes are illustrations, not guarantees; biology varies.",
}


@dataclass(frozen=True)
class DeckWarning:
    text: str
    blocking: bool = False  # the deck cannot be built (an approval was revoked)


def _rendered_after_approval(export: SimulationExport, sim: TreatmentSimulation) -> bool:
    """A file patients may see: made from the approved version, after the approval (so no DRAFT in it)."""
    return patient_ready(approved_when_made=bool(export.settings.get("approved")), made_at=export.createdAt, sim=sim)


#: Renders a fresh, approved video like `export` of `sim` into the path (the export job provides it).
VideoRenderer = Callable[[TreatmentSimulation, SimulationExport, Path], None]
#: Real photos in a deck say what they are; simulated pictures carry the outcome stamp.
PHOTO_STAMP = OverlaySpec(outcome_stamp=True, stamp_text="Clinical photo")
SIMULATED_STAMP = OverlaySpec(outcome_stamp=True)


def _stamped(rgb: np.ndarray, spec: OverlaySpec = SIMULATED_STAMP) -> np.ndarray:
    return apply_overlays(rgb, spec)


def _smile_photo(photos: list[ImagingAsset]) -> ImagingAsset:
    """The photo for "Your smile today": a frontal smile before intraoral views, newest first otherwise."""
    for words in (("smile",), ("frontal", "front", "face")):
        for photo in photos:
            if any(w in (photo.label or "").lower() for w in words):
                return photo
    return photos[0]


class DeckService(ServiceBase):
    def __init__(self, infra: Infrastructure, visuals: VisualService) -> None:
        self._infra = infra
        self._visuals = visuals

    # --- editing -----------------------------------------------------------------------------------
    def templates(self) -> dict[str, str]:
        return dict(TEMPLATE_LABELS)

    def create(self, actor: Actor, patient_id: str, template: str) -> Deck:
        """A deck with the template's default slides, built from the latest approved version."""
        from core.decks.model import TEMPLATES

        actor.require(Permission.IMAGING_CAPTURE)
        if template not in TEMPLATES:
            raise ValidationError(f"Unknown template {template!r}; choose one of {', '.join(TEMPLATE_LABELS)}.")
        patient = self._infra.patients.get(actor.clinic_id, patient_id)
        approved = [
            s for s in self._infra.simulations.list_for_patient(actor.clinic_id, patient.id, approved_only=True)
        ]
        if not approved:
            raise ValidationError(
                "This patient has no approved simulation yet; a doctor must approve a version "
                "before it can go into a presentation."
            )
        latest = sorted(approved, key=lambda s: s.updatedAt)[-1]
        sim = self._infra.simulations.get(actor.clinic_id, latest.id)  # with its frames
        videos = [e for e in self._infra.exports.list_for_simulation(
            actor.clinic_id, sim.id, limit=20,
            post={"exportType": ExportType.VIDEO.value, "state": ExportState.DONE.value})
            if e.settings.get("codec", "h264") == "h264"]  # PowerPoint plays MP4, not WebM
        photos = self._infra.assets.list_for_patient(actor.clinic_id, patient.id, kinds=(AssetKind.PHOTO,))
        slides = []
        for kind in TEMPLATES[template]:
            slide = DeckSlide(kind=kind, title=DEFAULT_TITLES[kind], notes=TALKING_POINTS[kind])
            if kind in ("comparison", "stage_grid", "outcome_card", "video"):
                slide = replace(slide, simulationId=sim.id)
            if kind == "video":
                if not videos:
                    continue  # no finished video yet: the slide can be added once one is rendered
                slide = replace(slide, exportId=videos[0].id)
            if kind == "outcome_card" and len(sim.views) < 2:
                continue
            if kind == "photo":
                if not photos:
                    continue
                slide = replace(slide, assetId=_smile_photo(list(photos)).id)
            slides.append(slide)
        name = f"{TEMPLATE_LABELS[template]} · {datetime.now(UTC):%d %b %Y}"
        used = self._check_slides(actor, patient.id, slides)
        return self._infra.decks.create(
            actor.clinic_id,
            patient_id=patient.id,
            template=template,
            name=name,
            slides=slides,
            used_versions=used,
            created_by=actor.id,
        )

    def save(self, actor: Actor, deck_id: str, *, name: str, slides: Sequence[DeckSlide]) -> Deck:
        actor.require(Permission.IMAGING_CAPTURE)
        deck = self._infra.decks.get(actor.clinic_id, deck_id)
        if not slides:
            raise ValidationError("A deck needs at least one slide.")
        used = self._check_slides(actor, deck.patientId, slides)
        return self._infra.decks.update(
            actor.clinic_id,
            deck.id,
            expected_revision=deck.revision,
            name=name.strip() or deck.name,
            slides=list(slides),
            used_versions=used,
        )

    def _check_slides(self, actor: Actor, patient_id: str, slides: Sequence[DeckSlide]) -> dict[str, int]:
        """Every referenced version must be this patient's and approved; returns {simulation: version}."""
        from core.decks.model import SLIDE_KINDS

        used: dict[str, int] = {}
        for slide in slides:
            if slide.kind not in SLIDE_KINDS:
                raise ValidationError(f"Unknown slide type {slide.kind!r}.")
            if slide.simulationId:
                sim = self._infra.simulations.get(actor.clinic_id, slide.simulationId)
                if sim.patientId != patient_id:
                    raise ValidationError("A slide refers to another patient's simulation.")
                if not sim.isApproved:
                    raise ValidationError(
                        f"“{sim.name}” v{sim.version} is not approved; only versions a doctor "
                        "approved can go into a presentation."
                    )
                used[sim.id] = sim.version
            if slide.kind == "video":
                export = self._infra.exports.get(actor.clinic_id, slide.exportId or "")
                if (export.exportType is not ExportType.VIDEO or export.state is not ExportState.DONE
                        or export.simulationId != slide.simulationId):
                    raise ValidationError("Pick a finished video of the slide's simulation.")
                if export.settings.get("codec", "h264") != "h264" or export.settings.get("wipe_of"):
                    raise ValidationError("Presentations embed MP4 (H.264) stage videos; render the video as "
                                          "“MP4 (H.264)” on the simulation page and pick that one.")
            if slide.kind == "photo":
                asset = self._infra.assets.get(actor.clinic_id, slide.assetId or "")
                if asset.patientId != patient_id:
                    raise ValidationError("A photo slide refers to another patient's image.")
        return used

    def get(self, actor: Actor, deck_id: str) -> Deck:
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.decks.get(actor.clinic_id, deck_id)

    def for_patient(self, actor: Actor, patient_id: str, *, limit: int = 50, cursor: str | None = None) -> Page[Deck]:
        actor.require(Permission.IMAGING_VIEW)
        return self._infra.decks.list_for_patient(actor.clinic_id, patient_id, limit=limit, cursor=cursor)

    def warnings(self, actor: Actor, deck: Deck) -> list[DeckWarning]:
        """What is stale in a deck: revoked approvals (it cannot be built), videos made before approval
        (rebuilt from the approved version), newer approved versions (the deck keeps what it recorded)."""
        out = []
        current = self._infra.simulations.summaries(actor.clinic_id, list(deck.usedVersions))
        for sim_id, version in deck.usedVersions.items():
            sim = current.get(sim_id)
            if sim is None or not sim.isApproved:
                out.append(DeckWarning(f"v{version} is no longer approved: this presentation cannot be shown or "
                                       "built until its slides use an approved version.", blocking=True))
        for number, slide in enumerate(deck.slides, 1):
            sim = current.get(slide.simulationId or "")
            if slide.kind == "video" and sim is not None and sim.isApproved and slide.exportId:
                export = self._infra.exports.get(actor.clinic_id, slide.exportId)
                if not _rendered_after_approval(export, sim):
                    out.append(DeckWarning(f"The video on slide {number} was rendered while v{sim.version} was a "
                                           "draft; building the deck renders it again from the approved version."))
        for sim_id, version in deck.usedVersions.items():
            versions = self._infra.simulations.series_versions(actor.clinic_id, sim_id, limit=20)
            newer = [
                v
                for v in versions
                if v.version > version and v.isApproved and v.status is not SimulationStatus.ARCHIVED
            ]
            if newer:
                out.append(
                    DeckWarning(
                        f"“{newer[0].name}” v{newer[0].version} was approved after this deck's v{version};"
                        " update the slides to show it."
                    )
                )
        return out

    def options(self, actor: Actor, patient_id: str) -> dict[str, list[tuple[str, str]]]:
        """What slides can refer to: approved versions, finished videos, gallery photos (id, label)."""
        actor.require(Permission.IMAGING_VIEW)
        sims = self._infra.simulations.list_for_patient(actor.clinic_id, patient_id, approved_only=True)
        videos = [
            (e.id, f"{e.name or 'Video'} · {e.createdAt:%Y-%m-%d}")
            for s in sims
            for e in self._infra.exports.list_for_simulation(
                actor.clinic_id, s.id, limit=20,
                post={"exportType": ExportType.VIDEO.value, "state": ExportState.DONE.value})
        ]
        photos = [
            (a.id, a.label or "Photo")
            for a in self._infra.assets.list_for_patient(
                actor.clinic_id, patient_id, kinds=(AssetKind.PHOTO, AssetKind.SCAN)
            )
            if a.contentType.startswith("image/")
        ]
        return {"simulations": [(s.id, f"{s.name} · v{s.version}") for s in sims], "videos": videos, "photos": photos}

    def thumbnail(self, actor: Actor, slide: DeckSlide) -> bytes | None:
        """A small picture for the builder's preview: the slide's main image, from renditions."""
        actor.require(Permission.IMAGING_VIEW)
        if slide.kind == "photo" and slide.assetId:
            asset = self._infra.assets.get(actor.clinic_id, slide.assetId)
            return self._infra.store.get(asset.sha256)
        if not slide.simulationId:
            return None
        sim = self._infra.simulations.get(actor.clinic_id, slide.simulationId)
        frames = sim.frames_for_view(sim.views[0])
        frame = frames[0] if slide.kind == "stage_grid" else frames[-1]
        asset_id = frame.thumbAssetId or frame.assetId
        return self._infra.store.get(self._infra.assets.get(actor.clinic_id, asset_id).sha256)

    # --- building (called by the export job) -----------------------------------------------------------
    def build(self, actor: Actor, deck_id: str, output: str, out: Path, progress: Any, *,
              caption: str = "none", render_video: VideoRenderer | None = None) -> dict[str, Any]:
        """Render the deck to `out` ("pptx", "pdf", "handout" or "pack"); returns facts about the file.

        `caption` is how the deck may name the patient (title slide, pack index), capped by the clinic.
        Every picture carries its stamp; a video made before its version was approved is rendered again
        from the approved version with `render_video(sim, stale_export, path)` instead of being embedded.
        """
        from core.decks.model import Branding
        from core.decks.pack import build_pack
        from core.decks.pdf import build_pdf
        from core.decks.pptx import build_pptx

        deck = self._infra.decks.get(actor.clinic_id, deck_id)
        self._check_slides(actor, deck.patientId, deck.slides)  # approvals may have been revoked since
        clinic = self._infra.clinics.get(actor.clinic_id)
        level = caption_level(clinic, caption)
        logo = self._infra.store.get(clinic.logoSha256) if clinic.logoSha256 else None
        color = tuple(int(clinic.primaryColor[i : i + 2], 16) for i in (1, 3, 5))
        branding = Branding(clinic_name=clinic.name, primary_color=color, footer=clinic.footerText, logo_png=logo)
        work = out.parent / f"{out.stem}-parts"
        work.mkdir(parents=True, exist_ok=True)
        try:
            contents = [self._content(actor, deck, slide, work, level=level, render_video=render_video)
                        for slide in deck.slides]
            progress(0.4, "slides prepared")
            if output == "pptx":
                result = build_pptx(contents, branding, out)
            elif output in ("pdf", "handout"):
                result = build_pdf(contents, branding, out, handout=output == "handout")
            else:
                pptx, pdf = work / "deck.pptx", work / "deck.pdf"
                build_pptx(contents, branding, pptx)
                build_pdf(contents, branding, pdf)
                files = [("presentation.pptx", pptx), ("presentation.pdf", pdf)]
                for n, content in enumerate(c for c in contents if c.video_path):
                    files.append((f"video-{n + 1}.mp4", content.video_path))
                who = patient_caption(self._infra.patients.get(actor.clinic_id, deck.patientId), level)
                index = [
                    f"{clinic.name} — case presentation" + (f" for {who}" if who else ""),
                    deck.name,
                    *(f"Simulation v{v}" for v in deck.usedVersions.values()),
                ]
                build_pack(files, index, out)
                return {"files": len(files) + 1}
            return {"slides": result.slides}
        finally:
            for path in sorted(work.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            work.rmdir()

    def _content(self, actor: Actor, deck: Deck, slide: DeckSlide, work: Path, *, level: PatientNames,
                 render_video: VideoRenderer | None) -> Any:
        from core.decks.model import SlideContent

        clinic = self._infra.clinics.get(actor.clinic_id)
        patient = self._infra.patients.get(actor.clinic_id, deck.patientId)
        base = {"kind": slide.kind, "title": slide.title, "caption": slide.caption, "notes": slide.notes}
        if slide.kind == "title":
            who = patient_caption(patient, level)
            return SlideContent(**base, lines=(clinic.name, *([f"Prepared for {who}"] if who else []),
                                               f"{datetime.now(UTC):%d %B %Y}"))
        if slide.kind == "disclaimer":
            # The builders always print the disclaimer itself; these lines explain it.
            return SlideContent(**base, lines=("Every mouth responds to treatment in its own way; your orthodontist "
                                               "will review your progress at each visit.",))
        if slide.kind == "summary":
            return SlideContent(**base, lines=self._summary(actor, deck))
        if slide.kind == "photo":
            asset = self._infra.assets.get(actor.clinic_id, slide.assetId or "")
            photo = decode_rgb(self._infra.store.get(asset.sha256))
            return SlideContent(**base, images=(_stamped(photo, PHOTO_STAMP),))
        sim = self._infra.simulations.get(actor.clinic_id, slide.simulationId or "")
        overlays = Overlays(stage_label=False, date=False, clinic=False)
        if slide.kind == "comparison":
            first, last = self._ends(sim)
            request = ComparisonRequest(
                before=BeforeRef(frame_index=first), predicted=(last,), output=OutputSpec(size="4k"), overlays=overlays
            )
            return SlideContent(
                **base, images=(self._visuals.render_comparison(actor, sim.id, request, preview=False),)
            )
        if slide.kind == "outcome_card":
            request = self._visuals.outcome_card_request(actor, sim.id, OutputSpec(size="4k"), overlays)
            return SlideContent(
                **base, images=(self._visuals.render_comparison(actor, sim.id, request, preview=False),)
            )
        if slide.kind == "stage_grid":
            frames = sim.frames_for_view(sim.views[0])
            picks = sorted({round(i * (len(frames) - 1) / 5) for i in range(6)})
            assets = self._infra.assets.get_many(actor.clinic_id, {frames[i].assetId for i in picks})
            images = tuple(_stamped(decode_rgb(self._infra.store.get(assets[frames[i].assetId].sha256)))
                           for i in picks)
            caption = slide.caption or " · ".join(stage_name(frames[i].stage) for i in picks)
            return SlideContent(**{**base, "caption": caption}, images=images)
        export = self._infra.exports.get(actor.clinic_id, slide.exportId or "")
        video = work / f"video-{export.id}.mp4"
        if _rendered_after_approval(export, sim):
            asset = self._infra.assets.get(actor.clinic_id, export.asset_id or "")
            video.write_bytes(self._infra.store.get(asset.sha256))
        elif render_video is not None:
            render_video(sim, export, video)  # made as a draft: never embed it, render the approved version
        else:
            raise ValidationError(f"The video on “{slide.title}” was made before v{sim.version} was approved; "
                                  "render it again before building the presentation.")
        _, last = self._ends(sim)
        return SlideContent(**base, video_path=video, poster=_stamped(self._pixels(actor, sim.frames[last].assetId)))

    def _pixels(self, actor: Actor, asset_id: str) -> np.ndarray:
        return decode_rgb(self._infra.store.get(self._infra.assets.get(actor.clinic_id, asset_id).sha256))

    @staticmethod
    def _ends(sim: TreatmentSimulation) -> tuple[int, int]:
        frames = sim.frames_for_view(sim.views[0])
        return frames[0].index, frames[-1].index

    def _summary(self, actor: Actor, deck: Deck) -> tuple[str, ...]:
        lines = []
        for sim_id in deck.usedVersions:
            sim = self._infra.simulations.get(actor.clinic_id, sim_id)
            lines.append(f"{sim.name} (v{sim.version}): {sim.stage_count} stages")
            if sim.treatmentId:
                treatment = self._infra.treatments.get(actor.clinic_id, sim.treatmentId)
                if treatment.alignerCount:
                    lines.append(f"Aligners: {treatment.alignerCount}")
                if treatment.estimatedMonths:
                    lines.append(f"Estimated duration: about {treatment.estimatedMonths} months")
                if treatment.notes:
                    lines.append(treatment.notes)
        return tuple(lines[:12]) or ("Your plan will be discussed at the consult.",)
