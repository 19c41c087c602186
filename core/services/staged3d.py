"""Staged 3D models (one STL/PLY/OBJ per arch per stage) → frames rendered from clinical views."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.domain import CLINICAL_VIEWS, AssetKind, ImportCandidate, SimulationImport
from core.errors import ValidationError
from core.imaging import encode_png
from core.importing.limits import ImportLimits
from core.importing.naming import parse_staged_model_name
from core.infra import Infrastructure
from core.permissions import Actor
from core.services.simulations import NewFrame

PREVIEW = (640, 360)
FULL = (1920, 1080)


def _check_rendering() -> None:
    from core.importing.meshes import rendering_available

    missing = rendering_available()
    if missing:
        raise ValidationError(f"Staged 3D models cannot be rendered on this server: {missing}")


def _stages(files: Sequence[tuple[str, bytes]]) -> dict[int, dict[str, tuple[str, bytes]]]:
    """{stage: {"upper"|"lower": (name, data)}} from the file names; refuses names it cannot read."""
    stages: dict[int, dict[str, tuple[str, bytes]]] = {}
    unreadable = []
    for name, data in files:
        parsed = parse_staged_model_name(name)
        if parsed is None:
            unreadable.append(name)
            continue
        arches = stages.setdefault(parsed.stage, {})
        if parsed.arch in arches:
            raise ValidationError(f"Stage {parsed.stage} has two {parsed.arch} models ({arches[parsed.arch][0]} "
                                  f"and {name}); remove one.")
        arches[parsed.arch] = (name, data)
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise ValidationError(f"Could not tell the arch and stage of {shown}. Name files like Upper_Stage_07.stl, "
                              "Maxillary_Step_07.stl or subsetup7_lower.stl.")
    if not stages:
        raise ValidationError("No staged models were found; upload one STL/PLY/OBJ per arch per stage.")
    return dict(sorted(stages.items()))


def _meshes(stage: dict[str, tuple[str, bytes]], limits: ImportLimits) -> dict[str, Any]:
    from core.importing.meshes import load_mesh

    return {arch: load_mesh(data, name=name, max_triangles=limits.max_mesh_triangles)
            for arch, (name, data) in stage.items()}


def analyze_staged(files: Sequence[tuple[str, bytes]], options: dict[str, Any], limits: ImportLimits,
                   progress: Callable[[int, str], None]) -> tuple[list[Any], dict[str, Any]]:
    """Front-view previews of every stage, rendered small, framed once for the whole sequence."""
    from core.importing.meshes import RenderSpec, StageRenderer
    from core.services.imports import _Frame

    _check_rendering()
    stages = _stages(files)
    first = _meshes(next(iter(stages.values())), limits)
    frames = []
    with StageRenderer(RenderSpec(width=PREVIEW[0], height=PREVIEW[1], views=("front",), ssaa=1), first) as renderer:
        for n, (stage, arches) in enumerate(stages.items(), start=1):
            image = renderer.render(_meshes(arches, limits))["front"]
            frames.append(_Frame(stage, "front", image, f"Stage {stage}"))
            progress(round(80 * n / len(stages)), f"rendered preview {n} of {len(stages)}")
    arches = sorted({a for s in stages.values() for a in s})
    return frames, {"sourceSystem": options.get("sourceSystem") or "Staged 3D models", "stages": len(stages),
                    "arches": arches, "stageNumbers": list(stages)}


def render_staged(files: Sequence[tuple[str, bytes]], chosen: Sequence[ImportCandidate], options: dict[str, Any],
                  limits: ImportLimits, progress: Callable[[int, str], None]) -> list[NewFrame]:
    """Every accepted stage rendered at 1920×1080 from the chosen clinical views."""
    from core.importing.meshes import RenderSpec, StageRenderer

    _check_rendering()
    views = tuple(v for v in options.get("views") or CLINICAL_VIEWS if v in CLINICAL_VIEWS)
    if not views:
        raise ValidationError("Pick at least one clinical view to render.")
    stages = _stages(files)
    wanted = [c.stage for c in chosen]
    missing = [s for s in wanted if s not in stages]
    if missing:
        raise ValidationError(f"Stages {missing} are no longer in the upload; start the import again.")
    frames: list[NewFrame] = []
    spec = RenderSpec(width=FULL[0], height=FULL[1], views=views)
    with StageRenderer(spec, _meshes(stages[wanted[0]], limits)) as renderer:
        for n, stage in enumerate(wanted, start=1):
            images = renderer.render(_meshes(stages[stage], limits))
            frames += [NewFrame(stage, view, encode_png(images[view], compression=1), f"Stage {stage}")
                       for view in views]
            progress(round(90 * n / len(wanted)), f"rendered stage {n} of {len(wanted)}")
    return frames


_MODEL_TYPES = {"stl": "model/stl", "ply": "model/ply", "obj": "model/obj"}


def source_models(infra: Infrastructure, actor: Actor, record: SimulationImport, files: Sequence[tuple[str, bytes]], *,
                  chosen: Sequence[ImportCandidate], simulation_id: str) -> list[dict[str, Any]]:
    """The accepted stages' model files as SOURCE assets of the new version (the full-resolution source the
    3D viewer's decimated models are made from). Inserted with the version, in its transaction."""
    stages = _stages(files)
    docs = []
    for stage in dict.fromkeys(c.stage for c in chosen):
        for arch, (name, data) in sorted(stages[stage].items()):
            blob = infra.store.put(data)
            extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            docs.append(infra.assets.new_document(
                actor.clinic_id, patient_id=record.patientId or "", kind=AssetKind.SOURCE,
                content_type=_MODEL_TYPES.get(extension, "application/octet-stream"), size=blob.size,
                sha256=blob.sha256, created_by=actor.id, label=f"{arch.title()} arch · stage {stage}",
                simulation_id=simulation_id, tags=("source", "mesh", arch),
                details={"importId": record.id, "stage": stage, "arch": arch}))
    return docs
