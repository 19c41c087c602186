"""The Exports page as a worklist: patient per the clinic's policy, human type labels, filters,
cancel/retry, a download on every finished row, and download names without patient data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from bson import ObjectId
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import AssetKind, ExportState, ExportType, FrameRange, Role, SimulationType
from core.services.visuals import download_name
from tests.factories import make_clinic, new_frames

APP = PROJECT_ROOT / "app.py"


@pytest.fixture
def world(services, infra):
    world = make_clinic(infra)
    second = infra.patients.create(world.clinic.id, first_name="Ada", last_name="Zed",
                                   date_of_birth=world.patient.dateOfBirth, chart_number="C-2")
    coordinator = world.users[Role.COORDINATOR].id
    exports = {}
    for patient, kind, state in ((world.patient, ExportType.VIDEO, ExportState.RUNNING),
                                 (second, ExportType.PDF, ExportState.DONE),
                                 (second, ExportType.PPTX, ExportState.FAILED)):
        sim = services.simulations.create_version(
            world.actor(), patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
            name="ClinCheck", frames=new_frames(3), queue_renditions=False)
        urls = None
        if state is ExportState.DONE:
            blob = infra.store.put(b"%PDF-1.4 worklist")
            asset = infra.assets.new_document(
                world.clinic.id, patient_id=patient.id, kind=AssetKind.EXPORT, content_type="application/pdf",
                size=blob.size, sha256=blob.sha256, created_by=coordinator, label="PDF · v1",
                simulation_id=sim.id, tags=("pdf",), details={"simulationVersion": 1, "approved": False})
            infra.assets.insert_many(world.clinic.id, [asset])
            urls = {"pdfUrl": f"asset://{asset['_id']}"}
        exports[kind] = infra.exports.create(world.clinic.id, simulation_id=sim.id, export_type=kind, settings={},
                                             frame_range=FrameRange(0, 2), created_by=coordinator,
                                             name=None, urls=urls, state=state)
    infra.db.simulation_exports.update_one({"exportType": "VIDEO"}, {"$set": {"progress": 22, "step": "encoding"}})
    infra.db.simulation_exports.update_one({"exportType": "PPTX"}, {"$set": {"error": "The deck changed."}})
    return SimpleNamespace(**vars(world), actor=world.actor, second=second, exports=exports)


def _exports_page(world, services) -> AppTest:
    from core.permissions import Actor

    at = AppTest.from_file(str(APP), default_timeout=30)
    coordinator = world.users[Role.COORDINATOR]
    at.session_state["user_id"] = coordinator.id
    ticket = services.sessions.sign_in_ticket(Actor(coordinator), method="development")
    at.session_state["web_session_id"] = services.sessions.start_web_session(ticket)[1].id  # download links
    at.run()
    at.switch_page("pages/exports.py")
    return at.run()


def _rows(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**")]


@pytest.mark.parametrize(("policy", "first", "second"), [
    ("none", "Chart C-1", "Chart C-2"),
    ("initials", "TP · C-1", "AZ · C-2"),
    ("full", "Patientalpha, Test", "Zed, Ada"),
])
def test_each_row_names_its_patient_as_the_clinic_allows(app_env, world, services, infra, policy, first, second):
    infra.db.clinics.update_one({}, {"$set": {"patientNames": policy}})
    at = _exports_page(world, services)
    assert not at.exception and not at.error, at.exception
    people = [m.value.replace("\\", "") for m in at.markdown if m.value.startswith(":material/person:")]
    assert sorted(people) == sorted([f":material/person: {first}", *[f":material/person: {second}"] * 2])


def test_rows_say_what_they_are_with_progress_cancel_retry_and_download(app_env, world, services, infra):
    at = _exports_page(world, services)
    rows = " | ".join(_rows(at))
    assert "**PowerPoint**  \nPowerPoint · ClinCheck v2" in rows and "**PDF**  \nPDF · ClinCheck v1" in rows
    assert "**Video**" in rows and "Pdf" not in rows and "Pptx" not in rows
    assert any("Rendering · 22% · encoding" in p.proto.text for p in at.get("progress"))
    assert [b.label for b in at.get("link_button")] == ["Download"]  # the finished PDF
    assert any("The deck changed" in m.value for m in at.markdown)

    video = world.exports[ExportType.VIDEO]
    infra.db.simulation_exports.update_one({"_id": ObjectId(video.id)},
                                           {"$set": {"state": "QUEUED"}})  # cancel takes a queued job at once
    at.button(key=f"wl-cancel-{video.id}").click().run()
    assert not at.exception
    assert services.exports.get(world.actor(), video.id).state is ExportState.CANCELLED
    assert f"wl-retry-{video.id}" in [b.key for b in at.button]

    pptx = world.exports[ExportType.PPTX]
    at.button(key=f"wl-retry-{pptx.id}").click().run()
    assert not at.exception
    assert services.exports.get(world.actor(), pptx.id).state in (ExportState.QUEUED, ExportState.PENDING)


def test_filters_narrow_the_list(app_env, world, services):
    at = _exports_page(world, services)
    at.multiselect(key="exports-types").select(ExportType.PDF).run()
    assert [r.split("**")[1] for r in _rows(at)] == ["PDF"]
    at.multiselect(key="exports-types").unselect(ExportType.PDF).run()
    at.get("button_group")[0].set_value("problems").run()
    assert [r.split("**")[1] for r in _rows(at)] == ["PowerPoint"]


def test_another_clinic_never_sees_these_rows(app_env, world, services, infra):
    other = make_clinic(infra, "beta", chart="B-1")
    assert list(services.worklist.rows(other.actor())) == []
    assert len(services.worklist.rows(world.actor())) == 3


def test_download_names_say_what_the_file_is_without_patient_data(world, infra):
    asset = next(a for a in infra.assets.find_many(world.clinic.id, {world.exports[ExportType.PDF].asset_id})
                 .values())
    name = download_name(asset)
    assert name.startswith("simulation-print-v1-") and name.endswith(".pdf")
    assert f"{asset.createdAt:%Y-%m-%d}" in name and asset.id[-6:] in name
    assert "Zed" not in name and "Ada" not in name and "C-2" not in name


def _first_page(world, role: Role = Role.COORDINATOR) -> AppTest:
    """A new browser session (a reload) on the first page: AppTest keeps the entrypoint's sidebar only
    on a session's first run, so each check of the tray is a fresh session; the browser journey checks
    it across pages."""
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["user_id"] = world.users[role].id
    return at.run()


def test_the_jobs_tray_shows_the_users_renders_in_the_sidebar(app_env, world, services, infra):
    at = _first_page(world)
    assert not at.exception
    tray = next(e for e in at.sidebar.expander if e.label == "Your jobs")
    assert any("22%" in p.proto.text for p in tray.get("progress"))
    video = world.exports[ExportType.VIDEO]
    infra.db.simulation_exports.update_one({"_id": ObjectId(video.id)}, {"$set": {"state": "QUEUED"}})
    at.sidebar.button(key=f"tray-cancel-{video.id}").click().run()
    assert services.exports.get(world.actor(), video.id).state is ExportState.CANCELLED
    tray = next(e for e in _first_page(world).sidebar.expander if e.label == "Your jobs")
    assert not tray.get("progress") and any("cancelled" in c.value for c in tray.caption)


def test_a_doctors_tray_holds_only_their_own_jobs(app_env, world, services):
    at = _first_page(world, Role.DOCTOR)
    assert not at.exception
    assert not [e for e in at.sidebar.expander if e.label == "Your jobs"]
