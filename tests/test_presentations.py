"""Case presentations built from approved versions, through real export jobs."""

from __future__ import annotations

import zipfile

import pytest
from pptx import Presentation

from core.domain import AssetKind, ExportState, ExportType, Role, SimulationType
from core.errors import PermissionDeniedError, ValidationError
from core.rendering.probe import pdf_info
from core.services.exports import RenderRequest
from core.services.simulations import NewFrame
from tests.conftest import wait_until
from tests.factories import make_clinic, new_frames

pytestmark = pytest.mark.worker


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def _approved(services, world, *, views=("front", "upper")):
    frames = [NewFrame(f.stage, view, f.image, f.label) for view in views for f in new_frames(5, size=(320, 180))]
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="ClinCheck", frames=frames, queue_renditions=False)
    services.review.approve(world.actor(Role.DOCTOR), sim.id)
    return services.simulations.get(world.actor(), sim.id)


def _done(services, actor, export_id):
    return wait_until(lambda: (e := services.exports.get(actor, export_id)).state
                      in (ExportState.DONE, ExportState.FAILED) and e, timeout=180, what="deck build")


def _file(services, export, tmp_path, name):
    path = tmp_path / name
    asset = services.infra.assets.get(export.clinicId, export.asset_id)
    path.write_bytes(services.infra.store.get(asset.sha256))
    return path


def test_a_consult_deck_builds_as_pptx_pdf_and_pack_with_the_video_embedded(services, world, worker, tmp_path):
    sim = _approved(services, world)
    video = services.exports.request(world.actor(), sim.id, RenderRequest(
        ExportType.VIDEO, preset="720p", seconds_per_stage=0.3, hold_final_seconds=0.3, title_card=False,
        end_card=False))
    assert _done(services, world.actor(), video.id).state is ExportState.DONE
    deck = services.decks.create(world.actor(), world.patient.id, "new_patient_consult")
    kinds = [s.kind for s in deck.slides]
    assert kinds[0] == "title" and kinds[-1] == "disclaimer" and "video" in kinds and "outcome_card" in kinds
    assert deck.usedVersions == {sim.id: 1}

    pptx = _done(services, world.actor(), services.exports.request_deck(world.actor(), deck.id, "pptx").id)
    assert pptx.state is ExportState.DONE, pptx.error
    presentation = Presentation(str(_file(services, pptx, tmp_path, "deck.pptx")))
    assert len(presentation.slides) == len(deck.slides)
    titles = [s.shapes.title.text if s.shapes.title else "" for s in presentation.slides]
    assert titles == [slide.title for slide in deck.slides]  # same slides, same order
    assert all(s.has_notes_slide and s.notes_slide.notes_text_frame.text for s in presentation.slides)
    with zipfile.ZipFile(tmp_path / "deck.pptx") as package:
        assert any(n.startswith("ppt/media/") and n.endswith(".mp4") for n in package.namelist())
    props = presentation.core_properties
    assert world.patient.lastName not in " ".join(str(v or "") for v in (props.title, props.author, props.subject,
                                                                          props.keywords, props.comments))

    pdf = _done(services, world.actor(), services.exports.request_deck(world.actor(), deck.id, "pdf").id)
    assert pdf.state is ExportState.DONE, pdf.error
    info = pdf_info(_file(services, pdf, tmp_path, "deck.pdf"))
    assert info["pages"] == len(deck.slides)
    assert min(i["dpi"] for i in info["images"]) >= 299.9

    pack = _done(services, world.actor(), services.exports.request_deck(world.actor(), deck.id, "pack").id)
    assert pack.state is ExportState.DONE, pack.error
    with zipfile.ZipFile(_file(services, pack, tmp_path, "pack.zip")) as archive:
        names = archive.namelist()
    assert {"presentation.pptx", "presentation.pdf", "index.txt"} <= set(names)
    assert any(n.endswith(".mp4") for n in names)
    assert not any(world.patient.lastName in n for n in names)

    again = services.exports.request_deck(world.actor(), deck.id, "pptx")
    assert again.id == pptx.id  # an identical rebuild is not rendered twice


def test_unapproved_versions_are_refused_and_say_why(services, world):
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="Draft", frames=new_frames(3), queue_renditions=False)
    with pytest.raises(ValidationError, match="no approved simulation yet"):
        services.decks.create(world.actor(), world.patient.id, "progress_update")
    approved = _approved(services, world)
    deck = services.decks.create(world.actor(), world.patient.id, "progress_update")
    from dataclasses import replace

    bad = [replace(deck.slides[2], simulationId=sim.id)]
    with pytest.raises(ValidationError, match="v1 is not approved"):
        services.decks.save(world.actor(), deck.id, name="x", slides=bad)
    assert approved.isApproved


def test_presenters_download_but_cannot_edit_and_newer_approvals_are_flagged(services, world):
    _approved(services, world)
    deck = services.decks.create(world.actor(), world.patient.id, "treatment_complete")
    presenter = services.sessions.load_actor(world.users[Role.PRESENTER].id)
    with pytest.raises(PermissionDeniedError):
        services.decks.save(presenter, deck.id, name="mine", slides=list(deck.slides))
    with pytest.raises(PermissionDeniedError):
        services.decks.create(presenter, world.patient.id, "treatment_complete")
    assert services.exports.request_deck(presenter, deck.id, "pdf").state in (ExportState.QUEUED, ExportState.PENDING)
    assert services.decks.warnings(world.actor(), deck) == []
    _approved(services, world)  # v2 approved after the deck was made
    warnings = services.decks.warnings(world.actor(), deck)
    assert len(warnings) == 1 and "v2 was approved after this deck's v1" in warnings[0].text
    assert not services.infra.assets.list_for_patient(world.clinic.id, world.patient.id, kinds=[AssetKind.EXPORT])
