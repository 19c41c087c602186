"""Viewer scrubbing, comparison previews and a 300-DPI A4 comparison export, measured in one run.

Source frames are 4K (3840x2160), 40 stages; server time is measured through Streamlit's AppTest
(the whole script rerun a slider change causes) and through the service for the export.
"""

from __future__ import annotations

import os
import time

import numpy as np
from _harness import bench_services, p95, timed

from core.demo.arches import ArchCase, render_stage
from core.domain import Role, SimulationType
from core.imaging import encode_png
from core.imaging.compose import ComparisonSpec
from core.permissions import Actor
from core.services.simulations import NewFrame
from core.services.visuals import BeforeRef, ComparisonRequest, OutputSpec

STAGES = 40
SAMPLES = 40


def main() -> None:
    with bench_services() as (services, env):
        infra = services.infra
        clinic = infra.create_clinic(name="Bench clinic", slug="bench")
        user = infra.users.create(clinic.id, email="c@bench.test", name="C", role=Role.COORDINATOR)
        from datetime import date

        patient = infra.patients.create(clinic.id, first_name="B", last_name="Bench", date_of_birth=date(2000, 1, 1),
                                        chart_number="B-1")
        actor = Actor(user)
        case = ArchCase(seed=5, crowding=1.2)
        # Rendering 40 distinct 4K frames would dominate the run: render 8 and reuse them as stages
        # (each stage still gets its own stored frame and rendition).
        keyframes = [encode_png(render_stage(case, s, 8, "front", (3840, 2160)), compression=1) for s in range(8)]
        frames = [NewFrame(s, "front", keyframes[s * 8 // STAGES]) for s in range(STAGES)]
        sim = services.simulations.create_version(
            actor, patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
            name="Bench 4K", frames=frames, queue_renditions=False)
        services.simulations.make_renditions(clinic.id, sim.id)
        infra.db.simulations.update_one({}, {"$set": {"isApproved": True}})

        os.environ.update(env)
        from streamlit.runtime.scriptrunner.script_runner import ScriptRunner
        from streamlit.testing.v1 import AppTest

        # Server time = the script run itself, in the runner thread (AppTest's own polling excluded).
        runs: list[float] = []
        original = ScriptRunner._run_script

        def timed_run(self, rerun_data):
            start = time.perf_counter()
            try:
                return original(self, rerun_data)
            finally:
                runs.append((time.perf_counter() - start) * 1000)

        ScriptRunner._run_script = timed_run

        app = os.path.join(os.path.dirname(__file__), "..", "app.py")
        at = AppTest.from_file(app, default_timeout=60)
        at.session_state["user_id"] = user.id
        at.run()
        at.switch_page("pages/simulation.py").run()
        slider = at.slider[0]
        scrub = []
        rng = np.random.default_rng(1)
        for value in rng.integers(0, STAGES, SAMPLES):
            slider.set_value(int(value)).run()
            scrub.append(runs[-1])
            slider = at.slider[0]
        assert not at.exception, at.exception

        at.switch_page("pages/compare.py").run()
        at.get("button_group")[0].set_value("split").run()
        previews = []
        for value in np.linspace(0.05, 0.95, SAMPLES):
            divider = at.slider(key=next(s.key for s in at.slider if s.key.startswith("divider-")))
            divider.set_value(float(round(value, 2))).run()
            previews.append(runs[-1])
        assert not at.exception, at.exception

        request = ComparisonRequest(before=BeforeRef(frame_index=0), predicted=(STAGES - 1,),
                                    layout=ComparisonSpec(layout="side_by_side", title="Your predicted smile"),
                                    output=OutputSpec(size="a4", orientation="landscape", fmt="png"))
        a4 = timed(lambda: services.visuals.export_comparison(actor, sim.id, request))

    print(f"viewer scrub (whole-page script rerun per slider change, 4K sources): median "
          f"{np.median(scrub):.1f} ms over {len(scrub)} changes")
    print(f"comparison preview (whole-page script rerun per divider change): median {np.median(previews):.1f} ms")
    print(f"scrub_p95_ms: {p95(scrub):.1f}")
    print(f"compare_preview_p95_ms: {p95(previews):.1f}")
    print(f"a4_comparison_export_s: {a4:.2f}")


if __name__ == "__main__":
    main()
