"""The jobs tray follows the user's own imports too: running ones with their progress, previews waiting
for them with a link that opens that import; another user's imports and finished ones stay out."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.domain import ImportSource, ImportState, Role, SimulationType
from tests.factories import make_clinic, open_app
from ui.deep_links import NOT_FOUND

APP = PROJECT_ROOT / "app.py"


def _import(infra, world, role: Role, state: ImportState):
    return infra.imports.create(world.clinic.id, source=ImportSource.RECORDING, created_by=world.users[role].id,
                                patient_id=world.patient.id, treatment_id=None,
                                simulation_type=SimulationType.ALIGNER, name="ClinCheck", files=(), options={},
                                state=state)


def test_the_tray_lists_only_my_imports_in_progress(services, infra):
    world = make_clinic(infra)
    mine = {state: _import(infra, world, Role.COORDINATOR, state)
            for state in (ImportState.ANALYZING, ImportState.PREVIEW, ImportState.DONE, ImportState.FAILED)}
    _import(infra, world, Role.DOCTOR, ImportState.ANALYZING)  # a colleague's
    shown = services.imports.in_progress(world.actor())
    assert {r.id for r in shown} == {mine[ImportState.ANALYZING].id, mine[ImportState.PREVIEW].id}
    assert services.imports.in_progress(world.actor(Role.PRESENTER)) == []  # cannot import: nothing to follow
    other = make_clinic(infra, "beta")
    assert services.imports.in_progress(other.actor()) == []


def test_the_tray_shows_a_running_import_and_opens_a_waiting_one(app_env, services, infra):
    world = make_clinic(infra)
    running = _import(infra, world, Role.COORDINATOR, ImportState.ANALYZING)
    infra.imports.transition(world.clinic.id, running.id, from_states=(ImportState.ANALYZING,),
                             to=ImportState.ANALYZING, progress=40, step="finding the stages")
    waiting = _import(infra, world, Role.COORDINATOR, ImportState.PREVIEW)
    at = AppTest.from_file(str(APP), default_timeout=30)  # AppTest keeps the sidebar of a first run only
    at.session_state["user_id"] = world.users[Role.COORDINATOR].id
    at.run()
    assert not at.exception, at.exception
    tray = next(e for e in at.sidebar.expander if e.label == "Your jobs")
    assert any("Import · Screen recording: finding the stages (40%)" in p.proto.text for p in tray.get("progress"))
    assert any("ready for you to check" in c.value for c in tray.caption)
    links = [f"{link.proto.page}?{link.proto.query_string}" for link in tray.get("page_link")]
    assert any(f"import={waiting.id}" in link for link in links), links

    opened = open_app(world, "pages/imports.py", **{"import": waiting.id})
    assert not opened.exception
    assert not any(NOT_FOUND in w.value for w in opened.warning)
    assert opened.session_state["import_id"] == waiting.id

    other = make_clinic(infra, "beta")
    foreign = _import(infra, other, Role.COORDINATOR, ImportState.PREVIEW)
    refused = open_app(world, "pages/imports.py", **{"import": foreign.id})
    assert not refused.exception
    assert any(NOT_FOUND in w.value for w in refused.warning)
    assert "import_id" not in refused.session_state
