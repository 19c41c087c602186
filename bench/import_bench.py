"""Import speed, measured in one run.

- recording_import_x_realtime: a generated 60 s 1920x1080 30 fps H.264 screen recording with 40
  stage holds goes through the real import analysis (probe, stage detection, staging of the
  candidate frames); the figure is video seconds / wall seconds (goal >= 10).
- staged3d_render_ms_per_frame: two generated arches of ~150k triangles each, rendered at
  1920x1080 (SSAA 2) from the five clinical views for 6 stages; wall ms per view image,
  excluding the one-off renderer set-up.
- itero_import_s: a generated OrthoCAD export as clinics have it (five unlisted 1920x1080 penta
  views, Rx page, logo, two 20 MB binary STL jaw scans) read from its folder, through upload,
  analysis, patient match, import and display renditions, until the version is ready to view.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

from _harness import bench_services

from core.domain import ImportSource, ImportState, RenditionState, Role
from core.fixtures.recordings import make_test_recording
from core.permissions import Actor
from core.services.imports import Upload

SECONDS = 60


def recording_x_realtime() -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp, bench_services() as (services, _env):
        video = Path(tmp) / "capture.mp4"
        # 40 stages × (0.8 s hold + 0.7 s movement) = 60 s
        make_test_recording(video, stages=40, size=(1920, 1080), fps=30, hold_s=0.8, move_s=0.7)
        infra = services.infra
        clinic = infra.create_clinic(name="Bench", slug="bench")
        user = infra.users.create(clinic.id, email="c@bench.test", name="C", role=Role.COORDINATOR)
        patient = infra.patients.create(clinic.id, first_name="B", last_name="Bench", date_of_birth=date(2000, 1, 1),
                                        chart_number="B-1")
        record = services.imports.start(Actor(user), source=ImportSource.RECORDING, patient_id=patient.id,
                                        uploads=[Upload("capture.mp4", video.read_bytes())], name="Bench",
                                        queue_analysis=False)
        start = time.perf_counter()
        analysed = services.imports.analyze(clinic.id, record.id)
        elapsed = time.perf_counter() - start
        assert analysed.state is ImportState.PREVIEW, analysed.error
        return SECONDS / elapsed, len(analysed.candidates)


JAW_BYTES = 20_000_000


def itero_import_seconds() -> tuple[float, int]:
    from core.fixtures.itero import VARIATIONS, make_itero_export
    from core.fixtures.meshes import make_arch_mesh, write_stl

    triangles = (JAW_BYTES - 84) // 50  # a 20 MB binary STL
    jaws = {arch: write_stl(make_arch_mesh(arch, 0, 2, triangles=triangles)) for arch in ("upper", "lower")}
    with tempfile.TemporaryDirectory() as tmp, bench_services() as (services, _env):
        folder = Path(tmp) / "OrthoCAD_Export_70011 (4)"
        make_itero_export(folder, order_id="70011", patient=("Bench", "B"), doctor="Dr. Bench", stl=jaws,
                          variation=VARIATIONS["orthocad"])
        infra = services.infra
        clinic = infra.clinics.create(name="Bench", slug="bench")
        user = infra.users.create(clinic.id, email="c@bench.test", name="C", role=Role.COORDINATOR)
        patient = infra.patients.create(clinic.id, first_name="B", last_name="Bench", date_of_birth=date(2000, 1, 1),
                                        chart_number="CH-4711")
        actor = Actor(user)
        start = time.perf_counter()
        uploads = [Upload(str(p.relative_to(folder.parent)), p.read_bytes()) for p in sorted(folder.iterdir())]
        record = services.imports.start(actor, source=ImportSource.ITERO, patient_id=None, uploads=uploads,
                                        queue_analysis=False)
        analysed = services.imports.analyze(clinic.id, record.id)
        assert analysed.state is ImportState.PREVIEW, analysed.error
        assert analysed.metadata["patientMatch"] == [patient.id], analysed.metadata["matchReason"]
        services.imports.confirm(actor, record.id, order=[c.key for c in analysed.candidates],
                                 patient_id=patient.id, queue=False)
        done = services.imports.commit(clinic.id, record.id)
        assert done.state is ImportState.DONE, done.error
        sim = services.simulations.make_renditions(clinic.id, done.simulationId or "")
        elapsed = time.perf_counter() - start
        assert sim.renditions is RenditionState.READY and sim.frameCount == 5
        scans = infra.assets.list_for_patient(clinic.id, patient.id)
        assert sum(a.size for a in scans if a.contentType == "model/stl") == sum(map(len, jaws.values()))
        return elapsed, sum(len(u.data) for u in uploads)


def staged3d_ms_per_frame() -> float | None:
    from core.fixtures.meshes import make_arch_mesh
    from core.importing.meshes import RenderSpec, StageRenderer, rendering_available

    if rendering_available() is not None:
        print(f"staged 3D: SKIPPED, {rendering_available()}")
        return None
    stages = 6
    meshes = [{arch: make_arch_mesh(arch, s, stages, triangles=150_000) for arch in ("upper", "lower")}
              for s in range(stages)]
    with StageRenderer(RenderSpec(width=1920, height=1080), meshes[0]) as renderer:
        renderer.render(meshes[0])  # warm-up: first upload and shader compilation
        start = time.perf_counter()
        images = 0
        for stage in meshes:
            images += len(renderer.render(stage))
        return (time.perf_counter() - start) * 1000 / images


def main() -> None:
    ratio, stages = recording_x_realtime()
    print(f"recording: {SECONDS} s 1080p30 H.264, {stages} stages detected, {ratio:.1f}x real time")
    itero, size = itero_import_seconds()
    print(f"itero: {size / 1e6:.0f} MB export (5 views, two 20 MB jaws), folder to version ready in {itero:.2f} s")
    ms = staged3d_ms_per_frame()
    print(f"recording_import_x_realtime: {ratio:.1f}")
    print(f"itero_import_s: {itero:.2f}")
    if ms is not None:
        print(f"staged3d_render_ms_per_frame: {ms:.0f}")


if __name__ == "__main__":
    main()
