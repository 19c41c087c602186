"""Snapshots, comparisons and outcome cards through the service, saved to the patient record."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from core.domain import AssetKind, ExportType, ImagingAsset, Role, SimulationType
from core.errors import PermissionDeniedError, ValidationError
from core.imaging import decode_rgb, encode_png
from core.imaging.align import Alignment
from core.imaging.compose import ComparisonSpec
from core.imaging.encode import read_dpi
from core.services.simulations import NewFrame
from core.services.visuals import (
    BeforeRef,
    ComparisonRequest,
    OutputSpec,
    Overlays,
    SnapshotSpec,
    asset_facts,
)
from tests.factories import make_clinic, new_frames


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def _sim(services, world, *, views=("front",), stages=4, approved=False):
    frames = [NewFrame(f.stage, view, f.image, f.label) for view in views for f in new_frames(stages, size=(160, 90))]
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Plan", frames=frames, queue_renditions=False)
    if approved:
        services.infra.db.simulations.update_one({"_id": services.infra.db.simulations.find_one()["_id"]},
                                                 {"$set": {"isApproved": True}})
    return services.simulations.get(world.actor(), sim.id)


@pytest.mark.parametrize(("size", "orientation", "pixels"), [
    ("a4", "portrait", (2480, 3508)), ("4x6", "landscape", (1800, 1200)), ("letter", "landscape", (3300, 2550)),
])
def test_print_snapshots_have_exact_300_dpi_pixel_sizes_and_say_so_in_the_file(
        services, world, size, orientation, pixels):
    sim = _sim(services, world)
    spec = SnapshotSpec(frame_index=2, output=OutputSpec(size=size, orientation=orientation, fmt="png"))
    result = services.visuals.export_snapshot(world.actor(), sim.id, spec)
    data = services.infra.store.get(result.asset.sha256)
    image = Image.open(io.BytesIO(data))
    assert image.size == pixels
    assert read_dpi(data) == pytest.approx((300, 300), abs=0.02)
    assert result.asset.kind is AssetKind.EXPORT and result.asset.width == pixels[0]
    assert result.export.exportType is ExportType.SNAPSHOT


def test_exported_files_carry_no_exif_and_no_patient_data(services, world):
    sim = _sim(services, world)
    for fmt in ("png", "jpeg"):
        spec = SnapshotSpec(frame_index=0, output=OutputSpec(size="1080p", fmt=fmt),
                            overlays=Overlays(patient="full"))
        result = services.visuals.export_snapshot(world.actor(), sim.id, spec)
        data = services.infra.store.get(result.asset.sha256)
        image = Image.open(io.BytesIO(data))
        assert not image.getexif()
        assert set(image.info) <= {"dpi", "jfif", "jfif_version", "jfif_unit", "jfif_density"}
        assert world.patient.lastName.encode() not in data
        _, name, _ = services.visuals.download(world.actor(), result.asset.id)
        assert world.patient.lastName not in name and world.patient.firstName not in name


def test_unapproved_versions_carry_the_draft_watermark_and_approved_ones_do_not(services, world, infra):
    draft = _sim(services, world)
    spec = SnapshotSpec(frame_index=1, overlays=Overlays(stage_label=False, date=False, clinic=False))
    with_draft = services.visuals.render_snapshot(world.actor(), draft.id, spec, preview=True)
    infra.db.simulations.update_one({}, {"$set": {"isApproved": True}})
    approved = services.visuals.render_snapshot(world.actor(), draft.id, spec, preview=True)

    height, width = approved.shape[:2]
    centre = (slice(height // 3, 2 * height // 3), slice(width // 4, 3 * width // 4))
    changed = np.abs(with_draft.astype(int)[centre] - approved.astype(int)[centre]).max(axis=2) > 40
    assert changed.mean() > 0.05  # the diagonal DRAFT text covers the centre
    # a page cannot ask for a draft export without it: the spec has no such switch at all
    assert "draft" not in " ".join(Overlays.__dataclass_fields__)


def test_the_outcome_stamp_cannot_be_turned_off_for_patient_facing_output(services, world, infra):
    sim = _sim(services, world, approved=True)
    base = Overlays(stage_label=False, date=False, clinic=False)
    patient_facing = services.visuals.render_snapshot(
        world.actor(), sim.id, SnapshotSpec(0, overlays=Overlays(**{**base.__dict__, "stamp": False})), preview=True)
    clinical = services.visuals.render_snapshot(
        world.actor(), sim.id, SnapshotSpec(0, overlays=Overlays(**{**base.__dict__, "for_patient": False,
                                                                     "stamp": False})), preview=True)
    bottom = slice(int(patient_facing.shape[0] * 0.85), None)
    assert np.abs(patient_facing[bottom].astype(int) - clinical[bottom].astype(int)).mean() > 5


def test_identical_exports_return_the_existing_record_even_when_racing(services, world, infra):
    sim = _sim(services, world)
    spec = SnapshotSpec(frame_index=3, output=OutputSpec(size="square"))
    results = []
    barrier = threading.Barrier(4)

    def export() -> None:
        barrier.wait()
        results.append(services.visuals.export_snapshot(world.actor(), sim.id, spec))

    threads = [threading.Thread(target=export) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.export.id for r in results}) == 1
    assert infra.db.simulation_exports.count_documents({}) == 1
    assert infra.db.imaging_assets.count_documents({"kind": "EXPORT"}) == 1
    other = services.visuals.export_snapshot(world.actor(), sim.id, SnapshotSpec(frame_index=2))
    assert other.export.id != results[0].export.id and not other.reused


def test_admins_can_preview_but_not_export(services, world):
    sim = _sim(services, world)
    services.visuals.render_snapshot(world.actor(Role.ADMIN), sim.id, SnapshotSpec(0), preview=True)
    with pytest.raises(PermissionDeniedError, match="imaging:export"):
        services.visuals.export_snapshot(world.actor(Role.ADMIN), sim.id, SnapshotSpec(0))


def test_a_comparison_against_a_gallery_photo_is_saved_with_the_before_image(services, world, infra):
    sim = _sim(services, world)
    photo = encode_png(np.full((120, 160, 3), 200, np.uint8))
    blob = infra.store.put(photo.data)
    doc = infra.assets.new_document(world.clinic.id, patient_id=world.patient.id, kind=AssetKind.PHOTO,
                                    content_type="image/png", size=blob.size, sha256=blob.sha256,
                                    created_by=world.users[Role.COORDINATOR].id, width=160, height=120,
                                    label="Frontal smile")
    infra.assets.insert_many(world.clinic.id, [doc])
    request = ComparisonRequest(before=BeforeRef(asset_id=str(doc["_id"])), predicted=(3,),
                                layout=ComparisonSpec(layout="split", divider=0.3),
                                output=OutputSpec(size="a4", orientation="landscape"))
    preview = services.visuals.render_comparison(world.actor(), sim.id, request, preview=True)
    assert preview.shape[1] <= 1280
    result = services.visuals.export_comparison(world.actor(), sim.id, request)
    assert result.export.exportType is ExportType.COMPARISON
    assert result.export.beforeImageId == str(doc["_id"])
    assert result.export.comparisonUrl == f"asset://{result.asset.id}"
    exported = decode_rgb(infra.store.get(result.asset.sha256))
    assert exported.shape[:2] == (2480, 3508)
    gallery = services.visuals.gallery(world.actor(), world.patient.id)
    assert [g.asset.id for g in gallery if g.export] == [result.asset.id]


def test_a_grid_needs_the_grid_layout_and_frames_must_exist(services, world):
    sim = _sim(services, world)
    with pytest.raises(ValidationError, match="choose one predicted stage, or the grid layout"):
        ComparisonRequest(before=BeforeRef(frame_index=0), predicted=(1, 2))
    request = ComparisonRequest(before=BeforeRef(frame_index=0), predicted=(9,))
    with pytest.raises(ValidationError, match="Frame 9 does not exist"):
        services.visuals.render_comparison(world.actor(), sim.id, request, preview=True)


def test_a_remembered_alignment_is_returned_for_the_same_pair(services, world):
    sim = _sim(services, world)
    before = BeforeRef(frame_index=0)
    assert services.visuals.remembered_alignment(world.actor(), sim.id, before, 3) is None
    services.visuals.remember_alignment(world.actor(), sim.id, before, 3, Alignment(scale=1.1, dx=4))
    assert services.visuals.remembered_alignment(world.actor(), sim.id, before, 3) == Alignment(scale=1.1, dx=4)
    assert services.visuals.remembered_alignment(world.actor(), sim.id, before, 2) is None


def test_an_outcome_card_shows_the_final_stage_from_every_view(services, world):
    sim = _sim(services, world, views=("front", "left", "right", "upper", "lower"), approved=True)
    result = services.visuals.export_outcome_card(world.actor(), sim.id, OutputSpec(size="4k"), Overlays())
    assert (result.asset.width, result.asset.height) == (3840, 2160)
    last = max(f.stage for f in sim.frames)
    used = result.export.settings["spec"]["outcomeCard"]
    shown = [used["before"]["frame_index"], *used["predicted"]]
    assert sorted(sim.frames[i].view for i in shown) == sorted(["front", "left", "right", "upper", "lower"])
    assert all(sim.frames[i].stage == last for i in shown)


def test_an_outcome_card_of_a_single_view_version_is_refused(services, world):
    single = _sim(services, world, views=("front",))
    with pytest.raises(ValidationError, match="at least two views"):
        services.visuals.export_outcome_card(world.actor(), single.id, OutputSpec(), Overlays())


def _asset(kind: AssetKind, content_type: str, **fields) -> ImagingAsset:
    return ImagingAsset(id="a" * 24, clinicId="c" * 24, patientId="p" * 24, kind=kind, contentType=content_type,
                        size=fields.pop("size", 2_500_000), sha256="0" * 64, createdAt=datetime(2024, 3, 5, tzinfo=UTC),
                        createdBy="u" * 24, **fields)


PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


@pytest.mark.parametrize(("asset", "facts"), [
    (_asset(AssetKind.PHOTO, "image/png", width=1920, height=1080, details={"view": "front"}),
     ["1920 × 1080", "frontal view"]),
    (_asset(AssetKind.SCAN, "model/stl", details={"triangles": 412_330, "jaw": "upper"}),
     ["412,330 triangles", "upper jaw"]),
    (_asset(AssetKind.SCAN, "model/stl"), ["3D scan"]),
    (_asset(AssetKind.SCAN, "application/xml", details={"sourceSystem": "iTero", "orderId": "70011"}),
     ["iTero manifest · order 70011"]),
    (_asset(AssetKind.EXPORT, PPTX, details={"slides": 12}), ["12 slides"]),
    (_asset(AssetKind.EXPORT, "application/pdf", details={"slides": 1}), ["1 slide"]),
    (_asset(AssetKind.EXPORT, "application/pdf", width=2480, height=3508, details={"pages": 10}),
     ["2480 × 3508", "10 pages"]),
    (_asset(AssetKind.EXPORT, "video/mp4", width=1920, height=1080, details={"durationSeconds": 12.04}),
     ["1920 × 1080", "12.0 s"]),
    (_asset(AssetKind.EXPORT, "application/zip", details={"files": 4}), ["4 files"]),
    (_asset(AssetKind.SOURCE, "application/octet-stream", size=40_000), ["40 kB"]),
])  # fmt: skip
def test_gallery_facts_say_what_each_kind_of_file_is(asset: ImagingAsset, facts: list[str]) -> None:
    assert asset_facts(asset) == facts


def test_only_pictures_are_offered_as_before_images(services, world, infra):
    docs = []
    for kind, content_type, label in ((AssetKind.PHOTO, "image/jpeg", "Smile"), (AssetKind.SCAN, "model/stl", "Jaw"),
                                      (AssetKind.SCAN, "application/xml", "Manifest"),
                                      (AssetKind.SCAN, "image/png", "Old scanner view"),
                                      (AssetKind.EXPORT, "image/png", "Snapshot")):
        blob = infra.store.put(label.encode())
        docs.append(infra.assets.new_document(world.clinic.id, patient_id=world.patient.id, kind=kind,
                                              content_type=content_type, size=blob.size, sha256=blob.sha256,
                                              created_by=world.users[Role.COORDINATOR].id, label=label))
    infra.assets.insert_many(world.clinic.id, docs)
    offered = services.visuals.before_candidates(world.actor(), world.patient.id)
    assert sorted(a.label for a in offered) == ["Old scanner view", "Smile"]
    sim = _sim(services, world)
    stl = BeforeRef(asset_id=str(docs[1]["_id"]))
    with pytest.raises(ValidationError, match="not an image that can be compared"):
        services.visuals.before_pixels(world.actor(), sim, stl)
