"""Before/predicted alignment: the transform convention, storage, warping and automatic recovery."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.errors import ValidationError
from core.imaging.align import Alignment, apply_alignment, apply_crop, auto_align, crop_box

WIDTH, HEIGHT = 640, 480


def scene(width: int, height: int, seed: int) -> np.ndarray:
    """A procedurally drawn, textured test picture: shapes and lines over mild noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(60, 200, 3)
    for _ in range(width * height // 4000):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(5, width // 25))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(image, (x, y), r, color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + r, y + int(rng.integers(5, 40))), color, -1)
        else:
            end = (x + int(rng.integers(-60, 60)), y + int(rng.integers(-60, 60)))
            cv2.line(image, (x, y), end, color, 2, cv2.LINE_AA)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def camera_pair(truth: Alignment, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """BEFORE = the centre of a larger scene; PREDICTED = the same scene seen through `truth`.

    Rendering both from the larger scene means the predicted frame has real content at its edges
    (as a real second photo would), not warp borders.
    """
    margin_x, margin_y = WIDTH // 2, HEIGHT // 2
    big = scene(WIDTH + 2 * margin_x, HEIGHT + 2 * margin_y, seed)
    before = big[margin_y:margin_y + HEIGHT, margin_x:margin_x + WIDTH].copy()
    matrix = truth.matrix((WIDTH, HEIGHT))
    matrix[:, 2] -= matrix[:, :2] @ np.array([margin_x, margin_y])  # big-scene coords -> before coords first
    predicted = cv2.warpAffine(big, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC)
    return before, predicted


# --------------------------------------------------------------------------- the convention


def test_the_identity_maps_each_before_pixel_onto_the_same_predicted_pixel():
    assert np.allclose(Alignment().matrix((640, 480)), [[1, 0, 0], [0, 1, 0]])


def test_rotation_and_scale_turn_about_the_before_centre_then_dx_dy_shift_it():
    alignment = Alignment(scale=1.2, rotation_deg=30, dx=15, dy=-7)
    matrix = alignment.matrix((641, 481))
    centre = np.array([320.0, 240.0, 1.0])
    assert np.allclose(matrix @ centre, [335.0, 233.0])
    # Positive rotation is counter-clockwise on screen: a point right of the centre moves up (y decreases).
    right = matrix @ np.array([420.0, 240.0, 1.0]) - matrix @ centre
    assert np.allclose(right, [1.2 * 100 * np.cos(np.radians(30)), -1.2 * 100 * np.sin(np.radians(30))])


@pytest.mark.parametrize("params", [(1.0, 0.0, 0.0, 0.0), (0.9, -7.5, 12.25, -3.5), (1.13, 179.0, -40.0, 40.0)])
def test_from_matrix_inverts_matrix(params):
    alignment = Alignment(*params)
    back = Alignment.from_matrix(alignment.matrix((800, 600)), (800, 600))
    assert (back.scale, back.rotation_deg, back.dx, back.dy) == pytest.approx(params, abs=1e-9)


def test_alignments_round_trip_through_json():
    alignment = Alignment(1.05, -3.25, 4.5, -6.0, crop=(0.1, 0.2, 0.5, 0.6), confidence=0.87)
    stored = json.loads(json.dumps(alignment.to_dict()))
    assert Alignment.from_dict(stored) == alignment
    assert Alignment.from_dict({}) == Alignment()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scale": 0.0}, "scale 0 is outside 0.2–5"),
    ({"rotation_deg": 270.0}, "rotation_deg 270 is outside -180–180"),
    ({"dx": float("nan")}, "dx nan must be a finite number"),
    ({"crop": (0.5, 0.5, 0.7, 0.2)}, "reaches outside the image"),
    ({"crop": (0.1, 0.1, 0.0, 0.5)}, "w, h in"),
    ({"confidence": 1.4}, "confidence 1.4 is outside 0–1"),
])
def test_bad_alignment_values_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        Alignment(**kwargs)


def test_unknown_stored_fields_are_refused():
    with pytest.raises(ValidationError, match="Unknown alignment field"):
        Alignment.from_dict({"scale": 1.0, "shear": 0.1})


# --------------------------------------------------------------------------- applying


def test_apply_alignment_reproduces_the_predicted_frame():
    before = scene(WIDTH, HEIGHT, 3)
    truth = Alignment(1.1, 5.0, 12.0, -8.0)
    predicted = cv2.warpAffine(before, truth.matrix((WIDTH, HEIGHT)), (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC)
    out = apply_alignment(before, truth, (WIDTH, HEIGHT))
    assert out.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(out[60:-60, 60:-60], predicted[60:-60, 60:-60])


def test_apply_alignment_fills_uncovered_areas_with_edges_or_the_background():
    before = np.full((100, 100, 3), 200, np.uint8)
    shifted = Alignment(dx=30)
    replicated = apply_alignment(before, shifted, (100, 100))
    assert (replicated == 200).all()
    padded = apply_alignment(before, shifted, (100, 100), background=(0, 0, 0))
    assert (padded[:, :29] == 0).all() and (padded[:, 31:] == 200).all()


def test_apply_alignment_renders_any_output_size():
    before = scene(WIDTH, HEIGHT, 3)
    assert apply_alignment(before, Alignment(scale=0.5), (320, 240)).shape == (240, 320, 3)


def test_the_crop_is_applied_in_normalised_coordinates():
    image = scene(200, 100, 1)
    alignment = Alignment(crop=(0.25, 0.5, 0.5, 0.5))
    assert crop_box(alignment.crop, (200, 100)) == (50, 50, 150, 100)
    assert np.array_equal(apply_crop(image, alignment), image[50:100, 50:150])
    assert np.array_equal(apply_crop(image, Alignment()), image)


# --------------------------------------------------------------------------- automatic alignment


@pytest.mark.parametrize(("scale", "rotation", "dx", "dy"), [
    (1.0, 0.0, 0.0, 0.0),
    (1.15, 8.0, 40.0, -40.0),
    (0.85, -8.0, -40.0, 40.0),
    (1.1, -5.0, 25.0, 30.0),
    (0.9, 6.0, -35.0, -20.0),
    (1.03, 2.5, 7.5, -12.25),
])
def test_auto_align_recovers_a_known_similarity_within_a_pixel_and_half_a_degree(scale, rotation, dx, dy):
    truth = Alignment(scale, rotation, dx, dy)
    before, predicted = camera_pair(truth, seed=int(abs(dx)) + 1)
    found = auto_align(before, predicted)
    assert found.dx == pytest.approx(dx, abs=1.0)
    assert found.dy == pytest.approx(dy, abs=1.0)
    assert found.rotation_deg == pytest.approx(rotation, abs=0.5)
    assert found.scale == pytest.approx(scale, rel=0.005)
    assert found.confidence is not None and found.confidence > 0.8


def test_auto_align_follows_the_unchanged_surroundings_when_the_teeth_change():
    # The high-contrast middle ("teeth") is stretched sideways by 12 % in the predicted frame, like
    # an arch expansion, while the low-contrast surroundings ("face") stay put. An alignment that
    # fits everything would absorb the stretch; this one must follow the surroundings.
    truth = Alignment(1.05, 3.0, 20.0, 10.0)
    before, predicted = camera_pair(truth, seed=11)
    original = predicted.copy()
    face = np.ones((HEIGHT, WIDTH, 1), np.float32) * 0.35
    face[120:360, 160:480] = 1.0

    def soften(image: np.ndarray) -> np.ndarray:
        return np.clip(128 + (image.astype(np.float32) - 128) * face, 0, 255).astype(np.uint8)

    before = soften(before)
    teeth = cv2.resize(original[120:360, 160:480], (358, 240), interpolation=cv2.INTER_CUBIC)
    original[120:360, 160:480] = teeth[:, 19:339]
    predicted = soften(original)
    found = auto_align(before, predicted)
    assert (found.dx, found.dy) == pytest.approx((20.0, 10.0), abs=1.0)
    assert found.rotation_deg == pytest.approx(3.0, abs=0.5)
    assert found.scale == pytest.approx(1.05, rel=0.005)


def test_auto_align_handles_different_image_sizes():
    before = scene(WIDTH, HEIGHT, 5)
    predicted = cv2.resize(before, (480, 360), interpolation=cv2.INTER_AREA)
    found = auto_align(before, predicted)
    assert found.scale == pytest.approx(0.75, rel=0.005)
    assert found.rotation_deg == pytest.approx(0.0, abs=0.5)
    # Centres correspond: before (319.5, 239.5) -> predicted (239.5, 179.5).
    centre = found.matrix((WIDTH, HEIGHT)) @ np.array([319.5, 239.5, 1.0])
    assert centre == pytest.approx([239.5, 179.5], abs=1.0)


def test_unrelated_images_get_a_low_confidence_and_no_error():
    shapes = scene(WIDTH, HEIGHT, 7)
    noise = np.random.default_rng(8).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    found = auto_align(shapes, noise)
    assert found.confidence is not None and found.confidence < 0.3
    other = auto_align(shapes, scene(WIDTH, HEIGHT, 9))
    assert other.confidence < 0.3


def test_featureless_images_do_not_raise():
    flat = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    found = auto_align(flat, flat.copy())
    assert found.confidence is not None and 0.0 <= found.confidence <= 1.0


def test_auto_align_refuses_tiny_images():
    with pytest.raises(ValidationError, match="at least 32 px"):
        auto_align(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.uint8))
