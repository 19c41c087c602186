"""core.mesh3d: the stored format, decimation with stage correspondence, movement and the Plotly figure."""

from __future__ import annotations

import json

import numpy as np
import plotly.io as pio
import pytest

from core.errors import ValidationError
from core.imaging.legend import draw_legend, legend_box
from core.importing.mesh_testing import make_arch_mesh, write_obj, write_stl
from core.importing.meshes import Mesh, load_mesh
from core.mesh3d import movement, pack
from core.mesh3d.decimate import TARGET_TRIANGLES, canonical, decimate, decimate_arch, same_topology, surface_distances
from core.mesh3d.figure import Axes, camera, decode_typed_array, stage_figure

STAGES = 4


@pytest.fixture(scope="module")
def staged_stl() -> list[bytes]:
    """Four stages of an upper arch at 60k triangles, as aligner software writes them (binary STL)."""
    return [write_stl(make_arch_mesh("upper", stage, STAGES, triangles=60_000)) for stage in range(STAGES)]


@pytest.fixture(scope="module")
def decimated(staged_stl: list[bytes]):
    return decimate_arch(lambda i: load_mesh(staged_stl[i], name=f"stage {i}"), STAGES)


def _box(size: float = 10.0, thickness: float = 10.0, *, offset=(0.0, 0.0, 0.0), subdivide: int = 0) -> Mesh:
    """A closed box; `subdivide` splits every face into more triangles (another topology, same surface)."""
    import pyvista

    box = pyvista.Box(bounds=(0, size, 0, size, 0, thickness)).triangulate()
    if subdivide:
        box = box.subdivide(subdivide, subfilter="linear")
    vertices = np.asarray(box.points, np.float32) + np.asarray(offset, np.float32)
    return Mesh(vertices, box.faces.reshape(-1, 4)[:, 1:].astype(np.int32))


# --- the stored format -------------------------------------------------------------------------------


def test_packed_meshes_round_trip_within_the_quantisation_step(decimated) -> None:
    frame = pack.QuantFrame.covering([s.vertices for s in decimated])
    original = decimated[2]
    blob = pack.encode(pack.PackedMesh.build(original.vertices, original.faces, frame, original.movement))
    back = pack.decode(blob)
    assert frame.step < 0.002  # about a micrometre for a dental arch
    assert np.abs(back.vertices_mm() - original.vertices).max() <= frame.step  # half a step, plus float32 rounding
    np.testing.assert_array_equal(back.faces, original.faces)
    assert back.faces.dtype == np.uint16  # fewer than 65,536 vertices: 2-byte indices
    assert np.abs(back.movement_mm() - original.movement).max() <= 0.0005
    # compact: 2 bytes per coordinate and index, far below JSON or float64
    assert len(blob) == 56 + 6 * len(original.vertices) + 6 * len(original.faces) + 2 * len(original.vertices)


def test_large_meshes_use_four_byte_indices() -> None:
    vertices = np.random.default_rng(1).random((70_000, 3)).astype(np.float32) * 50
    faces = np.stack([np.arange(0, 69_997), np.arange(1, 69_998), np.arange(69_999, 2, -1)], axis=1)
    packed = pack.PackedMesh.build(vertices, faces, pack.QuantFrame.covering([vertices]))
    assert packed.faces.dtype == np.uint32
    np.testing.assert_array_equal(pack.decode(pack.encode(packed)).faces, faces)


@pytest.mark.parametrize("damage", ["magic", "truncated", "index", "extra"])
def test_damaged_blobs_are_refused(decimated, damage: str) -> None:
    stage = decimated[0]
    blob = bytearray(pack.encode(pack.PackedMesh.build(stage.vertices, stage.faces,
                                                       pack.QuantFrame.covering([stage.vertices]))))
    if damage == "magic":
        blob[:8] = b"NOTAMESH"
    elif damage == "truncated":
        del blob[-10:]
    elif damage == "index":  # a triangle pointing past the last vertex
        offset = 56 + 6 * len(stage.vertices)
        blob[offset:offset + 2] = (65535).to_bytes(2, "little")
    else:
        blob += b"\0\0"
    with pytest.raises(ValidationError, match=r"stored 3D model|vertex"):
        pack.decode(bytes(blob))


def test_quantisation_refuses_points_outside_its_frame() -> None:
    frame = pack.QuantFrame.covering([np.zeros((1, 3), np.float32)], margin_mm=1.0)
    with pytest.raises(ValidationError, match="outside"):
        frame.quantize(np.array([[5.0, 0, 0]]))


# --- topology and decimation ----------------------------------------------------------------------


def test_stl_stages_of_one_treatment_share_topology_after_renumbering(staged_stl: list[bytes]) -> None:
    first, third = (canonical(load_mesh(staged_stl[i], name="x")) for i in (0, 2))
    assert same_topology(first, third)
    # the STL parser numbers vertices by position, so without renumbering the faces would differ
    assert not np.array_equal(load_mesh(staged_stl[0], name="a").faces, load_mesh(staged_stl[2], name="b").faces)
    other = canonical(load_mesh(write_obj(make_arch_mesh("upper", 0, STAGES, triangles=20_000)), name="obj"))
    assert not same_topology(first, other)


def test_every_stage_is_decimated_to_the_budget_with_the_first_stages_triangles(decimated) -> None:
    assert [s.triangle_count for s in decimated] == [TARGET_TRIANGLES] * STAGES
    assert all(s.shared for s in decimated)
    assert all(np.array_equal(s.faces, decimated[0].faces) for s in decimated)
    assert np.all(decimated[0].movement == 0)
    assert decimated[-1].movement.max() > 0.5  # the malocclusion is corrected over the stages
    assert np.array_equal(np.unique(decimated[0].faces), np.arange(len(decimated[0].vertices)))


def test_decimated_vertices_stay_on_the_full_resolution_surface(staged_stl, decimated) -> None:
    full = load_mesh(staged_stl[3], name="final")
    off = surface_distances(decimated[3].vertices, full)
    assert off.max() < 0.05  # mm: the browser model is the same surface, only coarser


def test_a_translation_of_one_and_a_half_millimetres_reads_as_such() -> None:
    arch = make_arch_mesh("lower", 0, 1, triangles=50_000)
    shift = np.array([0.9, 1.2, 0.0], np.float32)  # |shift| = 1.5 mm
    moved = Mesh(arch.vertices + shift, arch.faces)
    result = decimate_arch(lambda i: (arch, moved)[i], 2)
    assert result[1].shared
    assert abs(float(result[1].movement.min()) - 1.5) < 0.05 and abs(float(result[1].movement.max()) - 1.5) < 0.05


def test_stages_with_their_own_topology_are_measured_to_the_nearest_surface() -> None:
    start = _box()
    lifted = _box(offset=(0.0, 0.0, 1.5), subdivide=2)  # other triangles, moved 1.5 mm along the face normal
    result = decimate_arch(lambda i: (start, lifted)[i], 2)
    assert not result[1].shared
    top = result[1].vertices[:, 2] > 11.4  # the lifted top face: 1.5 mm above the original top face
    assert top.sum() > 10
    assert np.allclose(result[1].movement[top], 1.5, atol=0.05)


def test_small_meshes_are_kept_as_they_are_and_bad_targets_refused() -> None:
    box = _box()
    assert decimate(box).triangle_count == box.triangle_count
    with pytest.raises(ValidationError, match="triangle target"):
        decimate(box, target=2)


# --- movement colours and legend ------------------------------------------------------------------


def test_the_colour_scale_tops_out_at_the_largest_movement_rounded_up() -> None:
    assert movement.scale_max(1.5) == 1.5
    assert movement.scale_max(1.51) == 2.0
    assert movement.scale_max(0.0) == 0.5
    assert movement.ticks(1.5)[0] == 0 and movement.ticks(1.5)[-1] == 1.5
    low, high = movement.colors(np.array([0.0, 9.0]), 2.0)
    assert tuple(low) == movement.STOPS[0][1] and tuple(high) == movement.STOPS[-1][1]


def test_the_legend_changes_only_its_own_box() -> None:
    canvas = np.full((540, 960, 3), 90, np.uint8)
    ticks = movement.ticks(2.0)
    out = draw_legend(canvas, movement.colors(np.linspace(0, 2, 16), 2.0), ticks, title=movement.LEGEND_TITLE)
    x0, y0, x1, y1 = legend_box(960, 540, movement.LEGEND_TITLE, [f"{t:g}" for t in ticks])
    changed = np.any(out != canvas, axis=2)
    assert changed[y0:y1, x0:x1].mean() > 0.5 and not changed[:, :x0].any() and not changed[:y0].any()
    assert x0 > 960 * 0.75  # against the right edge, clear of the centred DRAFT watermark


# --- the Plotly figure ------------------------------------------------------------------------------


def _packed_stage(decimated, index: int) -> dict[str, pack.PackedMesh]:
    frame = pack.QuantFrame.covering([s.vertices for s in decimated])
    stage = decimated[index]
    return {"upper": pack.PackedMesh.build(stage.vertices, stage.faces, frame, stage.movement)}


def test_the_figure_carries_the_stage_as_typed_arrays(decimated) -> None:
    stage = _packed_stage(decimated, 2)
    spec = json.loads(pio.to_json(stage_figure(stage, view="front"), validate=False))
    trace = spec["data"][0]
    assert trace["type"] == "mesh3d" and trace["x"]["dtype"] == "u2"  # base64 typed arrays, not JSON numbers
    np.testing.assert_array_equal(decode_typed_array(trace["x"]), stage["upper"].quantized[:, 0])
    np.testing.assert_array_equal(decode_typed_array(trace["k"]), stage["upper"].faces[:, 2])
    assert "intensity" not in trace


def test_the_scene_box_comes_from_the_sets_bounds_so_stages_do_not_jump(decimated) -> None:
    first, last = _packed_stage(decimated, 0)["upper"], _packed_stage(decimated, 3)["upper"]
    both = np.concatenate([first.quantized, last.quantized])
    bounds = {"upper": (*both.min(axis=0).tolist(), *both.max(axis=0).tolist())}
    scenes = [stage_figure({"upper": mesh}, bounds=bounds).layout.scene for mesh in (first, last)]
    assert scenes[0].xaxis.range == scenes[1].xaxis.range and scenes[0].aspectratio == scenes[1].aspectratio
    scene = scenes[0]
    assert scene.aspectmode == "manual" and scene.camera.projection.type == "orthographic"
    extents = [scene[axis].range[1] - scene[axis].range[0] for axis in ("xaxis", "yaxis", "zaxis")]
    ratio = scene.aspectratio
    assert ratio.x / ratio.y == pytest.approx(extents[0] / extents[1])  # true proportions, never stretched
    assert scene.xaxis.range[0] < bounds["upper"][0] and scene.xaxis.range[1] > bounds["upper"][3]


def test_movement_mode_colours_by_micrometres_with_a_millimetre_legend(decimated) -> None:
    stage = _packed_stage(decimated, 3)
    spec = json.loads(pio.to_json(stage_figure(stage, movement_max=2.5), validate=False))
    trace = spec["data"][0]
    np.testing.assert_array_equal(decode_typed_array(trace["intensity"]), stage["upper"].movement_um)
    assert trace["cmax"] == 2500 and trace["showscale"] is True
    assert trace["colorbar"]["ticktext"][-1] == "2.5" and trace["colorbar"]["title"]["text"] == "Movement (mm)"


def test_the_ghost_is_a_translucent_extra_trace_and_occlusal_views_show_one_arch(decimated) -> None:
    upper = _packed_stage(decimated, 0)["upper"]
    both = {"upper": upper, "lower": upper}
    figure = stage_figure(both, view="front", ghost=both)
    assert len(figure.data) == 4 and [t.opacity for t in figure.data[2:]] == [0.25, 0.25]
    assert [t.name for t in stage_figure(both, view="lower").data] == ["lower arch"]


def test_camera_presets_follow_the_clinical_conventions() -> None:
    front, left, upper = camera("front"), camera("left"), camera("upper")
    assert front["eye"]["y"] > 1 and front["up"]["z"] == 1
    assert left["eye"]["x"] < -1
    assert upper["eye"]["z"] < -1 and upper["up"]["y"] == 1  # from below, incisors at the top
    tilted = camera("front", Axes(right=(1, 0, 0), anterior=(0, 0.8, -0.6), up=(0, 0.6, 0.8)))
    assert tilted["eye"]["z"] < 0  # follows the model's own frame
    with pytest.raises(ValidationError, match="Unknown view"):
        camera("back")


def test_the_cli_writes_a_staged_set_the_import_understands(tmp_path) -> None:
    from core.cli import main
    from core.importing.naming import parse_staged_model_name

    assert main(["sample-models", str(tmp_path), "--stages", "2", "--triangles", "4000"]) == 0
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["Lower_Stage_00.stl", "Lower_Stage_01.stl", "Upper_Stage_00.stl",
                                       "Upper_Stage_01.stl"]
    assert {(parse_staged_model_name(p.name).arch, parse_staged_model_name(p.name).stage) for p in files} == {
        ("lower", 0), ("lower", 1), ("upper", 0), ("upper", 1)}
    assert load_mesh(files[0].read_bytes(), name="x").triangle_count > 3000
    assert main(["sample-models", str(tmp_path), "--stages", "1"]) == 1  # refused with a message, nothing written
