"""What patients may see: approved material only, and their name only as far as the clinic allows.

- Approval: a deck whose video was rendered while its version was a draft embeds a fresh render of
  the approved version (the embedded MP4 is decoded: no DRAFT frame); a revoked approval makes the
  deck visibly stale and unbuildable, and hides the version's files from presenters.
- Names: every policy (never / initials / full) × every caption choice, across image captions, the
  print PDF cover, the deck title slide and the consult pack's index; never in file names or metadata.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date

import av
import numpy as np
import pytest
from pptx import Presentation
from pypdf import PdfReader

from core.domain import ExportState, ExportType, PatientNames, Role, SimulationType
from core.errors import NotFoundError, ValidationError
from core.services.exports import RenderRequest
from core.services.visuals import Overlays
from tests.conftest import wait_until
from tests.factories import draft_fraction as _draft_fraction
from tests.factories import make_clinic
from tests.factories import teal_frames as _teal_frames

CANARY_FIRST, CANARY_LAST = "Quillona", "Zqxcanarywick"
FULL, INITIALS = f"{CANARY_FIRST} {CANARY_LAST}", "QZ"


@pytest.fixture
def world(infra):
    world = make_clinic(infra)
    patient = infra.patients.create(world.clinic.id, first_name=CANARY_FIRST, last_name=CANARY_LAST,
                                    date_of_birth=date(2011, 3, 4), chart_number="CAN-7")
    return world, patient


def _sim(services, world, patient, *, stages=4):
    return services.simulations.create_version(
        world.actor(), patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="ClinCheck", frames=_teal_frames(stages), queue_renditions=False)


def _finish(services, actor, export_id: str, *, worker: bool):
    if not worker:
        services.exports.run(actor.clinic_id, export_id)
    return wait_until(lambda: (e := services.exports.get(actor, export_id)).state
                      in (ExportState.DONE, ExportState.FAILED) and e, timeout=180, what="the export")


def _bytes(services, export) -> bytes:
    asset = services.infra.assets.get(export.clinicId, export.asset_id)
    return services.infra.store.get(asset.sha256)


def _video_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.worker
def test_a_deck_never_embeds_a_draft_video_and_a_revoked_approval_makes_it_stale(services, infra, world, worker):
    clinic, patient = world
    coordinator, doctor, presenter = clinic.actor(), clinic.actor(Role.DOCTOR), clinic.actor(Role.PRESENTER)
    sim = _sim(services, clinic, patient)
    draft_video = _finish(services, coordinator, services.exports.request(coordinator, sim.id, RenderRequest(
        ExportType.VIDEO, preset="square", seconds_per_stage=0.3, hold_final_seconds=0.3)).id, worker=True)
    assert draft_video.state is ExportState.DONE, draft_video.error
    draft_frames = _video_frames(_bytes(services, draft_video))
    assert min(_draft_fraction(f) for f in draft_frames) > 0.002  # the control: every frame (cards too) says DRAFT

    services.review.approve(doctor, sim.id)
    deck = services.decks.create(coordinator, patient.id, "new_patient_consult")
    video_slide = next(s for s in deck.slides if s.kind == "video")
    assert video_slide.exportId == draft_video.id  # the only video there is was made as a draft…
    assert any("rendered while v1 was a draft" in w.text for w in services.decks.warnings(presenter, deck))
    with pytest.raises(NotFoundError):
        services.exports.get(presenter, draft_video.id)  # …which presenters never see

    pptx = _finish(services, presenter, services.exports.request_deck(presenter, deck.id, "pptx").id, worker=True)
    assert pptx.state is ExportState.DONE, pptx.error
    with zipfile.ZipFile(io.BytesIO(_bytes(services, pptx))) as package:
        movies = [n for n in package.namelist() if n.startswith("ppt/media/") and n.endswith(".mp4")]
        embedded = package.read(movies[0])
    frames = _video_frames(embedded)
    assert frames and max(_draft_fraction(f) for f in frames) < 0.0005  # …so the deck rendered it again
    assert embedded != _bytes(services, draft_video)

    services.review.revoke(doctor, sim.id)
    warnings = services.decks.warnings(presenter, deck)
    assert any(w.blocking and "no longer approved" in w.text for w in warnings)
    for someone in (presenter, coordinator):
        with pytest.raises(ValidationError, match="no longer approved"):
            services.exports.request_deck(someone, deck.id, "pdf")
    assert pptx.id not in {e.id for e in services.exports.recent(presenter)}
    with pytest.raises(NotFoundError, match="approved versions only"):
        services.visuals.download(presenter, pptx.asset_id)
    assert pptx.id in {e.id for e in services.exports.recent(coordinator)}  # staff still see it, as it was


def test_a_webm_video_is_refused_when_the_deck_is_saved_not_when_it_is_built(services, infra, world):
    clinic, patient = world
    sim = _sim(services, clinic, patient, stages=2)
    services.review.approve(clinic.actor(Role.DOCTOR), sim.id)
    webm = services.exports.request(clinic.actor(), sim.id, RenderRequest(
        ExportType.VIDEO, preset="square", codec="vp9", seconds_per_stage=0.3, hold_final_seconds=0.3,
        title_card=False, end_card=False))
    assert _finish(services, clinic.actor(), webm.id, worker=False).state is ExportState.DONE
    deck = services.decks.create(clinic.actor(), patient.id, "new_patient_consult")
    assert "video" not in [s.kind for s in deck.slides]  # a WebM is never offered for a slide
    from core.domain import DeckSlide

    slides = [*deck.slides, DeckSlide(kind="video", title="Your plan", simulationId=sim.id, exportId=webm.id)]
    with pytest.raises(ValidationError, match="MP4"):
        services.decks.save(clinic.actor(), deck.id, name=deck.name, slides=slides)


def _expected(policy: PatientNames, caption: PatientNames) -> str | None:
    level = min(policy, caption, key=list(PatientNames).index)
    return {PatientNames.FULL: FULL, PatientNames.INITIALS: INITIALS}.get(level)


def _pdf_text(data: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).replace("\x00", "")


def _no_canary_outside_pixels(data: bytes, names: list[str]) -> None:
    for name in names:
        assert CANARY_LAST.lower() not in name.lower() and CANARY_FIRST.lower() not in name.lower(), name
    for word in (CANARY_LAST, CANARY_FIRST):
        assert word.encode() not in data and word.encode("utf-16-be") not in data  # no text, no metadata


@pytest.mark.parametrize("policy", list(PatientNames))
def test_the_clinic_policy_caps_every_caption_choice_in_every_output(services, infra, world, tmp_path, policy):
    clinic, patient = world
    admin, coordinator = clinic.actor(Role.ADMIN), clinic.actor()
    services.sessions.update_clinic(admin, patient_names=policy, primary_color="#0f766e", footer_text="")
    sim = _sim(services, clinic, patient, stages=3)
    services.review.approve(clinic.actor(Role.DOCTOR), sim.id)
    deck = services.decks.create(coordinator, patient.id, "new_patient_consult")
    for caption in PatientNames:
        expected = _expected(policy, caption)
        spec = services.visuals.overlay_spec(coordinator, sim, Overlays(patient=caption.value), None)
        assert spec.patient_text == expected, (policy, caption)  # images, videos and GIFs burn in this

        pdf = _finish(services, coordinator, services.exports.request(coordinator, sim.id, RenderRequest(
            ExportType.PDF, overlays=Overlays(patient=caption.value))).id, worker=False)
        data = _bytes(services, pdf)
        text = _pdf_text(data)
        if expected:
            assert f"Patient: {expected}" in text
        assert (FULL in text) == (expected == FULL) and ("Patient:" in text) == bool(expected)
        _no_canary_outside_pixels(data, [services.visuals.download(coordinator, pdf.asset_id)[1]])

        pptx = _finish(services, coordinator, services.exports.request_deck(
            coordinator, deck.id, "pptx", caption=caption.value).id, worker=False)
        presentation = Presentation(io.BytesIO(_bytes(services, pptx)))
        title = " ".join(shape.text_frame.text for shape in presentation.slides[0].shapes if shape.has_text_frame)
        assert (f"Prepared for {expected}" in title) if expected else ("Prepared for" not in title)
        props = presentation.core_properties
        assert CANARY_LAST not in f"{props.title}{props.author}{props.subject}{props.keywords}{props.comments}"

        pack = _finish(services, coordinator, services.exports.request_deck(
            coordinator, deck.id, "pack", caption=caption.value).id, worker=False)
        with zipfile.ZipFile(io.BytesIO(_bytes(services, pack))) as archive:
            members = archive.namelist()
            index = "\n".join(archive.read(n).decode("utf-8", "replace") for n in members
                              if n.endswith((".txt", ".json", ".html", ".md")))
        assert (f"for {expected}" in index) if expected else (CANARY_LAST not in index and INITIALS not in index)
        _no_canary_outside_pixels(b"", members)


def test_a_changed_policy_or_branding_makes_a_new_export_instead_of_returning_the_old_one(services, world):
    clinic, patient = world
    admin, coordinator = clinic.actor(Role.ADMIN), clinic.actor()
    sim = _sim(services, clinic, patient, stages=2)
    request = RenderRequest(ExportType.PDF, overlays=Overlays(patient="full"))
    first = services.exports.request(coordinator, sim.id, request)
    assert services.exports.request(coordinator, sim.id, request).id == first.id  # identical: the same export
    services.sessions.update_clinic(admin, patient_names=PatientNames.FULL, primary_color="#0f766e", footer_text="")
    allowed = services.exports.request(coordinator, sim.id, request)
    assert allowed.id != first.id and allowed.settings["clinic"]["patientNames"] == "full"
    services.sessions.update_clinic(admin, patient_names=PatientNames.FULL, primary_color="#123456", footer_text="")
    assert services.exports.request(coordinator, sim.id, request).id not in (first.id, allowed.id)


def test_pictures_in_a_print_pdf_carry_the_stamp_and_draft(services, world, tmp_path):
    clinic, patient = world
    coordinator = clinic.actor()
    sim = _sim(services, clinic, patient, stages=3)
    pdf = _finish(services, coordinator, services.exports.request(coordinator, sim.id, RenderRequest(
        ExportType.PDF)).id, worker=False)
    from core.rendering.probe import pdf_info

    out = tmp_path / "print.pdf"
    out.write_bytes(_bytes(services, pdf))
    reader = PdfReader(out)
    images = [image.image for page in reader.pages for image in page.images]
    assert images and pdf_info(out)["pages"] >= 3
    for image in images:
        rgb = np.asarray(image.convert("RGB"))
        assert _draft_fraction(rgb) > 0.002  # DRAFT over every picture of an unapproved version
        band = rgb[-max(3, rgb.shape[0] // 20):]
        assert band.mean() < rgb[: rgb.shape[0] // 2].mean()  # the dark stamp band along the bottom


def test_pptx_properties_are_honest(services, world):
    clinic, patient = world
    sim = _sim(services, clinic, patient, stages=2)
    services.review.approve(clinic.actor(Role.DOCTOR), sim.id)
    deck = services.decks.create(clinic.actor(), patient.id, "new_patient_consult")
    pptx = _finish(services, clinic.actor(), services.exports.request_deck(clinic.actor(), deck.id, "pptx").id,
                   worker=False)
    with zipfile.ZipFile(io.BytesIO(_bytes(services, pptx))) as package:
        app = package.read("docProps/app.xml").decode()
    assert "Treatment Simulation Studio" in app and "Microsoft" not in app and "4:3" not in app
    assert f"<Slides>{len(deck.slides)}</Slides>" in app and "16:9" in app
