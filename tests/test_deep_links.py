"""Deep links: page state in st.query_params survives a reload and opens from a pasted link (AppTest)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from bson import ObjectId
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import Role, SimulationType
from tests.factories import make_clinic, new_frames, open_app
from ui.deep_links import NOT_FOUND

APP = PROJECT_ROOT / "app.py"


@pytest.fixture
def world(services, infra):
    world = make_clinic(infra)  # a frozen dataclass: the test's world adds a second patient and versions
    second = infra.patients.create(world.clinic.id, first_name="Second", last_name="Person",
                                   date_of_birth=world.patient.dateOfBirth, chart_number="C-2")
    sims = {}
    for patient, count in ((world.patient, 5), (second, 4)):
        sim = services.simulations.create_version(
            world.actor(), patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
            name=f"ClinCheck {patient.chartNumber}", frames=[*new_frames(count), *new_frames(count, view="left")],
            queue_renditions=False)
        services.simulations.make_renditions(world.clinic.id, sim.id)
        sims[patient.chartNumber] = sim
    return SimpleNamespace(**vars(world), second=second, sims=sims)


def _open(world, page: str, **params: str) -> AppTest:
    """A fresh session (a reload or a pasted link) of `page` with `params` in the address."""
    return open_app(world, page, **params)


def _q(at: AppTest, name: str) -> str | None:
    """The address bar's value for `name` (AppTest keeps one value as a string, several as a list)."""
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def _heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("### "))


def test_a_simulation_link_opens_its_patient_version_view_and_stage(app_env, world):
    sim = world.sims["C-2"]
    at = _open(world, "pages/simulation.py", sim=sim.id, view="left", stage="2")
    assert not at.exception and not at.error, at.exception
    patient = next(s for s in at.selectbox if s.label == "Patient")
    assert patient.value == world.second.id
    assert next(s for s in at.selectbox if s.label == "Simulation").value == sim.id
    assert at.get("button_group")[0].value == "left"
    assert _heading(at) == "### Stage 2 of 3"
    assert _q(at, "patient") == world.second.id and _q(at, "stage") == "2"


def test_moving_the_stage_updates_the_address_and_a_reload_restores_it(app_env, world):
    at = _open(world, "pages/simulation.py")
    assert not at.exception
    assert _q(at, "sim") == world.sims["C-1"].id and _q(at, "stage") == "0"
    at.slider[0].set_value(3).run()
    assert _q(at, "stage") == "3" and _heading(at) == "### Stage 3 of 4"
    address = {k: _q(at, k) for k in at.query_params}

    reloaded = _open(world, "pages/simulation.py", **address)  # a new session from the same address
    assert not reloaded.exception
    assert _heading(reloaded) == "### Stage 3 of 4"
    assert reloaded.slider[0].value == 3


def test_choosing_another_patient_rewrites_the_link(app_env, world):
    at = _open(world, "pages/simulation.py")
    next(s for s in at.selectbox if s.label == "Patient").select(world.second.id).run()
    assert not at.exception
    assert _q(at, "patient") == world.second.id
    assert _q(at, "sim") == world.sims["C-2"].id


@pytest.mark.parametrize("param", ["sim", "patient"])
def test_another_clinics_record_looks_exactly_like_an_unknown_one(app_env, world, services, infra, param):
    other = make_clinic(infra, "beta", chart="B-1")
    foreign = services.simulations.create_version(
        other.actor(), patient_id=other.patient.id, treatment_id=other.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Theirs", frames=new_frames(3), queue_renditions=False)
    foreign_id = foreign.id if param == "sim" else other.patient.id
    shown = {}
    for label, value in (("foreign", foreign_id), ("unknown", str(ObjectId())), ("garbage", "not-an-id")):
        at = _open(world, "pages/simulation.py", **{param: value})
        assert not at.exception, at.exception
        shown[label] = [w.value for w in at.warning]
        # the page falls back to the clinic's own first patient, and the bad id leaves the address
        assert next(s for s in at.selectbox if s.label == "Patient").value == world.patient.id
        assert _q(at, param) != value
    assert shown["foreign"] == shown["unknown"] == shown["garbage"] == [NOT_FOUND]


def test_a_compare_link_restores_the_layout_and_the_predicted_stage(app_env, world):
    sim = world.sims["C-1"]
    at = _open(world, "pages/compare.py", sim=sim.id, layout="split", stage="2")
    assert not at.exception and not at.error, at.exception
    assert at.get("button_group")[0].value == "split"
    assert next(s for s in at.select_slider if s.label == "Predicted stage").value == 2
    at.get("button_group")[0].set_value("blend").run()
    assert _q(at, "layout") == "blend"


def test_the_copy_link_action_holds_the_shown_state(app_env, world):
    at = _open(world, "pages/simulation.py", sim=world.sims["C-1"].id, stage="4")
    link = at.code[0].value
    assert link.startswith("/simulation?") and f"sim={world.sims['C-1'].id}" in link and "stage=4" in link


def test_signing_in_from_a_link_keeps_its_address_for_the_session_cookie_round_trip(app_env, world):
    from urllib.parse import unquote

    sim = world.sims["C-2"]
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params["sim"] = sim.id
    at.query_params["stage"] = "2"
    at.run()
    assert at.title[0].value == "Treatment Simulation Studio"  # the sign-in form, not "page not found"
    at.selectbox[0].select(world.users[Role.COORDINATOR].id)
    at.button[0].click().run()
    assert not at.exception
    handover = next(h.proto.body for h in at.get("html") if "/auth/session" in h.proto.body)
    target = unquote(handover.split("next=", 1)[1].split('"', 1)[0])
    assert target.startswith("/?") and f"sim={sim.id}" in target and "stage=2" in target
    # and the page opened right away on the linked patient
    assert next(s for s in at.selectbox if s.label == "Patient").value == world.second.id


def test_leaving_the_viewer_and_coming_back_keeps_the_stage_and_view(app_env, world):
    at = _open(world, "pages/simulation.py")
    at.get("button_group")[0].set_value("left").run()
    at.slider[0].set_value(3).run()
    at.switch_page("pages/patients.py").run()
    at.switch_page("pages/simulation.py").run()  # no address: the session remembers
    assert not at.exception
    assert _heading(at) == "### Stage 3 of 4" and at.get("button_group")[0].value == "left"
    assert _q(at, "stage") == "3" and _q(at, "view") == "left"


def test_the_render_panel_stays_open_across_pages(app_env, world):
    at = _open(world, "pages/simulation.py")
    at.toggle(key="render-open").set_value(True).run()
    at.switch_page("pages/exports.py").run()
    at.switch_page("pages/simulation.py").run()
    assert not at.exception
    assert at.toggle(key="render-open").value is True
    assert any(b.label.startswith("Render ") for b in at.button)


def test_a_reload_keeps_the_render_panel_open_and_follows_my_running_render(app_env, world, services):
    from core.domain import ExportType
    from core.permissions import Actor
    from core.services.exports import RenderRequest

    sim = world.sims["C-1"]
    at = _open(world, "pages/simulation.py", sim=sim.id)
    at.toggle(key="render-open").set_value(True).run()
    assert _q(at, "render") == "1"
    # No worker runs here: both stay queued.
    mine = services.exports.request(Actor(world.users[Role.COORDINATOR]), sim.id, RenderRequest(ExportType.GIF))
    theirs = services.exports.request(Actor(world.users[Role.DOCTOR]), sim.id,
                                      RenderRequest(ExportType.PDF))
    address = {k: _q(at, k) for k in at.query_params}

    reloaded = _open(world, "pages/simulation.py", **address)  # a new session: nothing followed yet
    assert not reloaded.exception
    assert reloaded.toggle(key="render-open").value is True
    assert reloaded.session_state["followed_exports"] == [mine.id]
    assert theirs.id not in reloaded.session_state["followed_exports"]
    assert any("waiting for" in p.proto.text for p in reloaded.get("progress"))
