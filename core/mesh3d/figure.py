"""The Plotly figure of one stage: upper and lower arch as `Mesh3d`, optionally coloured by movement,
optionally with the final stage as a translucent ghost, seen from a clinical camera preset.

The camera is orthographic (Plotly's perspective is a wide 45° lens that bulges the near side of an
arch; clinical views are taken with long lenses) and the scene box is fixed from the model set's
bounds over every stage, so playing the stages never moves or rescales the view.

Vertices go to the browser as the stored uint16 grid coordinates (one isotropic step on every axis,
so the scene keeps its proportions) and triangles as uint16/uint32: Plotly serialises numpy arrays
as base64 typed arrays, so a stage of two 40k-triangle arches is about 1 MB of JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go

from core.domain import CLINICAL_VIEWS
from core.errors import ValidationError
from core.mesh3d import movement
from core.mesh3d.pack import PackedMesh

ARCH_ORDER: Final = ("upper", "lower")
TOOTH_COLOR: Final = "rgb(240,235,220)"
GHOST_COLOR: Final = "rgb(158,199,242)"
GHOST_OPACITY: Final = 0.25
BACKGROUND: Final = "rgb(47,55,66)"
#: Camera distance from the scene's centre, in Plotly's normalised scene units (orthographic: only a direction).
_EYE_DISTANCE: Final = 2.0
#: How much of the plot the model fills: Plotly's orthographic zoom is the scene box's aspect ratio.
_FILL: Final = 2.3
#: Width / height of the narrowest plot the fill is sized for (a 560 px high chart in a ~700 px column):
#: the scale follows the plot's height, so a wider column only adds room at the sides.
_PLOT_ASPECT: Final = 1.25
#: Share of the plot's width the scene keeps when the colour legend takes the right-hand strip.
_LEGEND_DOMAIN: Final = 0.86
#: Which arches each clinical view shows (occlusal views show their own arch only, like the photographs).
VIEW_ARCHES: Final[dict[str, tuple[str, ...]]] = {"front": ARCH_ORDER, "left": ARCH_ORDER, "right": ARCH_ORDER,
                                                  "upper": ("upper",), "lower": ("lower",)}


@dataclass(frozen=True)
class Axes:
    """The model's anatomical frame (unit vectors in model coordinates): patient's right, anterior, up."""

    right: tuple[float, float, float] = (1.0, 0.0, 0.0)
    anterior: tuple[float, float, float] = (0.0, 1.0, 0.0)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


def camera(view: str, axes: Axes = Axes()) -> dict[str, Any]:
    """Plotly `scene.camera` for a clinical view, in the same conventions as the offscreen renders:
    front faces the incisors; left/right look from the patient's left/right; the occlusal views show
    the upper arch from below (incisors at the top) and the lower arch from above (incisors at the bottom)."""
    if view not in CLINICAL_VIEWS:
        raise ValidationError(f"Unknown view {view!r}; choose one of {', '.join(CLINICAL_VIEWS)}.")
    right, anterior, up = (np.asarray(v, np.float64) for v in (axes.right, axes.anterior, axes.up))
    towards, screen_up = {"front": (anterior, up), "left": (-right, up), "right": (right, up),
                          "upper": (-up, anterior), "lower": (up, -anterior)}[view]
    eye = towards * _EYE_DISTANCE
    return {"eye": _xyz(eye), "up": _xyz(screen_up), "center": {"x": 0, "y": 0, "z": 0},
            "projection": {"type": "orthographic"}}


def _xyz(vector: np.ndarray) -> dict[str, float]:
    return {"x": round(float(vector[0]), 4), "y": round(float(vector[1]), 4), "z": round(float(vector[2]), 4)}


def _scene_box(view: str, boxes: list[np.ndarray], axes: Axes, *, width_share: float = 1.0) -> dict[str, Any]:
    """Fixed axis ranges around `boxes` ((6,) x0 y0 z0 x1 y1 z1 each) and the aspect ratio that makes the
    orthographic camera fill the plot from `view`."""
    low = np.min([b[:3] for b in boxes], axis=0).astype(np.float64)
    high = np.max([b[3:] for b in boxes], axis=0).astype(np.float64)
    pad = 0.03 * float((high - low).max())
    low, high = low - pad, high + pad
    extent = high - low
    relative = extent / extent.max()
    right, anterior, up = (np.abs(np.asarray(v, np.float64)) for v in (axes.right, axes.anterior, axes.up))
    across, upward = {"front": (right, up), "left": (anterior, up), "right": (anterior, up),
                      "upper": (right, anterior), "lower": (right, anterior)}[view]
    needed = max(float(across @ relative) / width_share, float(upward @ relative) * _PLOT_ASPECT)
    ratio = relative * _FILL / max(needed, 1e-6)
    return {"aspectmode": "manual", "aspectratio": {"x": float(ratio[0]), "y": float(ratio[1]), "z": float(ratio[2])},
            **{axis: {"range": [float(low[i]), float(high[i])], "autorange": False}
               for i, axis in enumerate(("xaxis", "yaxis", "zaxis"))}}


def stage_figure(stage: Mapping[str, PackedMesh], *, view: str = "front", axes: Axes = Axes(),
                 movement_max: float | None = None, ghost: Mapping[str, PackedMesh] | None = None,
                 bounds: Mapping[str, tuple[int, ...]] | None = None, height: int = 560,
                 revision: str = "mesh3d") -> go.Figure:
    """The figure of one stage. `movement_max` (mm) colours the arches by movement on a 0..max scale with a
    legend; `ghost` draws those meshes (the final stage) translucent over the stage; `bounds` (per arch, over
    every stage, grid units) fix the scene box so the view holds still from stage to stage."""
    if not stage:
        raise ValidationError("This stage has no arch to show.")
    arches = [arch for arch in ARCH_ORDER if arch in stage and arch in VIEW_ARCHES[view]]
    if not arches:  # e.g. the upper occlusal view of a lower-only model: show what there is
        arches = [arch for arch in ARCH_ORDER if arch in stage]
    traces: list[go.Mesh3d] = []
    for n, arch in enumerate(arches):
        traces.append(_arch_trace(stage[arch], arch, movement_max=movement_max, legend=n == 0))
    for arch in arches:
        if ghost and arch in ghost:
            traces.append(_ghost_trace(ghost[arch], arch))
    boxes = [np.asarray(bounds[arch]) for arch in arches if bounds and arch in bounds]
    if len(boxes) != len(arches):  # no stored bounds: this stage's own
        boxes = [np.concatenate([stage[a].quantized.min(axis=0), stage[a].quantized.max(axis=0)]) for a in arches]
    box = _scene_box(view, boxes, axes, width_share=_LEGEND_DOMAIN if movement_max is not None else 1.0)
    layout = {
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
        "paper_bgcolor": BACKGROUND,
        "showlegend": False,
        "uirevision": revision,
        "scene": {
            # the colour legend gets its own strip on the right instead of covering the model
            "domain": {"x": [0.0, _LEGEND_DOMAIN if movement_max is not None else 1.0], "y": [0.0, 1.0]},
            "aspectmode": box["aspectmode"],
            "aspectratio": box["aspectratio"],
            "bgcolor": BACKGROUND,
            "dragmode": "orbit",
            "camera": camera(view, axes),
            **{axis: {**box[axis], "visible": False, "showspikes": False} for axis in ("xaxis", "yaxis", "zaxis")},
        },
    }
    return go.Figure(data=traces, layout=layout)


_LIGHTING: Final = {"ambient": 0.42, "diffuse": 0.78, "specular": 0.22, "roughness": 0.45, "fresnel": 0.12}


def _coordinates(mesh: PackedMesh) -> dict[str, np.ndarray]:
    q, f = mesh.quantized, mesh.faces
    return {"x": np.ascontiguousarray(q[:, 0]), "y": np.ascontiguousarray(q[:, 1]), "z": np.ascontiguousarray(q[:, 2]),
            "i": np.ascontiguousarray(f[:, 0]), "j": np.ascontiguousarray(f[:, 1]), "k": np.ascontiguousarray(f[:, 2])}


def _arch_trace(mesh: PackedMesh, arch: str, *, movement_max: float | None, legend: bool) -> go.Mesh3d:
    common = {"name": f"{arch} arch", "flatshading": False, "lighting": _LIGHTING, **_coordinates(mesh)}
    if movement_max is None or mesh.movement_um is None:
        return go.Mesh3d(color=TOOTH_COLOR, hoverinfo="skip", **common)
    top = round(movement_max * 1000)
    values = movement.ticks(movement_max)
    return go.Mesh3d(
        intensity=mesh.movement_um, intensitymode="vertex", colorscale=movement.colorscale(), cmin=0, cmax=top,
        showscale=legend, hovertemplate="moved %{intensity:,.0f} µm<extra></extra>",
        colorbar={"title": {"text": movement.LEGEND_TITLE, "side": "right", "font": {"color": "white"}},
                  "tickvals": [round(v * 1000) for v in values], "ticktext": [f"{v:g}" for v in values],
                  "tickfont": {"color": "white"}, "len": 0.7, "thickness": 16, "x": 0.98},
        **common)


def _ghost_trace(mesh: PackedMesh, arch: str) -> go.Mesh3d:
    return go.Mesh3d(name=f"final {arch} arch", color=GHOST_COLOR, opacity=GHOST_OPACITY, hoverinfo="skip",
                     flatshading=False, lighting={"ambient": 0.6, "diffuse": 0.5, "specular": 0.0},
                     **_coordinates(mesh))


def decode_typed_array(value: Any) -> np.ndarray:
    """A Plotly JSON array (a list, or a {"dtype", "bdata"} base64 typed array) as numpy, for readers of
    the figure JSON (tests, the benchmark)."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    return np.asarray(value)
