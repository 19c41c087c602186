"""Scratch timing of core.importing.meshes.StageRenderer (not a test).

Renders `--stages` stages of two synthetic arches (make_arch_mesh, ~150k triangles each) in all
five clinical views and prints staged3d_render_ms_per_frame: the average wall time per view image,
excluding the one-off set-up (plotter creation, camera fit) and mesh generation.

    .venv/bin/python bench/staged3d_probe.py [--width 1920 --height 1080 --ssaa 2 --stages 6]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.importing.mesh_testing import make_arch_mesh
from core.importing.meshes import RenderSpec, StageRenderer, rendering_available


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--ssaa", type=int, default=2)
    parser.add_argument("--stages", type=int, default=6)
    parser.add_argument("--triangles", type=int, default=150_000)
    parser.add_argument("--save", type=Path, default=None, help="write the last stage's views as PNG here")
    args = parser.parse_args()
    problem = rendering_available()
    if problem:  # `make bench` runs every script: skip loudly instead of failing the batch
        print(f"SKIPPED staged3d_render_ms_per_frame: 3D RENDERING UNAVAILABLE: {problem}")
        return
    stages = [{arch: make_arch_mesh(arch, stage, args.stages, triangles=args.triangles) for arch in ("upper", "lower")}
              for stage in range(args.stages)]
    spec = RenderSpec(width=args.width, height=args.height, ssaa=args.ssaa)
    started = time.perf_counter()
    with StageRenderer(spec, stages[0]) as renderer:
        setup = time.perf_counter() - started
        renderer.render(stages[0])  # warm-up: first upload of the geometry and shader compilation
        warm = time.perf_counter() - started - setup
        per_stage = []
        for meshes in stages:
            tick = time.perf_counter()
            images = renderer.render(meshes)
            per_stage.append(time.perf_counter() - tick)
    frames = len(per_stage) * len(spec.views)
    ms = 1000 * sum(per_stage) / frames
    triangles = sum(m.triangle_count for m in stages[0].values())
    print(f"{args.width}x{args.height} ssaa={args.ssaa} views={len(spec.views)} stages={len(per_stage)} "
          f"triangles={triangles:,} setup={setup:.2f}s first_render={warm:.2f}s "
          f"stage_s=[{', '.join(f'{t:.2f}' for t in per_stage)}]")
    print(f"staged3d_render_ms_per_frame={ms:.0f}")
    if args.save:
        import cv2

        args.save.mkdir(parents=True, exist_ok=True)
        for view, image in images.items():
            cv2.imwrite(str(args.save / f"bench_{view}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
