"""Pages through Streamlit's AppTest, against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import streamlit as st
from bson import ObjectId
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import Role, SimulationType
from tests.factories import make_clinic, new_frames, open_app

APP = PROJECT_ROOT / "app.py"
PAGES = ("pages/patients.py", "pages/simulation.py", "pages/compare.py", "pages/gallery.py", "pages/exports.py")


@pytest.fixture
def world(services, infra):
    world = make_clinic(infra)
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="ClinCheck", frames=new_frames(5), queue_renditions=False)
    services.simulations.make_renditions(world.clinic.id, sim.id)
    infra.db.simulations.update_one({}, {"$set": {"isApproved": True}})  # presenters see approved only
    return world


def _signed_in(world, role: Role) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["user_id"] = world.users[role].id
    return at


def test_signed_out_users_see_only_the_development_sign_in(app_env, world):
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Treatment Simulation Studio"
    assert "Development sign-in" in at.warning[0].value
    labels = at.selectbox[0].options
    assert len(labels) == 4 and any("coordinator@alpha.test" in label for label in labels)


def test_signing_in_through_the_picker_opens_the_patients_page(app_env, world):
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.selectbox[0].select(world.users[Role.DOCTOR].id)
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Patients"
    assert "Role: `doctor`" in at.sidebar.markdown[0].value


def test_without_dev_signin_and_without_oidc_nobody_can_sign_in(app_env, world, monkeypatch):
    monkeypatch.setenv("DEV_SIGNIN", "0")
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert at.selectbox == [] or len(at.selectbox) == 0
    assert "not configured" in at.info[0].value


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_for_every_role(app_env, world, role, page):
    at = _signed_in(world, role).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize(("role", "page"), [(Role.DOCTOR, "pages/review.py"), (Role.COORDINATOR, "pages/decks.py"),
                                           (Role.PRESENTER, "pages/decks.py"), (Role.COORDINATOR, "pages/imports.py"),
                                           (Role.ADMIN, "pages/integrations.py"), (Role.ADMIN, "pages/users.py"),
                                           (Role.ADMIN, "pages/audit.py"), (Role.ADMIN, "pages/clinic.py")])
def test_role_specific_pages_load(app_env, world, role, page):
    at = _signed_in(world, role).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize(("role", "titles"), [
    (Role.COORDINATOR, ["Patients", "Simulation", "Compare", "Gallery", "Exports", "Presentations", "Import"]),
    (Role.DOCTOR, ["Patients", "Simulation", "Compare", "Gallery", "Exports", "Presentations", "Review", "Import"]),
    (Role.PRESENTER, ["Patients", "Simulation", "Compare", "Gallery", "Exports", "Presentations"]),
    (Role.ADMIN,
     ["Patients", "Simulation", "Compare", "Gallery", "Exports", "Integrations", "Users", "Audit", "Clinic"]),
])
def test_navigation_offers_only_the_pages_a_role_may_use(world, role, titles):
    from ui.navigation import pages_for

    assert [p.title for p in pages_for(world.actor(role))] == titles


def test_the_patients_page_lists_series_with_versions(app_env, world, services):
    services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="ClinCheck v2", frames=new_frames(3), queue_renditions=False)
    at = _signed_in(world, Role.COORDINATOR).run()
    table = at.dataframe[0].value
    assert list(table["Version"]) == ["v2", "v1"]
    assert list(table["Status"]) == ["Active", "Superseded"]
    assert list(table["Frames"]) == [3, 5]


def test_a_patient_with_more_versions_than_a_page_pages_through_them_and_links_reach_the_oldest(
        app_env, world, services, infra):
    """The Patients page shows a patient's newest 100 versions and pages to older ones; a link to a version
    older than the first page still opens it in the viewer (instead of silently showing the newest)."""
    first = infra.db.simulations.find_one({})
    clones = [{**first, "_id": ObjectId(), "version": n, "status": "SUPERSEDED", "isApproved": False,
               "createdAt": first["createdAt"] + timedelta(seconds=n), "updatedAt": first["updatedAt"]
               + timedelta(seconds=n)} for n in range(2, 105)]
    infra.db.simulations.insert_many(clones)  # 104 versions of one series (ids in creation order)
    at = _signed_in(world, Role.COORDINATOR).run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 100 and at.dataframe[0].value["Version"].iloc[0] == "v104"
    at.button(key=next(b.key for b in at.button if b.label == "Older versions")).click().run()
    assert list(at.dataframe[0].value["Version"]) == ["v4", "v3", "v2", "v1"]
    assert next(b for b in at.button if b.label == "Older versions").disabled
    at.button(key=next(b.key for b in at.button if b.label == "Newer versions")).click().run()
    assert len(at.dataframe[0].value) == 100

    oldest = open_app(world, "pages/simulation.py", sim=str(first["_id"]))
    assert not oldest.exception and not oldest.error, oldest.exception
    assert next(s for s in oldest.selectbox if s.label == "Simulation").value == str(first["_id"])


def _shown_image(at: AppTest) -> str:
    return at.get("image")[0].proto.imgs[0].url  # media URL: a hash of the image bytes


def test_the_frame_slider_changes_the_shown_frame(app_env, world):
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/simulation.py").run()
    assert not at.exception
    first = _shown_image(at)
    assert any("### Start" in m.value for m in at.markdown)

    at.slider[0].set_value(3).run()
    assert any("Stage 3 of 4" in m.value for m in at.markdown)
    assert _shown_image(at) != first

    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("last-"))).click().run()
    assert at.slider[0].value == 4



def test_a_coordinator_builds_a_comparison_exports_it_and_finds_it_in_the_gallery(app_env, world, infra):
    import numpy as np

    from core.domain import AssetKind
    from core.imaging import encode_png

    photo = encode_png(np.full((90, 120, 3), 180, np.uint8))
    blob = infra.store.put(photo.data)
    infra.assets.insert_many(world.clinic.id, [infra.assets.new_document(
        world.clinic.id, patient_id=world.patient.id, kind=AssetKind.PHOTO, content_type="image/png",
        size=blob.size, sha256=blob.sha256, created_by=world.users[Role.COORDINATOR].id, width=120, height=90,
        label="Frontal smile")])

    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    before = next(s for s in at.selectbox if s.label == "Before")
    before.select(before.options[1]).run()  # the gallery photo
    assert not at.exception
    at.get("button_group")[0].set_value("split").run()
    at.slider(key=next(s.key for s in at.slider if s.key.startswith("divider-"))).set_value(0.3).run()
    assert not at.exception and not at.error
    at.button(key="save-cmp").click().run()
    assert not at.exception and not at.error
    assert "Saved to the patient's gallery" in at.success[0].value
    export = infra.db.simulation_exports.find_one({})
    assert export["exportType"] == "COMPARISON"
    assert export["settings"]["spec"]["layout"]["layout"] == "split"
    assert export["settings"]["spec"]["layout"]["divider"] == 0.3

    at.switch_page("pages/gallery.py").run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "v1" in captions and "approved" in captions
    labels = [m.value for m in at.markdown]
    assert any("Comparison · split" in label for label in labels)


def test_a_coordinator_imports_screenshots_from_the_import_page(app_env, world, infra, services):
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/imports.py").run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Import simulation"
    # the upload itself is a browser action; the service call behind the button is the same
    from core.domain import ImportSource
    from core.imaging import encode_png
    from core.services.imports import Upload
    from tests.factories import gradient_frame

    record = services.imports.start(world.actor(), source=ImportSource.FILES, patient_id=world.patient.id,
                                    uploads=[Upload(f"Stage {i}.png", encode_png(gradient_frame(i)).data)
                                             for i in (2, 1)], name="From page", queue_analysis=False)
    services.imports.analyze(world.clinic.id, record.id)
    at.session_state["import_id"] = record.id
    at.run()
    assert not at.exception
    assert any("check the frames" in i.value for i in at.info)
    next(b for b in at.button if b.label.startswith("Import 2 frames")).click().run()
    assert not at.exception and not at.error
    assert services.imports.get(world.actor(), record.id).state.value == "IMPORTING"


def test_opening_a_simulation_is_audited_once_not_on_every_rerun(app_env, world, infra):
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/simulation.py").run()
    at.slider[0].set_value(2).run()
    at.slider[0].set_value(3).run()
    assert infra.db.audit_events.count_documents({"action": "simulation.view"}) == 1


def test_the_gallery_lists_non_image_exports_without_trying_to_draw_them(app_env, world, infra):
    from core.domain import AssetKind

    blob = infra.store.put(b"%PDF-1.4 fake")
    infra.assets.insert_many(world.clinic.id, [infra.assets.new_document(
        world.clinic.id, patient_id=world.patient.id, kind=AssetKind.EXPORT, content_type="application/pdf",
        size=blob.size, sha256=blob.sha256, created_by=world.users[Role.COORDINATOR].id, label="Print PDF · v1",
        details={"approved": True, "simulationVersion": 1})])
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/gallery.py").run()
    assert not at.exception and not at.error
    assert any("Print PDF" in m.value for m in at.markdown)


HOSTILE_NAME = "**Stage 1** [see](https://evil.example) :red[x] `y` \x1b[2J\u202egnp.png"


def _rendered(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(markdown)


def _literal(value: str, *, bold: bool = False) -> None:
    """`value` (Markdown source) shows the hostile name as plain text: no emphasis, link, code or
    directive of its own (`bold`: the page's own bold around it)."""
    html = _rendered(value)
    assert html.count("<strong>") == int(bold) and "<a " not in html and "<code>" not in html
    assert "**Stage 1** [see](https://evil.example) :red[x] `y` \\x1b[2J\\u202egnp.png" in html
    assert "\x1b" not in value and "\u202e" not in value


def test_user_supplied_names_render_as_text_in_errors_and_gallery_cards(app_env, world, infra, services):
    from core.domain import AssetKind, ImportSource
    from core.services.imports import Upload

    record = services.imports.start(world.actor(), source=ImportSource.FILES, patient_id=world.patient.id,
                                    uploads=[Upload(HOSTILE_NAME, b"not a picture")], name="x",
                                    queue_analysis=False)
    services.imports.analyze(world.clinic.id, record.id)
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/imports.py").run()
    at.session_state["import_id"] = record.id
    at.run()
    assert not at.exception
    error = at.error[0].value
    assert error.startswith("Import failed: ") and "is not an image" in error
    _literal(error)

    blob = infra.store.put(b"%PDF-1.4 fake")
    infra.assets.insert_many(world.clinic.id, [infra.assets.new_document(
        world.clinic.id, patient_id=world.patient.id, kind=AssetKind.PHOTO, content_type="application/pdf",
        size=blob.size, sha256=blob.sha256, created_by=world.users[Role.COORDINATOR].id, label=HOSTILE_NAME)])
    at.switch_page("pages/gallery.py").run()
    assert not at.exception and not at.error
    label = next(m.value for m in at.markdown if "Stage 1" in m.value)
    _literal(label, bold=True)
    assert not any("None" in c.value for c in at.caption)


def test_the_import_page_offers_the_itero_export_folder(app_env, world):
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/imports.py").run()
    at.radio(key="import-source").set_value(next(o for o in at.radio(key="import-source").options
                                                 if o.startswith("iTero"))).run()
    assert not at.exception and not at.error
    assert at.toggle(key="import-itero-folder").value is True
    uploader = at.get("file_uploader")[0].proto
    assert uploader.multiple_files and uploader.accept_directory
    at.toggle(key="import-itero-folder").set_value(False).run()
    uploader = at.get("file_uploader")[0].proto
    assert uploader.multiple_files and not uploader.accept_directory  # its files, or its ZIP


def test_imports_without_a_patient_are_listed_on_the_import_page(app_env, world, services):
    from core.domain import ImportSource
    from core.services.imports import Upload

    record = services.imports.start(world.actor(), source=ImportSource.ITERO, patient_id=None,
                                    uploads=[Upload("notes.txt", b"no manifest here")], name="Drop 7",
                                    queue_analysis=False)
    services.imports.analyze(world.clinic.id, record.id)  # fails: no manifest, and no patient was chosen
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/imports.py").run()
    assert not at.exception and not at.error
    assert "Recent imports without a patient" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "Drop 7" in list(d.value["Name"]))
    assert list(table["State"]) == ["Failed"] and "No iTero manifest" in table["Problem"][0]


def test_the_logo_uploader_offers_a_logo_sized_limit(app_env, world):
    at = _signed_in(world, Role.ADMIN).run()
    at.switch_page("pages/clinic.py").run()
    assert not at.exception
    uploader = at.get("file_uploader")[0].proto
    assert uploader.max_upload_size_mb == 5  # not the server's 1 GB import limit


def test_the_side_panel_shows_no_internal_import_ids(app_env, world, infra):
    infra.db.simulations.update_one({}, {"$set": {"sourceId": "import-6b0f1234", "sourceSystem": "Screenshots"}})
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/simulation.py").run()
    assert not at.exception
    panel = next(m.value for m in at.markdown if "**Source:**" in m.value)
    assert "Screenshots" in panel and "import-" not in panel and "import\\-" not in panel
    assert "Start + 4 stages" in panel
