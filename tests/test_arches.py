"""Procedural dental renders (core.demo.arches): shapes, determinism, motion, symmetry, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.demo.arches import PHOTO_KINDS, VIEWS, ArchCase, render_photo, render_stage

FRAME = (320, 180)
PHOTO = (320, 240)
STAGES = 6


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.fixture(scope="module")
def front_stages() -> list[np.ndarray]:
    case = ArchCase(seed=11, crowding=1.0)
    return [render_stage(case, stage, STAGES, "front", FRAME) for stage in range(STAGES)]


@pytest.mark.parametrize("view", VIEWS)
def test_render_stage_returns_rgb_uint8_of_the_requested_size_for_every_view(view: str) -> None:
    img = render_stage(ArchCase(seed=3), 0, 4, view, FRAME)
    assert img.shape == (180, 320, 3)
    assert img.dtype == np.uint8
    assert img.std() > 10  # a picture, not a flat fill


@pytest.mark.parametrize("kind", PHOTO_KINDS)
def test_render_photo_returns_rgb_uint8_of_the_requested_size_for_every_kind(kind: str) -> None:
    img = render_photo(ArchCase(seed=3), kind, PHOTO)
    assert img.shape == (240, 320, 3)
    assert img.dtype == np.uint8
    assert img.std() > 10


def test_non_default_aspect_ratio_is_honoured() -> None:
    assert render_stage(ArchCase(seed=1), 1, 3, "upper", (200, 300)).shape == (300, 200, 3)
    assert render_photo(ArchCase(seed=1), "smile", (300, 200)).shape == (200, 300, 3)


def test_equal_inputs_render_identical_arrays() -> None:
    a = render_stage(ArchCase(seed=5, crowding=1.3), 2, 5, "left", FRAME)
    b = render_stage(ArchCase(seed=5, crowding=1.3), 2, 5, "left", FRAME)
    assert np.array_equal(a, b)
    p = render_photo(ArchCase(seed=5), "intraoral_front", PHOTO, progress=0.5)
    q = render_photo(ArchCase(seed=5), "intraoral_front", PHOTO, progress=0.5)
    assert np.array_equal(p, q)


def test_different_seeds_give_different_malocclusions() -> None:
    a = render_stage(ArchCase(seed=1), 0, 3, "front", FRAME)
    b = render_stage(ArchCase(seed=2), 0, 3, "front", FRAME)
    assert _diff(a, b) > 2.0


def test_first_stage_differs_clearly_from_the_final_stage(front_stages: list[np.ndarray]) -> None:
    # Measured about 13-15 (mean absolute difference, 0..255) at moderate crowding.
    assert _diff(front_stages[0], front_stages[-1]) > 6.0


def test_teeth_move_smoothly_consecutive_stages_differ_less_than_first_and_last(
        front_stages: list[np.ndarray]) -> None:
    total = _diff(front_stages[0], front_stages[-1])
    steps = [_diff(a, b) for a, b in itertools.pairwise(front_stages)]
    assert all(step < total for step in steps)
    assert max(steps) < 0.75 * total


def test_final_front_view_is_left_right_symmetric_inside_the_teeth_region(front_stages: list[np.ndarray]) -> None:
    # Teeth region: the middle of the frame. The aligned arch is mirror-symmetric (measured 0.0);
    # the crowded first stage is far from it (measured 30-45).
    final = front_stages[-1][40:140, 48:272]
    first = front_stages[0][40:140, 48:272]
    assert _diff(final, final[:, ::-1]) < 1.0
    assert _diff(first, first[:, ::-1]) > 10.0


def test_zero_crowding_renders_the_first_stage_identical_to_the_final_stage() -> None:
    case = ArchCase(seed=9, crowding=0.0)
    assert np.array_equal(render_stage(case, 0, 4, "front", FRAME), render_stage(case, 3, 4, "front", FRAME))


def test_single_stage_plan_renders() -> None:
    assert render_stage(ArchCase(seed=4), 0, 1, "lower", FRAME).shape == (180, 320, 3)


def test_photo_before_and_predicted_after_differ() -> None:
    case = ArchCase(seed=7)
    before = render_photo(case, "smile", PHOTO, progress=0.0)
    after = render_photo(case, "smile", PHOTO, progress=1.0)
    assert _diff(before, after) > 0.5


@pytest.mark.parametrize(("call", "match"), [
    (lambda: render_stage(ArchCase(seed=1), 0, 3, "top", FRAME), "unknown view"),
    (lambda: render_stage(ArchCase(seed=1), 3, 3, "front", FRAME), "out of range"),
    (lambda: render_stage(ArchCase(seed=1), -1, 3, "front", FRAME), "out of range"),
    (lambda: render_stage(ArchCase(seed=1), 0, 0, "front", FRAME), "stage_count"),
    (lambda: render_stage(ArchCase(seed=1), 0, 3, "front", (63, 180)), "width"),
    (lambda: render_stage(ArchCase(seed=1), 0, 3, "front", (320, 7681)), "height"),
    (lambda: render_stage(ArchCase(seed=1), 0, 3, "front", (320,)), "size"),
    (lambda: render_photo(ArchCase(seed=1), "selfie", PHOTO), "unknown photo kind"),
    (lambda: render_photo(ArchCase(seed=1), "smile", (8000, 240)), "width"),
    (lambda: render_photo(ArchCase(seed=1), "smile", PHOTO, progress=1.5), "progress"),
    (lambda: ArchCase(seed=1, crowding=2.5), "crowding"),
])
def test_invalid_arguments_raise_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
