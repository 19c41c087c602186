"""core.importing.meshes: parsing staged STL/PLY/OBJ exports and rendering clinical views offscreen.

Rendering tests skip (loudly, with the missing piece) only when `rendering_available()` says the
offscreen stack is missing; everything else runs everywhere.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from core.config import PROJECT_ROOT
from core.errors import ConfigurationError, ValidationError
from core.fixtures.meshes import (
    make_arch_mesh,
    write_obj,
    write_ply_ascii,
    write_ply_binary,
    write_stl,
    write_stl_ascii,
)
from core.importing import meshes
from core.importing.meshes import CLINICAL_VIEWS, Mesh, RenderSpec, StageRenderer, load_mesh, rendering_available

STAGES = 4


@pytest.fixture(scope="module")
def lower() -> Mesh:
    return make_arch_mesh("lower", 0, STAGES, triangles=20_000)


def _same_triangles(loaded: Mesh, original: Mesh, *, atol: float = 0.0) -> None:
    assert loaded.triangle_count == original.triangle_count
    np.testing.assert_allclose(loaded.vertices[loaded.faces], original.vertices[original.faces], rtol=0, atol=atol)


def _tiny(vertices: list[list[float]], faces: list[list[int]]) -> Mesh:
    return Mesh(np.array(vertices, np.float32), np.array(faces, np.int32))


TETRA = _tiny([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])

# --- round trips -------------------------------------------------------------------------------


def test_binary_stl_round_trip_merges_the_repeated_vertices(lower: Mesh) -> None:
    data = write_stl(lower)
    assert len(data) == 84 + 50 * lower.triangle_count
    loaded = load_mesh(data, name="Lower_Stage_00.stl")
    _same_triangles(loaded, lower)
    # Each corner is written once per triangle; merging gives back the shared vertices.
    assert loaded.vertex_count == lower.vertex_count
    assert loaded.vertices.dtype == np.float32 and loaded.faces.dtype == np.int32


def test_binary_stl_whose_header_starts_with_solid_is_still_binary() -> None:
    loaded = load_mesh(write_stl(TETRA, header=b"solid exported by 3Shape facet"), name="Upper_Stage_07.stl")
    _same_triangles(loaded, TETRA)


def test_ascii_stl_round_trip(lower: Mesh) -> None:
    loaded = load_mesh(write_stl_ascii(lower, solid="subsetup7_lower"), name="subsetup7_lower.stl")
    _same_triangles(loaded, lower)
    assert loaded.vertex_count == lower.vertex_count


def test_ply_ascii_round_trip(lower: Mesh) -> None:
    loaded = load_mesh(write_ply_ascii(lower), name="lower.ply")
    np.testing.assert_array_equal(loaded.vertices, lower.vertices)
    np.testing.assert_array_equal(loaded.faces, lower.faces)


@pytest.mark.parametrize("double", [False, True])
def test_ply_binary_round_trip(lower: Mesh, double: bool) -> None:
    loaded = load_mesh(write_ply_binary(lower, double=double), name="lower.ply")
    np.testing.assert_array_equal(loaded.vertices, lower.vertices)
    np.testing.assert_array_equal(loaded.faces, lower.faces)


@pytest.mark.parametrize("style", ["v", "v/vt", "v/vt/vn", "v//vn"])
def test_obj_round_trip(lower: Mesh, style: str) -> None:
    loaded = load_mesh(write_obj(lower, face_style=style), name="lower.obj")  # type: ignore[arg-type]
    np.testing.assert_array_equal(loaded.vertices, lower.vertices)
    np.testing.assert_array_equal(loaded.faces, lower.faces)


def test_the_format_comes_from_the_content_not_the_name(lower: Mesh) -> None:
    assert load_mesh(write_ply_binary(lower), name="arch.stl").triangle_count == lower.triangle_count
    assert load_mesh(write_stl(lower), name="arch.obj").triangle_count == lower.triangle_count


SQUARE_AND_PENTAGON = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [3, 0, 0], [3, 1, 0], [2.5, 2, 0],
                       [2, 1, 0]]
FANNED = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [4, 7, 8]]


def test_ply_ascii_polygons_are_fanned_with_extra_properties_and_elements() -> None:
    vertex_lines = "\n".join(f"{x} {y} {z} 0 0 1 255" for x, y, z in SQUARE_AND_PENTAGON)
    data = ("ply\nformat ascii 1.0\ncomment OnyxCeph export\nelement vertex 9\nproperty double x\n"
            "property double y\nproperty double z\nproperty float nx\nproperty float ny\nproperty float nz\n"
            "property uchar red\nelement face 2\nproperty list uchar int vertex_index\nproperty uchar flags\n"
            "element edge 1\nproperty int vertex1\nproperty int vertex2\nend_header\n"
            f"{vertex_lines}\n4 0 1 2 3 7\n5 4 5 6 7 8 7\n0 1\n").encode()
    mesh = load_mesh(data, name="quads.ply")
    np.testing.assert_array_equal(mesh.faces, FANNED)
    np.testing.assert_allclose(mesh.vertices, SQUARE_AND_PENTAGON)


@pytest.mark.parametrize("mixed", [False, True])
def test_ply_binary_polygons_are_fanned(mixed: bool) -> None:
    polygons = [[0, 1, 2, 3], [4, 5, 6, 7, 8]] if mixed else [[0, 1, 2, 3], [4, 5, 6, 7]]
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex 9\nproperty float x\nproperty float y\n"
              f"property float z\nelement face {len(polygons)}\nproperty list uchar int vertex_indices\nend_header\n")
    body = np.array(SQUARE_AND_PENTAGON, "<f4").tobytes()
    for polygon in polygons:
        body += struct.pack(f"<B{len(polygon)}i", len(polygon), *polygon)
    mesh = load_mesh(header.encode() + body, name="quads.ply")
    expected = FANNED if mixed else [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
    np.testing.assert_array_equal(mesh.faces, expected)


def test_obj_index_forms_negative_indices_polygons_and_comments() -> None:
    data = """# ArchForm export — Zähne
mtllib arch.mtl
o lower
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0 1.0
vt 0 0
vn 0 0 1
g teeth
s 1
f 1/1/1 2/1/1 3/1/1 4/1/1
v 2 0 0
v 3 0 0
v 3 1 0
v 2.5 2 0
v 2 1 0
f -5//1 -4//1 -3//1 -2//1 -1//1
""".encode()
    mesh = load_mesh(data, name="lower.obj")
    np.testing.assert_array_equal(mesh.faces, FANNED)
    np.testing.assert_allclose(mesh.vertices, SQUARE_AND_PENTAGON)


# --- rejections --------------------------------------------------------------------------------


def test_empty_files_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"Upper_Stage_07\.stl is empty"):
        load_mesh(b"", name="Upper_Stage_07.stl")
    with pytest.raises(ValidationError, match="no triangles"):
        load_mesh(write_stl(TETRA)[:80] + struct.pack("<I", 0), name="zero.stl")


def test_truncated_binary_stl_is_rejected(lower: Mesh) -> None:
    data = write_stl(lower)
    with pytest.raises(ValidationError, match=r"Lower_Stage_03\.stl .*truncated or corrupt"):
        load_mesh(data[:-20], name="Lower_Stage_03.stl")


@pytest.mark.parametrize("count", [5, 3, 0xFFFF_FFFF])
def test_binary_stl_lying_about_its_triangle_count_is_rejected(count: int) -> None:
    data = bytearray(write_stl(TETRA))
    data[80:84] = struct.pack("<I", count)
    with pytest.raises(ValidationError, match=rf"announces {count:,} triangles.*truncated or corrupt"):
        load_mesh(bytes(data), name="arch.stl")


def test_nan_coordinates_are_rejected() -> None:
    data = bytearray(write_stl(TETRA))
    data[84 + 12:84 + 16] = struct.pack("<f", float("nan"))  # first vertex x of the first triangle
    with pytest.raises(ValidationError, match=r"arch\.stl has NaN or infinite"):
        load_mesh(bytes(data), name="arch.stl")
    with pytest.raises(ValidationError, match="NaN or infinite"):
        load_mesh(b"v 0 0 0\nv 1 0 0\nv 0 inf 0\nf 1 2 3\n", name="arch.obj")
    with pytest.raises(ValidationError, match="NaN or infinite"):
        load_mesh(write_ply_ascii(TETRA).replace(b"\n10 0 0\n", b"\nnan 0 0\n"), name="arch.ply")


def test_out_of_range_face_indices_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"arch\.obj: an OBJ face refers to vertex 99, but .* only 3"):
        load_mesh(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n", name="arch.obj")
    with pytest.raises(ValidationError, match="refers to vertex -5, counting back further than the vertices defined"):
        load_mesh(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 -5\n", name="arch.obj")
    with pytest.raises(ValidationError, match=r"arch\.ply has a face referring to vertex 7"):
        load_mesh(write_ply_ascii(TETRA).replace(b"\n3 1 2 3\n", b"\n3 1 2 7\n"), name="arch.ply")


TRIANGLE_OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
PLY_HEAD = (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
HUGE = b"99999999999999999999"  # 20 digits: more than int64 holds


@pytest.mark.parametrize(("data", "message"), [
    (TRIANGLE_OBJ.replace(b"f 1 2 3", b"f 1 2 " + HUGE),
     r"an OBJ face refers to vertex 99999999999999999999, but the file defines only 3 vertices"),
    (TRIANGLE_OBJ.replace(b"f 1 2 3", b"f 1 2 -" + HUGE), r"refers to vertex -99999999999999999999"),
    (TRIANGLE_OBJ.replace(b"f 1 2 3", b"f 1 2 9223372036854775807"), r"refers to vertex 9223372036854775807"),
    (TRIANGLE_OBJ.replace(b"f 1 2 3", b"f 1/" + HUGE + b" 2 3"), None),  # texture index: ignored, still valid
    (TRIANGLE_OBJ.replace(b"v 0 1 0", b"v 0 1 1e300"), r"vertex coordinate of 1e\+300, far outside"),
    (TRIANGLE_OBJ.replace(b"v 0 1 0", b"v 0 1 1e39"), r"vertex coordinate of 1e\+39"),  # inf as float32
    (PLY_HEAD + b"3 0 1 " + HUGE + b"\n", r"a face refers to vertex 100000000000000000000, outside the range"),
    (PLY_HEAD + b"3 0 1 -" + HUGE + b"\n", r"refers to vertex -100000000000000000000"),
    (PLY_HEAD.replace(b"element vertex 3", b"element vertex " + HUGE) + b"3 0 1 2\n",
     r"announces 99,999,999,999,999,999,999 vertex records; at most 2,147,483,647 are accepted"),
    (PLY_HEAD.replace(b"element face 1", b"element face 4294967296") + b"3 0 1 2\n",
     r"announces 4,294,967,296 face records; at most 2,147,483,647"),
    (b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 -2e7\nendloop\n"
     b"endfacet\nendsolid x\n", r"coordinate of 2e\+07"),
])  # fmt: skip
def test_numbers_out_of_range_are_refused_before_conversion(data: bytes, message: str | None) -> None:
    if message is None:
        assert load_mesh(data, name="arch.obj").triangle_count == 1
        return
    with pytest.raises(ValidationError, match=message):
        load_mesh(data, name="arch.obj")


def test_binary_stl_coordinates_beyond_a_kilometre_are_refused() -> None:
    data = bytearray(write_stl(TETRA))
    data[84 + 12:84 + 16] = struct.pack("<f", 3.0e38)
    with pytest.raises(ValidationError, match=r"arch\.stl has a vertex coordinate of 3e\+38"):
        load_mesh(bytes(data), name="arch.stl")


def test_inspect_counts_triangles_of_stl_and_ply_without_building_a_mesh(lower: Mesh) -> None:
    assert meshes.inspect_mesh(write_stl(lower), name="u.stl") == meshes.MeshSummary(
        "binary STL", lower.triangle_count, "model/stl")
    assert meshes.inspect_mesh(write_stl_ascii(lower), name="u.stl").format == "ASCII STL"
    assert meshes.inspect_mesh(write_stl_ascii(lower), name="u.stl").triangles == lower.triangle_count
    assert meshes.inspect_mesh(write_ply_binary(lower), name="u.ply").content_type == "model/ply"


@pytest.mark.parametrize(("data", "message"), [
    (b"", r"upper\.stl is empty \(0 bytes\)"),
    (b"<!DOCTYPE html><html><body>Sign in to MyiTero</body></html>", r"upper\.stl is an HTML page, not an STL"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), r"is a PNG image, not an STL or PLY model"),
    (write_stl(TETRA)[:-30], r"announces 4 triangles .*truncated or corrupt"),
    (write_stl(TETRA)[:80] + struct.pack("<I", 0), r"a binary STL with no triangles"),
    (write_obj(TETRA), r"is an OBJ model, not an STL or PLY model"),
])  # fmt: skip
def test_inspect_says_what_a_broken_jaw_file_is(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        meshes.inspect_mesh(data, name="upper.stl")


def test_meshes_over_the_triangle_cap_are_rejected(lower: Mesh) -> None:
    for data in (write_stl(lower), write_stl_ascii(lower), write_ply_binary(lower), write_obj(lower)):
        with pytest.raises(ValidationError, match=rf"has {lower.triangle_count:,} triangles, more than the 1,000 "):
            load_mesh(data, name="dense.stl", max_triangles=1_000)


def test_absurd_extents_are_rejected() -> None:
    huge = Mesh(TETRA.vertices * 1000, TETRA.faces)  # micrometres
    with pytest.raises(ValidationError, match=r"10,000 units across.*millimetres"):
        load_mesh(write_stl(huge), name="arch_um.stl")


@pytest.mark.parametrize("data", [
    b"hello, this is a text file\n",
    b"\x89PNG\r\n\x1a\n" + bytes(100),
    b"\x00\x01\x02",
    b"solid nothing here\nendsolid\n",
])
def test_files_that_are_not_meshes_are_rejected(data: bytes) -> None:
    with pytest.raises(ValidationError, match=r"scan\.bin (is not a 3D mesh|looks like a binary STL)"):
        load_mesh(data, name="scan.bin")


def test_malformed_ply_and_obj_are_rejected() -> None:
    cloud = b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n" \
            b"end_header\n0 0 0\n"
    with pytest.raises(ValidationError, match="point cloud"):
        load_mesh(cloud, name="cloud.ply")
    with pytest.raises(ValidationError, match="truncated"):
        load_mesh(write_ply_binary(TETRA)[:-5], name="cut.ply")
    with pytest.raises(ValidationError, match="truncated"):
        load_mesh(write_ply_ascii(TETRA).rsplit(b"\n", 3)[0], name="cut.ply")
    with pytest.raises(ValidationError, match="fewer than 3 vertices"):
        load_mesh(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", name="line.obj")
    with pytest.raises(ValidationError, match="not a number"):
        load_mesh(b"v 0 0 zero\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", name="bad.obj")


def test_mesh_validates_on_construction() -> None:
    with pytest.raises(ValidationError, match="float32"):
        Mesh(TETRA.vertices.astype(np.float64), TETRA.faces)
    with pytest.raises(ValidationError, match="shape"):
        Mesh(TETRA.vertices[:, :2].copy(), TETRA.faces)
    with pytest.raises(ValidationError, match="referring to vertex 4"):
        Mesh(TETRA.vertices, np.array([[0, 1, 4]], np.int32))
    with pytest.raises(ValidationError, match="no triangles"):
        Mesh(TETRA.vertices, np.zeros((0, 3), np.int32))
    assert not TETRA.vertices.flags.writeable


def test_render_spec_validates() -> None:
    assert RenderSpec().views == CLINICAL_VIEWS
    for kwargs in ({"width": 0}, {"height": True}, {"ssaa": 0}, {"ssaa": 5}, {"views": ("front", "side")},
                   {"views": ("front", "front")}, {"views": ()}, {"width": 7680, "height": 4320, "ssaa": 4}):
        with pytest.raises(ValidationError):
            RenderSpec(**kwargs)  # type: ignore[arg-type]


def test_make_arch_mesh_is_deterministic_and_near_the_budget() -> None:
    first = make_arch_mesh("upper", 0, STAGES, triangles=20_000)
    again = make_arch_mesh("upper", 0, STAGES, triangles=20_000)
    final = make_arch_mesh("upper", STAGES - 1, STAGES, triangles=20_000)
    np.testing.assert_array_equal(first.vertices, again.vertices)
    assert 18_000 <= first.triangle_count <= 22_000
    assert not np.array_equal(first.vertices, final.vertices)
    with pytest.raises(ValidationError):
        make_arch_mesh("upper", STAGES, STAGES)


def test_importing_the_module_does_not_import_vtk() -> None:
    code = ("import sys, core.importing.meshes, core.fixtures.meshes\n"
            "assert 'vtk' not in sys.modules and 'pyvista' not in sys.modules, 'eager import'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_renderer_raises_configuration_error_when_rendering_is_unavailable(monkeypatch: pytest.MonkeyPatch,
                                                                           lower: Mesh) -> None:
    monkeypatch.setattr(meshes, "rendering_available", lambda: "pip package vtk is not installed")
    with pytest.raises(ConfigurationError, match="vtk is not installed"):
        StageRenderer(RenderSpec(width=64, height=36), {"lower": lower})


# --- rendering ---------------------------------------------------------------------------------

W, H = 320, 180


@pytest.fixture(scope="module")
def rendering() -> None:
    problem = rendering_available()
    if problem is not None:
        pytest.skip(f"3D RENDERING UNAVAILABLE: {problem}")


@pytest.fixture(scope="module")
def stages() -> list[dict[str, Mesh]]:
    return [{arch: make_arch_mesh(arch, stage, STAGES, triangles=20_000) for arch in ("upper", "lower")}
            for stage in (0, STAGES - 1)]


@pytest.fixture(scope="module")
def renders(rendering: None, stages: list[dict[str, Mesh]]) -> dict[str, list[dict[str, np.ndarray]]]:
    """One renderer, framed on stage 0: stage 0, final stage, stage 0 again; plus a lower-only set."""
    spec = RenderSpec(width=W, height=H, ssaa=2)
    with StageRenderer(spec, stages[0]) as renderer:
        both = [renderer.render(stages[0]), renderer.render(stages[1]), renderer.render(stages[0])]
        upper_only = renderer.render({"upper": stages[0]["upper"]})
    with StageRenderer(spec, {"lower": stages[0]["lower"]}) as renderer:
        lower_only = renderer.render({"lower": stages[0]["lower"]})
    return {"both": both, "upper_only": [upper_only], "lower_only": [lower_only]}


def _is_empty_background(image: np.ndarray) -> bool:
    # The background is a vertical gradient: every row is one colour. Geometry breaks that.
    return int(np.abs(image.astype(np.int16) - image[:, :1].astype(np.int16)).max()) <= 2


@pytest.fixture(scope="module")
def background(renders: dict[str, list[dict[str, np.ndarray]]]) -> np.ndarray:
    empty = renders["lower_only"][0]["upper"]
    assert _is_empty_background(empty)
    return empty


def _model_mask(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.abs(image.astype(np.int16) - background.astype(np.int16)).max(axis=2) > 12


def test_every_view_is_an_rgb_frame_with_the_model_visible_and_centred(
        renders: dict[str, list[dict[str, np.ndarray]]], background: np.ndarray) -> None:
    images = renders["both"][0]
    assert tuple(images) == CLINICAL_VIEWS
    for view, image in images.items():
        assert image.shape == (H, W, 3) and image.dtype == np.uint8, view
        mask = _model_mask(image, background)
        share = mask.mean()
        assert 0.10 < share < 0.90, (view, share)
        rows, cols = np.nonzero(mask)
        centre_x, centre_y = (cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2
        assert abs(centre_x - W / 2) < 0.12 * W and abs(centre_y - H / 2) < 0.12 * H, (view, centre_x, centre_y)
        assert rows.min() > 0 and rows.max() < H - 1 and cols.min() > 0 and cols.max() < W - 1, view  # not cut


def test_first_and_final_stage_differ(renders: dict[str, list[dict[str, np.ndarray]]]) -> None:
    first, final, _ = renders["both"]
    for view in CLINICAL_VIEWS:
        changed = (np.abs(first[view].astype(np.int16) - final[view].astype(np.int16)).max(axis=2) > 30).mean()
        assert changed > 0.01, (view, changed)


def test_the_camera_is_fixed_across_stages(renders: dict[str, list[dict[str, np.ndarray]]],
                                          background: np.ndarray) -> None:
    first, final, first_again = renders["both"]
    for view in CLINICAL_VIEWS:  # re-rendering a stage after another gives the same frame
        assert np.abs(first[view].astype(np.int16) - first_again[view].astype(np.int16)).max() <= 2, view
    # In the front view the lower gingiva/base (bottom band of the model) never moves: it must stay
    # in place while the teeth above it move.
    mask = _model_mask(first["front"], background)
    rows = np.nonzero(mask.any(axis=1))[0]
    band = slice(rows.max() - int(0.12 * (rows.max() - rows.min())), rows.max() + 1)
    difference = np.abs(first["front"][band].astype(np.int16) - final["front"][band].astype(np.int16))
    # (Re-fitting the camera per stage shifts this band by a pixel or so: mean difference ≈ 0.7.)
    assert difference.mean() < 0.3, difference.mean()
    final_rows = np.nonzero(_model_mask(final["front"], background).any(axis=1))[0]
    assert abs(int(final_rows.max()) - int(rows.max())) <= 1


def test_occlusal_views_show_only_their_own_arch(renders: dict[str, list[dict[str, np.ndarray]]],
                                                 background: np.ndarray) -> None:
    lower_only = renders["lower_only"][0]
    assert _is_empty_background(lower_only["upper"])  # no lower-arch geometry in the upper view
    assert 0.10 < _model_mask(lower_only["lower"], background).mean() < 0.90
    upper_only = renders["upper_only"][0]
    assert _is_empty_background(upper_only["lower"])
    assert _model_mask(upper_only["upper"], background).mean() > 0.10


def test_tilted_and_shifted_exports_are_framed_the_same(rendering: None, stages: list[dict[str, Mesh]],
                                                        background: np.ndarray) -> None:
    # Cameras follow the arches' own occlusal plane and bounding box, not the file's origin.
    angle = np.radians(12)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    tilted = {arch: Mesh((mesh.vertices @ rotation.T + np.array([25, -40, 12])).astype(np.float32), mesh.faces)
              for arch, mesh in stages[0].items()}
    spec = RenderSpec(width=W, height=H, ssaa=2)
    with StageRenderer(spec, stages[0]) as renderer:
        plain = renderer.render(stages[0])
    with StageRenderer(spec, tilted) as renderer:
        moved = renderer.render(tilted)
    for view in CLINICAL_VIEWS:
        a, b = _model_mask(plain[view], background), _model_mask(moved[view], background)
        assert (a & b).sum() / (a | b).sum() > 0.95, view


def test_renderer_rejects_bad_arguments_and_use_after_close(rendering: None, lower: Mesh) -> None:
    with pytest.raises(ValidationError, match="no arch"):
        StageRenderer(RenderSpec(width=64, height=36), {})
    renderer = StageRenderer(RenderSpec(width=64, height=36, views=("lower",), ssaa=1), {"lower": lower})
    with renderer:
        with pytest.raises(ValidationError, match="unknown arch"):
            renderer.render({"mandible": lower})
        assert renderer.render({"lower": lower})["lower"].shape == (36, 64, 3)
    with pytest.raises(ValidationError, match="closed"):
        renderer.render({"lower": lower})
