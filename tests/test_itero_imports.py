"""iTero / OrthoCAD exports as clinics have them, end to end: every generated variation imports
through the service, the CLI (folder and ZIP) and the Import page, with its frames, facts, patient
match and gallery entries; and the patient matching rules on their own."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.cli import EXIT_IMPORTED, EXIT_UNMATCHED, main
from core.config import PROJECT_ROOT
from core.domain import AssetKind, ImportSource, ImportState, Role
from core.fixtures.itero import VARIATIONS, VIEWS, IteroVariation, make_itero_export
from core.importing.itero import ExportPatient
from core.services.imports import Upload
from core.services.itero import VIEW_LABELS, match_patient
from core.services.visuals import asset_facts
from tests.factories import make_clinic

ORDER = "70011"
APP = PROJECT_ROOT / "app.py"
VIEW_SIZE = (320, 180)


@pytest.fixture
def world(infra):
    world = make_clinic(infra)
    patient = infra.patients.create(world.clinic.id, first_name="Alex", last_name="Example",
                                    date_of_birth=date(2009, 4, 17), chart_number="CH-4711")
    # Same last name, other first name: a name match must use both names.
    infra.patients.create(world.clinic.id, first_name="Sam", last_name="Example", date_of_birth=date(2011, 1, 2),
                          chart_number="CH-4712")
    return world, patient


def _export(tmp_path: Path, spec: IteroVariation) -> Path:
    """The export folder, written as the variation says (inside tmp_path/<variation>/)."""
    folder = tmp_path / spec.name / spec.folder_name(ORDER)
    make_itero_export(folder, order_id=ORDER, patient=("Example", "Alex"), doctor="Dr. Sample, Pat",
                      variation=spec, view_size=VIEW_SIZE)
    return folder


def _uploads(folder: Path, *, with_folder: bool) -> list[Upload]:
    base = folder.parent if with_folder else folder
    return [Upload(str(p.relative_to(base)), p.read_bytes()) for p in sorted(folder.iterdir())]


def _zip(folder: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{folder.name}/{path.name}")
    target = folder.parent / f"{folder.name}.zip"
    target.write_bytes(buffer.getvalue())
    return target


def _reason(spec: IteroVariation) -> str:
    if spec.chart_number:
        return "The chart number and the name match."
    if not spec.rx:
        return "The name (in either order) matches (the export has no date of birth)."
    return "The name matches (the export has no date of birth)."


def _check_version(services, infra, world, patient, sim_id: str, spec: IteroVariation) -> None:
    """The version, the patient's gallery and the comparison picker after importing `spec`."""
    actor = world.actor()
    sim = services.simulations.get(actor, sim_id)
    assert sim.patientId == patient.id and sim.sourceSystem == "iTero" and sim.sourceId == ORDER
    assert sorted(f.view for f in sim.frames) == sorted(VIEWS)
    assert {f.label for f in sim.frames} == set(VIEW_LABELS.values())
    assert (sim.frames[0].width, sim.frames[0].height) == VIEW_SIZE
    for key in ("patientMatch", "matchReason", "exportPatient", "warnings"):
        assert key not in sim.metadata  # matching facts stay with the import, not the version
    assert sim.metadata["itero"]["orderId"] == ORDER
    items = [item.asset for item in services.visuals.gallery(actor, patient.id)]
    mine = [a for a in items if a.details.get("scanId") == sim.scanId or a.id == sim.scanId]
    photos = [a for a in mine if a.kind is AssetKind.PHOTO]
    assert sorted(a.details["view"] for a in photos) == sorted(VIEWS)
    assert all("before" in a.tags and a.contentType == "image/png" for a in photos)
    meshes = [a for a in mine if a.kind is AssetKind.SCAN and a.contentType == "model/stl"]
    assert sorted(a.details["jaw"] for a in meshes) == sorted(spec.usable_jaws)
    for mesh in meshes:
        assert asset_facts(mesh)[0] == f"{mesh.details['triangles']:,} triangles" and mesh.details["triangles"] >= 4
    manifest = next(a for a in mine if a.id == sim.scanId)
    assert asset_facts(manifest) == [f"iTero manifest · order {ORDER}"]
    before = services.visuals.before_candidates(actor, patient.id)
    assert {a.id for a in photos} <= {a.id for a in before}
    assert not any(a.contentType in ("model/stl", "application/xml") for a in before)


# --- the service --------------------------------------------------------------------------------


@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_each_variation_imports_through_the_service(variation, services, infra, world, tmp_path):
    world, patient = world
    spec = VARIATIONS[variation]
    folder = _export(tmp_path, spec)
    record = services.imports.start(world.actor(), source=ImportSource.ITERO, patient_id=None,
                                    uploads=_uploads(folder, with_folder=True), queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)

    assert analysed.state is ImportState.PREVIEW, analysed.error
    assert sorted(c.view for c in analysed.candidates) == sorted(VIEWS)
    itero = analysed.metadata["itero"]
    assert (itero["orderId"], itero["doctor"]) == (ORDER, "Dr. Sample, Pat")
    assert itero["scanDate"] == (spec.scan_date.isoformat() if spec.scan_date else None)
    offset = {"-5": "-05:00", "0": "+00:00"}.get(spec.utc_offset or "")
    assert itero["exportTime"] == "2024-03-05T14:22:10" + (offset or "")
    assert itero["utcOffset"] == offset
    assert len(itero["unlistedViews"]) == (0 if spec.list_views else 5)
    assert itero["ignored"] == (["itero_element_logo.png"] if spec.logo else [])
    assert [j["arch"] for j in itero["jaws"] if j["status"] == "ok"] == list(spec.usable_jaws)
    assert analysed.metadata["patientMatch"] == [patient.id]
    assert analysed.metadata["matchReason"] == _reason(spec)
    assert len(analysed.metadata["warnings"]) == 2 - len(spec.usable_jaws)

    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates],
                             patient_id=patient.id, queue=False)
    done = services.imports.commit(world.clinic.id, record.id)
    assert done.state is ImportState.DONE, done.error
    assert done.name == f"iTero scan · order {ORDER}"  # no name given: named after the order
    _check_version(services, infra, world, patient, done.simulationId, spec)
    kept = {f.sha256 for f in done.files}
    assert not any(infra.store.exists(sha) for sha in kept
                   if not infra.assets.sha256_in_use(sha))  # broken jaws and the Rx page are not kept


# --- the CLI, on a folder and on a ZIP ----------------------------------------------------------


def _cli(env: dict[str, str], monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(["import", "--as", "coordinator@alpha.test", "--source", "itero", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_each_variation_imports_through_the_cli_as_folder_and_zip(variation, env, services, infra, world, tmp_path,
                                                                  monkeypatch, capsys):
    world, patient = world
    spec = VARIATIONS[variation]
    folder = _export(tmp_path, spec)

    for version, path in enumerate((folder, _zip(folder)), start=1):
        code, out, err = _cli(env, monkeypatch, capsys, str(path))
        assert code == EXIT_IMPORTED, err + out
        assert "found 5 frames" in out
        assert f"iTero order {ORDER}" in out and "5 views" in out
        assert f"patient match: {_reason(spec)}" in out
        assert f"importing for the matched patient {patient.id}" in out
        assert out.count("warning: ") == 2 - len(spec.usable_jaws)
        assert "Example" not in out + err  # the patient's name is never printed
        last = out.strip().splitlines()[-1]
        assert last.startswith("imported simulation ") and last.endswith(f"version {version} (5 frames)")
        _check_version(services, infra, world, patient, last.split()[2], spec)
    assert infra.db.simulations.count_documents({}) == 2


def test_an_unmatched_cli_import_waits_in_the_unmatched_queue(env, services, infra, world, tmp_path, monkeypatch,
                                                             capsys):
    world, _ = world
    spec = VARIATIONS["manifest-only"]
    folder = tmp_path / "export"
    make_itero_export(folder, order_id=ORDER, patient=("Nobody", "Known"), doctor="Dr. Sample, Pat", variation=spec,
                      view_size=VIEW_SIZE)
    code, out, err = _cli(env, monkeypatch, capsys, str(folder))
    assert code == EXIT_UNMATCHED, err + out
    assert "patient match: No patient in your clinic has this name, in either order." in out
    waiting = services.integrations.unmatched(world.actor())
    assert len(waiting) == 1 and f"import {waiting[0].id} waits for a patient" in out
    assert waiting[0].state is ImportState.UNMATCHED and waiting[0].patientId is None
    assert [r.id for r in services.imports.unassigned(world.actor())] == [waiting[0].id]
    assert all(infra.store.exists(f.sha256) for f in waiting[0].files)  # kept until someone assigns it
    assert infra.db.simulations.count_documents({}) == 0

    # A coordinator assigns the patient: the import goes through as any other.
    record = services.imports.get(world.actor(), waiting[0].id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in record.candidates],
                             patient_id=world.patient.id, queue=False)
    assert services.imports.commit(world.clinic.id, record.id).state is ImportState.DONE


# --- the Import page ----------------------------------------------------------------------------


def _shown(markdown: str) -> str:
    """Markdown source as the reader sees it: backslash escapes removed (`md` escapes user text)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _signed_in(world, role: Role = Role.COORDINATOR) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["user_id"] = world.users[role].id
    return at


@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_each_variation_imports_through_the_import_page(variation, app_env, services, infra, world, tmp_path):
    world, patient = world
    spec = VARIATIONS[variation]
    folder = _export(tmp_path, spec)
    # A browser upload of the folder's files (base names only); the button's service call.
    record = services.imports.start(world.actor(), source=ImportSource.ITERO, patient_id=None,
                                    uploads=_uploads(folder, with_folder=False), name="", queue_analysis=False)
    services.imports.analyze(world.clinic.id, record.id)

    at = _signed_in(world).run()
    at.switch_page("pages/imports.py").run()
    at.session_state["import_id"] = record.id
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = _shown(next(m.value for m in at.markdown if m.value.startswith("**iTero export**")))
    assert f"order {ORDER}" in summary and "5 scanner views" in summary
    if spec.scan_date:
        assert f"scanned {spec.scan_date.isoformat()}" in summary
    if not spec.list_views:
        assert "5 found in the folder, not in the manifest" in summary
    proposal = _shown(next(i.value for i in at.info if "Export for" in i.value))
    assert "Export for **Example, Alex**" in proposal or "Export for **Alex, Example**" in proposal
    assert "the patient below is proposed" in proposal and _reason(spec) in proposal
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 2 - len(spec.usable_jaws)
    assert all("jaw scan" in w for w in warnings)
    assert at.selectbox(key=f"patient-{record.id}").value == patient.id
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    assert sorted(map(_shown, captions)) == sorted(f"{n}. {label}" for n, label in enumerate(VIEW_LABELS.values(), 1))

    next(b for b in at.button if b.label.startswith("Import 5 frames")).click().run()
    assert not at.exception and not at.error
    importing = services.imports.get(world.actor(), record.id)
    assert importing.state is ImportState.IMPORTING and importing.patientId == patient.id
    done = services.imports.commit(world.clinic.id, record.id)  # what the worker's job does
    _check_version(services, infra, world, patient, done.simulationId, spec)

    at.session_state["patient_id"] = patient.id
    at.switch_page("pages/gallery.py").run()
    assert not at.exception and not at.error
    labels = " ".join(_shown(m.value) for m in at.markdown)
    for label in VIEW_LABELS.values():
        assert f"**{label}**" in labels
    captions = " ".join(_shown(c.value) for c in at.caption)
    assert "None × None" not in captions
    assert f"iTero manifest · order {ORDER}" in captions
    assert captions.count(" triangles") == len(spec.usable_jaws)
    assert "frontal view" in captions


def test_scanner_views_are_offered_as_before_photos_in_the_comparison(app_env, services, infra, world, tmp_path):
    world, patient = world
    folder = _export(tmp_path, VARIATIONS["orthocad"])
    record = services.imports.start(world.actor(), source=ImportSource.ITERO, patient_id=None,
                                    uploads=_uploads(folder, with_folder=True), queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates],
                             patient_id=patient.id, queue=False)
    sim_id = services.imports.commit(world.clinic.id, record.id).simulationId
    services.simulations.make_renditions(world.clinic.id, sim_id)

    at = _signed_in(world)
    at.session_state["patient_id"] = patient.id
    at.session_state["simulation_id"] = sim_id
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    before = next(s for s in at.selectbox if s.label == "Before")
    assert sorted(before.options[1:]) == sorted(f"Photo · {label}" for label in VIEW_LABELS.values())
    before.select(before.options[before.options.index("Photo · iTero frontal")]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]


# --- matching rules -----------------------------------------------------------------------------


def test_matching_prefers_the_chart_number_then_names_in_either_order_with_the_date_of_birth(services, infra):
    world = make_clinic(infra)
    clinic = world.clinic.id

    def patient(last: str, first: str, born: date, chart: str) -> str:
        return infra.patients.create(clinic, first_name=first, last_name=last, date_of_birth=born,
                                     chart_number=chart).id

    roe = patient("Roe", "Kim", date(2010, 5, 6), "A-1")
    kim_roe = patient("Kim", "Roe", date(2012, 7, 8), "A-2")  # the same two names, the other way round
    roe_twin = patient("Roe", "Kim", date(2014, 1, 1), "A-3")

    def who(*names: tuple[str, str], known: bool = True, chart: str | None = None,
            born: date | None = None) -> ExportPatient:
        return ExportPatient(", ".join(names[0]), tuple(names), known, chart, born)

    by_chart = match_patient(infra, clinic, who(("roe", "KIM"), chart="A-3"))
    assert (by_chart.unique, by_chart.reason) == (roe_twin, "The chart number and the name match.")
    wrong_chart = match_patient(infra, clinic, who(("Roe", "Kim"), chart="A-2", born=date(2010, 5, 6)))
    assert wrong_chart.unique == roe
    assert wrong_chart.reason == ("The chart number on the export belongs to a patient with another name; the name "
                                  "and the date of birth match.")
    unknown_chart = match_patient(infra, clinic, who(("Roe", "Kim"), chart="Z-9"))
    assert unknown_chart.unique is None and set(unknown_chart.patient_ids) == {roe, roe_twin}
    assert unknown_chart.reason == ("No patient has the chart number on the export; 2 patients share the name; "
                                    "choose one.")
    either = match_patient(infra, clinic, who(("Roe", "Kim"), ("Kim", "Roe"), known=False, born=date(2012, 7, 8)))
    assert (either.unique, either.reason) == (kim_roe, "The name (in either order) and the date of birth match.")
    other_birthday = match_patient(infra, clinic, who(("Kim", "Roe"), born=date(2000, 1, 1)))
    assert other_birthday.patient_ids == ()
    assert other_birthday.reason == "The name matches, but not the date of birth; choose the patient."
    nobody = match_patient(infra, clinic, who(("Doe", "Jo"), ("Jo", "Doe"), known=False))
    assert nobody == type(nobody)((), "No patient in your clinic has this name, in either order.")
    other_clinic = make_clinic(infra, "beta", chart="B-1")
    assert match_patient(infra, other_clinic.clinic.id, who(("Roe", "Kim"), chart="A-1")).patient_ids == ()
