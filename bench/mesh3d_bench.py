"""3D stage viewer speed and size, measured in one run on real embedded servers.

- mesh3d_stage_switch_ms_p95: server time to produce the figure of a stage not seen before (model set
  record, asset records, two stored MESH blobs read and decoded, Plotly figure built and serialised
  to the JSON Streamlit sends) for two arches decimated to 40k triangles each from 150k; p95 over
  every stage visited in a shuffled order, decode cache emptied before each (goal <= 100).
- mesh3d_payload_kb: that JSON per stage in KiB (plain view; goal <= 1500). Movement-map and ghost
  payloads are printed for information.
- decimate_s_per_arch: one 150k-triangle arch from its binary STL bytes to the 40k-triangle model
  (parse, renumber, quadric decimation), median of 3.
"""

from __future__ import annotations

import random
import statistics
import time

import plotly.io as pio
from _harness import bench_services, p95

from core.domain import AssetKind, Role, SimulationType
from core.imaging import encode_png
from core.importing.mesh_testing import make_arch_mesh, write_stl
from core.importing.meshes import load_mesh
from core.mesh3d.decimate import decimate_arch
from core.services.mesh3d import ModelView
from core.services.simulations import NewFrame
from tests.factories import make_clinic

STAGES = 16
TRIANGLES = 150_000


def decimate_seconds(stl: bytes) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = decimate_arch(lambda _i: load_mesh(stl, name="arch"), 1)
        times.append(time.perf_counter() - start)
        assert result[0].triangle_count <= 40_000
    return statistics.median(times)


def main() -> None:
    import numpy as np

    stls = {(arch, stage): write_stl(make_arch_mesh(arch, stage, STAGES, triangles=TRIANGLES))
            for arch in ("upper", "lower") for stage in range(STAGES)}
    decimate_s = decimate_seconds(stls[("upper", 0)])
    with bench_services() as (services, _env):
        infra = services.infra
        world = make_clinic(infra, "bench")  # clinic, one user per role, a patient
        clinic, patient, actor = world.clinic, world.patient, world.actor(Role.COORDINATOR)
        # A staged version as the import leaves it: frames, and every model file as a SOURCE asset of the version.
        sim_id = "65a000000000000000000001"
        sources = []
        for (arch, stage), data in stls.items():
            blob = infra.store.put(data)
            sources.append(infra.assets.new_document(
                clinic.id, patient_id=patient.id, kind=AssetKind.SOURCE, content_type="model/stl", size=blob.size,
                sha256=blob.sha256, created_by=actor.id, simulation_id=sim_id, tags=("source", "mesh", arch),
                details={"stage": stage, "arch": arch}))
        frame = encode_png(np.full((90, 160, 3), 120, np.uint8))
        services.simulations.create_version(
            actor, patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER, name="Bench",
            frames=[NewFrame(s, "front", frame) for s in range(STAGES)], metadata={"importSource": "staged-3d"},
            queue_renditions=False, extra_assets=sources, simulation_id=sim_id)
        infra.mesh_sets.create(clinic.id, sim_id, patient_id=patient.id)
        start = time.perf_counter()
        record = services.meshes.prepare(clinic.id, sim_id)
        prepare_s = time.perf_counter() - start
        assert all(39_000 < t <= 40_000 for t in record.triangles.values()), record.triangles

        def switch(position: int, **options: bool) -> tuple[float, int]:
            services.meshes._packed = type(services.meshes._packed)(96)  # a stage not seen before: cold cache
            begin = time.perf_counter()
            figure, _ = services.meshes.figure(actor, sim_id, ModelView(position=position, **options))
            payload = pio.to_json(figure, validate=False)  # what st.plotly_chart sends
            return (time.perf_counter() - begin) * 1000, len(payload)

        switch(0)  # warm-up: imports, validators
        order = list(range(STAGES)) * 2
        random.Random(7).shuffle(order)
        samples = [switch(position) for position in order]
        times = [ms for ms, _ in samples]
        payload_kb = max(size for _, size in samples) / 1024
        movement_kb = switch(STAGES // 2, movement=True)[1] / 1024
        ghost_kb = switch(STAGES // 2, ghost=True)[1] / 1024
    print(f"prepare: {STAGES} stages x 2 arches of {TRIANGLES:,} triangles in {prepare_s:.1f} s "
          f"({prepare_s / (2 * STAGES):.2f} s per arch and stage, shared topology)")
    print(f"stage switch: median {statistics.median(times):.1f} ms over {len(times)} cold switches; "
          f"payload plain {payload_kb:.0f} KiB, movement map {movement_kb:.0f} KiB, with ghost {ghost_kb:.0f} KiB")
    print(f"mesh3d_stage_switch_ms_p95: {p95(times):.1f}")
    print(f"mesh3d_payload_kb: {payload_kb:.0f}")
    print(f"decimate_s_per_arch: {decimate_s:.2f}")


if __name__ == "__main__":
    main()
