"""The 3D stage viewer and the vendor web viewer on the Simulation page, through AppTest (real database)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import ImportSource, Role
from core.importing.mesh_testing import make_arch_mesh, write_stl
from core.importing.meshes import rendering_available
from core.mesh3d.figure import decode_typed_array
from core.services.imports import Upload
from tests.factories import make_clinic

APP = PROJECT_ROOT / "app.py"
STAGES = 3
SHARE = "https://clincheck.invisalign.com/share/Xy9?case=1"


def _staged_version(services, world, *, triangles: int = 12_000) -> str:
    uploads = [Upload(f"{arch.title()}_Stage_{stage:02d}.stl",
                      write_stl(make_arch_mesh(arch, stage, STAGES, triangles=triangles)))
               for stage in range(STAGES) for arch in ("upper", "lower")]
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    uploads=uploads, name="uLab setup", options={"views": ["front"]},
                                    queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates], queue=False)
    sim_id = services.imports.commit(world.clinic.id, record.id).simulationId
    services.simulations.make_renditions(world.clinic.id, sim_id)
    services.meshes.prepare(world.clinic.id, sim_id)
    return sim_id


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def _signed_in(world, role: Role) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["user_id"] = world.users[role].id
    return at


def _button_group(at: AppTest, prefix: str):
    return next(w for w in at.get("button_group") if w.key and w.key.startswith(prefix))


def _figure(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def _open_3d(world, role: Role = Role.COORDINATOR) -> AppTest:
    at = _signed_in(world, role).run()
    at.switch_page("pages/simulation.py").run()
    assert not at.exception, at.exception
    _button_group(at, "mode-").set_value("3d").run()
    assert not at.exception, at.exception
    return at


@pytest.mark.skipif(rendering_available() is not None, reason=f"3D RENDERING UNAVAILABLE: {rendering_available()}")
def test_the_3d_viewer_figure_for_stage_k_has_the_vertices_of_stage_k(app_env, services, world):
    sim_id = _staged_version(services, world)
    at = _open_3d(world)
    assert any(m.value == "### Start" for m in at.markdown)
    first = _figure(at)
    assert [t["name"] for t in first["data"]] == ["upper arch", "lower arch"]

    at.slider(key=f"stage3d-{sim_id}").set_value(2).run()
    assert not at.exception and any("Stage 2 of 2" in m.value for m in at.markdown)
    figure = _figure(at)
    expected = services.meshes.stage_models(world.actor(), sim_id, 2).meshes
    for trace in figure["data"]:
        arch = trace["name"].split()[0]
        shown = np.stack([decode_typed_array(trace[axis]) for axis in "xyz"], axis=1)
        np.testing.assert_array_equal(shown, expected[arch].quantized)
    before = np.stack([decode_typed_array(first["data"][0][axis]) for axis in "xyz"], axis=1)
    assert not np.array_equal(before, expected["upper"].quantized)  # the teeth moved between stage 0 and 2
    # the same stage controls as the frame viewer
    at.button(key=f"first-stage3d-{sim_id}").click().run()
    assert at.slider(key=f"stage3d-{sim_id}").value == 0
    # Plotly's own PNG download would skip stamps and the DRAFT watermark
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert "toImage" in config["modeBarButtonsToRemove"]


@pytest.mark.skipif(rendering_available() is not None, reason=f"3D RENDERING UNAVAILABLE: {rendering_available()}")
def test_camera_presets_movement_map_and_ghost(app_env, services, world):
    sim_id = _staged_version(services, world)
    at = _open_3d(world)
    _button_group(at, "camera-").set_value("upper").run()
    figure = _figure(at)
    assert [t["name"] for t in figure["data"]] == ["upper arch"]
    assert figure["layout"]["scene"]["camera"]["eye"]["z"] < -1

    at.slider(key=f"stage3d-{sim_id}").set_value(1).run()
    at.toggle(key=f"movement-{sim_id}").set_value(True).run()
    trace = _figure(at)["data"][0]
    expected = services.meshes.stage_models(world.actor(), sim_id, 1).meshes["upper"].movement_um
    np.testing.assert_array_equal(decode_typed_array(trace["intensity"]), expected)
    assert trace["colorbar"]["title"]["text"] == "Movement (mm)"

    at.toggle(key=f"ghost-{sim_id}").set_value(True).run()
    traces = _figure(at)["data"]
    assert [t.get("opacity") for t in traces] == [None, 0.25]
    assert not at.exception and not at.error


def test_versions_without_3d_models_offer_no_3d_mode(app_env, services, world):
    from core.domain import SimulationType
    from tests.factories import new_frames

    services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="Screenshots", frames=new_frames(2), queue_renditions=False)
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/simulation.py").run()
    assert not at.exception
    assert not [w for w in at.get("button_group") if w.key and w.key.startswith("mode-")]
    assert at.get("plotly_chart") == [] or len(at.get("plotly_chart")) == 0


# --- vendor viewers -----------------------------------------------------------------------------------


@pytest.fixture
def version(services, world):
    from core.domain import SimulationType
    from tests.factories import new_frames

    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="ClinCheck", frames=new_frames(2), queue_renditions=False)
    services.simulations.make_renditions(world.clinic.id, sim.id)
    return sim


def test_an_admin_allows_a_host_on_the_clinic_page(app_env, world, infra):
    at = _signed_in(world, Role.ADMIN).run()
    at.switch_page("pages/clinic.py").run()
    next(t for t in at.text_input if t.label == "Host").input("*.invisalign.com")
    next(b for b in at.button if b.label == "Allow host").click().run()
    assert not at.exception and not at.error
    assert infra.db.viewer_hosts.find_one({})["host"] == "*.invisalign.com"
    assert any("*.invisalign.com" in m.value for m in at.markdown)
    next(t for t in at.text_input if t.label == "Host").input("http://evil.example")
    next(b for b in at.button if b.label == "Allow host").click().run()
    assert any("Only https" in e.value for e in at.error)
    assert infra.db.viewer_hosts.count_documents({}) == 1


def _attach(at: AppTest, url: str) -> AppTest:
    at.toggle(key="edit-open").set_value(True).run()
    next(t for t in at.text_input if t.label == "Vendor viewer link").input(url)
    next(b for b in at.button if b.label in ("Attach link", "Replace link")).click().run()
    return at


def test_an_allowed_https_viewer_is_embedded_sandboxed_beside_the_frames(app_env, services, world, version):
    services.viewers.add_host(world.actor(Role.ADMIN), "*.invisalign.com")
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/simulation.py").run()
    assert at.get("iframe") == [] or len(at.get("iframe")) == 0
    _attach(at, SHARE)
    assert not at.exception and not at.error
    frames = at.get("iframe")
    assert len(frames) == 1
    srcdoc = frames[0].proto.srcdoc
    assert f'src="{SHARE.replace("&", "&amp;")}"' in srcdoc
    assert 'sandbox="allow-scripts allow-same-origin"' in srcdoc and 'referrerpolicy="no-referrer"' in srcdoc
    assert len(at.get("image")) >= 1  # our frames stay beside it


@pytest.mark.parametrize(("url", "message"), [
    ("http://clincheck.invisalign.com/share/1", "Only https"),
    ("https://viewer.unlisted.example/share/1", "not on your clinic's list"),
    ("javascript:alert(document.domain)", "links are refused"),
])
def test_http_unlisted_and_script_links_are_refused_on_the_page(app_env, services, world, version, infra, url,
                                                                message):
    services.viewers.add_host(world.actor(Role.ADMIN), "*.invisalign.com")
    at = _signed_in(world, Role.COORDINATOR).run()
    at.switch_page("pages/simulation.py").run()
    _attach(at, url)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.get("iframe")) == 0 and infra.db.viewer_links.count_documents({}) == 0


def test_presenters_see_the_viewer_only_on_approved_versions(app_env, services, world, version):
    services.viewers.add_host(world.actor(Role.ADMIN), "clincheck.invisalign.com")
    services.viewers.set_link(world.actor(), version.id, SHARE)
    at = _signed_in(world, Role.PRESENTER).run()
    at.switch_page("pages/simulation.py").run()
    assert len(at.get("iframe")) == 0  # the unapproved version is not even listed for a presenter
    services.review.approve(world.actor(Role.DOCTOR), version.id)
    at = _signed_in(world, Role.PRESENTER).run()
    at.switch_page("pages/simulation.py").run()
    assert not at.exception and len(at.get("iframe")) == 1


@pytest.mark.skipif(rendering_available() is not None, reason=f"3D RENDERING UNAVAILABLE: {rendering_available()}")
def test_movement_images_and_versions_are_requested_from_the_3d_view(app_env, services, world, infra):
    sim_id = _staged_version(services, world, triangles=6_000)
    at = _open_3d(world)
    at.toggle(key=f"mesh-export-open-{sim_id}").set_value(True).run()
    at.button(key=f"mesh-export-go-{sim_id}").click().run()
    assert not at.exception and not at.error
    export = infra.db.simulation_exports.find_one({})
    assert export["exportType"] == "SNAPSHOT" and export["state"] == "QUEUED"
    assert export["settings"]["mesh_view"] == "front" and export["settings"]["last_stage"] == 2
    assert export["settings"]["approved"] is False  # the job will burn in the DRAFT watermark

    at.button(key=f"superimpose-{sim_id}").click().run()
    assert not at.exception and not at.error
    assert infra.mesh_sets.get(world.clinic.id, sim_id).superimposition.value == "QUEUED"
    assert any("Making the movement-map version" in p.proto.text for p in at.get("progress"))

    services.review.approve(world.actor(Role.DOCTOR), sim_id)
    presenter = _open_3d(world, Role.PRESENTER)
    assert not [b for b in presenter.button if b.key == f"superimpose-{sim_id}"]  # presenters do not make versions
    assert len(presenter.get("plotly_chart")) == 1
