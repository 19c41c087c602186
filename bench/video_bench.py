"""Video export job vs the encoder's own cost vs a naive pipeline, plus GIF and PDF, in one run.

- ours: the real export job body (`ExportService.run`): reads the 40 stored 1080p stage frames from
  the asset store, burns in captions/stamp, renders the 1080p30 crossfade video through ffmpeg and
  commits the file and the export record to the embedded database — everything the worker does.
- floor: ffmpeg alone encoding exactly the frames the job sends (precomputed, same argv).
- naive: a moviepy-style per-frame composition (the stored stage images loaded once each, then
  Pillow resize/blend/draw per output frame, written through imageio-ffmpeg) with the same encoder
  settings; moviepy itself cannot be installed next to our Pillow 13, so this equivalent stands in
  for it (see bench/video_floor.py).
Best of three runs for ours and the floor (alternating, so both see the same machine load).
"""

from __future__ import annotations

import io
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from _harness import bench_services
from PIL import Image
from video_floor import OUR_ENCODER, demo_stages, ffmpeg_floor, naive_render, pdf10, precomputed_frames

from core.domain import ExportState, ExportType, Role, SimulationType
from core.imaging import encode_png
from core.imaging.overlays import apply_overlays
from core.permissions import Actor
from core.rendering import ListSource
from core.rendering.gif import GifSpec, render_gif
from core.rendering.video import plan
from core.services.exports import RenderRequest
from core.services.simulations import NewFrame

STAGES = 40


def main() -> None:
    frames = demo_stages(STAGES, (1920, 1080))
    with bench_services() as (services, _env), tempfile.TemporaryDirectory() as tmp:
        infra = services.infra
        clinic = infra.create_clinic(name="Bench Orthodontics", slug="bench")
        users = {r: infra.users.create(clinic.id, email=f"{r.value}@b.test", name=r.value, role=r) for r in Role}
        patient = infra.patients.create(clinic.id, first_name="B", last_name="Bench", date_of_birth=date(2000, 1, 1),
                                        chart_number="B-1")
        actor = Actor(users[Role.COORDINATOR])
        sim = services.simulations.create_version(
            actor, patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER, name="Bench",
            frames=[NewFrame(s, "front", encode_png(f, compression=1)) for s, f in enumerate(frames)],
            queue_renditions=False)
        sim = services.review.approve(Actor(users[Role.DOCTOR]), sim.id)
        request = RenderRequest(ExportType.VIDEO, preset="1080p", fps=30, seconds_per_stage=0.5,
                                transition="crossfade", title_card=False, end_card=False, hold_final_seconds=1.5)
        spec = services.exports._video_spec(request, clinic.name)  # the job's exact spec

        def overlay(rgb, stage):  # the job's overlay, so the floor encodes the same frames
            label = f"Stage {stage} of {STAGES - 1}"
            return apply_overlays(rgb, services.visuals.overlay_spec(actor, sim, request.overlays, label))

        i420 = precomputed_frames(frames, spec, overlay)
        ours_runs, floor_runs, cpu_runs = [], [], []
        for _ in range(3):
            infra.db.simulation_exports.delete_many({})
            infra.db.imaging_assets.delete_many({"kind": "EXPORT"})
            export = services.exports.request(actor, sim.id, request)
            start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            done = services.exports.run(clinic.id, export.id)
            ours_runs.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_SELF)  # this process only: not ffmpeg (a child)
            cpu_runs.append(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime)
            assert done.state is ExportState.DONE, done.error
            floor_runs.append(ffmpeg_floor(i420, spec, Path(tmp) / "floor.mp4"))
        ours, floor = min(ours_runs), min(floor_runs)
        the_plan = plan(spec, STAGES)
        stored = [infra.store.get(infra.assets.get(clinic.id, f.assetId).sha256) for f in sim.frames]
        start = time.perf_counter()
        # Like ours, the naive pipeline starts from the stored stage images (loaded once each, as a
        # moviepy ImageClip would), then composes every output frame from scratch.
        loaded = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in stored]
        naive_render(loaded, the_plan, (1920, 1080), Path(tmp) / "naive.mp4", OUR_ENCODER)
        naive = time.perf_counter() - start
        start = time.perf_counter()
        gif = render_gif(ListSource(frames), GifSpec(), Path(tmp) / "stages.gif", overlay=overlay)
        gif_seconds = time.perf_counter() - start
        pdf_seconds = pdf10(frames, Path(tmp) / "ten.pdf")
    print(f"frames: {the_plan.frame_count} at 1920x1080, 30 fps ({the_plan.duration_s:.1f} s of video)")
    print(f"export job: {ours:.2f} s (runs {', '.join(f'{r:.2f}' for r in ours_runs)}); ffmpeg alone: {floor:.2f} s "
          f"(runs {', '.join(f'{r:.2f}' for r in floor_runs)}); naive: {naive:.2f} s")
    print(f"gif: {gif.width}x{gif.height} @ {gif.fps} fps, {gif.frames} frames; tried {list(gif.attempts)}")
    print(f"video_job_over_ffmpeg_floor: {ours / floor:.2f}")
    # The job's own CPU (reading, decoding, captioning, I420, crossfades), which competes with x264 for the
    # cores; less sensitive to other load on the machine than the wall-clock ratio.
    print(f"video_job_own_cpu_s: {min(cpu_runs):.2f}")
    print(f"naive_over_video_job: {naive / ours:.2f}")
    print(f"gif_seconds: {gif_seconds:.2f}")
    print(f"gif_megabytes: {gif.bytes / 2**20:.2f}")
    print(f"pdf10_seconds: {pdf_seconds:.2f}")


if __name__ == "__main__":
    main()
