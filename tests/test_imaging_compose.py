"""Comparison layouts and smile guides: exact pixel geometry on tiny solid-colour images."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.errors import ValidationError
from core.imaging.compose import (
    ComparisonSpec,
    compose,
    divider_columns,
    fit,
    label_font_px,
    panel_boxes,
    title_band_height,
)
from core.imaging.guides import INCISAL_PLANE_COLOR, MIDLINE_COLOR, GuideLandmarks, draw_guides

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
NO_LABELS = {"labels": ()}


def solid(color, width=10, height=10) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = color
    return image


def is_solid(region: np.ndarray, color) -> bool:
    return bool((region == np.array(color, np.uint8)).all())


def is_hue(pixel: np.ndarray, color) -> bool:
    """A strong pixel of `color` on black: zero where the colour is zero, bright where it is 255."""
    return all((value == 0) if channel == 0 else (value >= 200) for value, channel in zip(pixel, color, strict=True))


# --------------------------------------------------------------------------- fit


def test_fit_letterboxes_a_wide_image_centred_with_background_bars():
    out = fit(solid(RED, 20, 10), (40, 40), background=BLACK)
    assert out.shape == (40, 40, 3)
    assert is_solid(out[10:30], RED)
    assert is_solid(out[:10], BLACK) and is_solid(out[30:], BLACK)


def test_fit_returns_a_new_array_even_when_sizes_match():
    image = solid(RED)
    out = fit(image, (10, 10))
    out[:] = 0
    assert is_solid(image, RED)


# --------------------------------------------------------------------------- pair layouts


def test_side_by_side_puts_before_left_and_predicted_right_pixel_exactly():
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(**NO_LABELS), (40, 20))
    assert out.shape == (20, 40, 3)
    assert is_solid(out[:, :20], RED)
    assert is_solid(out[:, 20:], BLUE)


def test_side_by_side_gap_scales_with_output_width_and_shows_background():
    # gap 100 at 1000 px -> 10 px at 100 px; cells [0, 45) and [55, 100), each 45 x 45.
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(gap=100, background=BLACK, **NO_LABELS), (100, 45))
    assert is_solid(out[:, :45], RED)
    assert is_solid(out[:, 45:55], BLACK)
    assert is_solid(out[:, 55:], BLUE)


def test_stacked_puts_before_on_top():
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(layout="stacked", **NO_LABELS), (20, 40))
    assert is_solid(out[:20], RED)
    assert is_solid(out[20:], BLUE)


def test_panels_keep_their_aspect_ratio_inside_cells():
    # A 10x10 square in a 20x40 cell: 20x20, centred vertically, background above and below.
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(background=BLACK, **NO_LABELS), (40, 40))
    assert is_solid(out[10:30, :20], RED) and is_solid(out[10:30, 20:], BLUE)
    assert is_solid(out[:10], BLACK) and is_solid(out[30:], BLACK)


@pytest.mark.parametrize("divider", [0.25, 0.5, 0.8])
def test_split_shows_before_left_of_the_divider_and_predicted_right_with_a_white_line(divider):
    spec = ComparisonSpec(layout="split", divider=divider, **NO_LABELS)
    out = compose([solid(RED, 40, 10), solid(BLUE, 40, 10)], spec, (200, 50))
    start, end = divider_columns(200, divider)
    assert start <= round(divider * 200) < end
    assert is_solid(out[:, :start], RED)
    assert is_solid(out[:, end:], BLUE)
    assert is_solid(out[:, start + 1:end - 1], WHITE)


def test_split_at_the_edges_is_all_predicted_or_all_before():
    images = [solid(RED, 50, 10), solid(BLUE, 50, 10)]
    all_predicted = compose(images, ComparisonSpec(layout="split", divider=0.0, **NO_LABELS), (100, 20))
    assert is_solid(all_predicted[:, divider_columns(100, 0.0)[1]:], BLUE)
    all_before = compose(images, ComparisonSpec(layout="split", divider=1.0, **NO_LABELS), (100, 20))
    assert is_solid(all_before[:, :divider_columns(100, 1.0)[0]], RED)


def test_blend_weights_the_predicted_image_by_opacity():
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(layout="blend", opacity=0.25, **NO_LABELS), (30, 30))
    # 255 * 0.75 = 191.25 -> 191, 255 * 0.25 = 63.75 -> 64
    assert is_solid(out, (191, 0, 64))


@pytest.mark.parametrize(("opacity", "expected"), [(0.0, RED), (1.0, BLUE)])
def test_blend_at_full_opacity_ends_show_one_image(opacity, expected):
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(layout="blend", opacity=opacity, **NO_LABELS), (30, 30))
    assert is_solid(out, expected)


# --------------------------------------------------------------------------- grid


def test_grid_fills_rows_left_to_right_and_leaves_spare_cells_background():
    colors = [RED, GREEN, BLUE, (255, 255, 0), (0, 255, 255)]
    out = compose([solid(c) for c in colors], ComparisonSpec(layout="grid", background=BLACK, **NO_LABELS), (90, 60))
    # 5 images -> ceil(sqrt(5)) = 3 columns, 2 rows of 30 x 30 cells.
    for index, color in enumerate(colors):
        row, col = divmod(index, 3)
        assert is_solid(out[row * 30:(row + 1) * 30, col * 30:(col + 1) * 30], color), index
    assert is_solid(out[30:, 60:], BLACK)


def test_grid_columns_and_gap_follow_the_spec():
    spec = ComparisonSpec(layout="grid", grid_columns=2, gap=100, background=BLACK, **NO_LABELS)
    boxes = panel_boxes(4, spec, (110, 110))
    # gap 100 at 1000 px -> 11 px: (110 - 11) = 99 -> spans of 50 and 49 px.
    assert boxes == [(0, 0, 50, 50), (61, 0, 110, 50), (0, 61, 50, 110), (61, 61, 110, 110)]
    out = compose([solid(c) for c in (RED, GREEN, BLUE, WHITE)], spec, (110, 110))
    assert is_solid(out[:, 50:61], BLACK) and is_solid(out[50:61], BLACK)
    assert is_solid(out[61:110, 61:110][0:49, 0:49], WHITE)


# --------------------------------------------------------------------------- labels and title


def test_labels_change_only_the_top_left_of_each_panel():
    images = [solid(RED, 100, 100), solid(BLUE, 100, 100)]
    plain = compose(images, ComparisonSpec(**NO_LABELS), (800, 400))
    labelled = compose(images, ComparisonSpec(labels=("Before", "Predicted")), (800, 400))
    changed = np.any(plain != labelled, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed[:, :400].any() and changed[:, 400:].any()
    size = label_font_px(400, 400)
    assert ys.max() < 4 * size  # labels hug the top edge
    assert xs[xs < 400].min() > 0 and xs[xs >= 400].min() > 400  # inset from each panel's left edge
    assert not changed[200:].any()


def test_an_empty_label_draws_nothing_for_that_panel():
    images = [solid(RED, 100, 100), solid(BLUE, 100, 100)]
    plain = compose(images, ComparisonSpec(**NO_LABELS), (800, 400))
    one = compose(images, ComparisonSpec(labels=("", "Predicted")), (800, 400))
    assert np.array_equal(plain[:, :400], one[:, :400])
    assert not np.array_equal(plain[:, 400:], one[:, 400:])


def test_split_labels_sit_top_left_and_top_right():
    images = [solid(RED, 100, 100), solid(BLUE, 100, 100)]
    plain = compose(images, ComparisonSpec(layout="split", **NO_LABELS), (800, 400))
    labelled = compose(images, ComparisonSpec(layout="split"), (800, 400))
    changed = np.any(plain != labelled, axis=2)
    assert changed[:100, 200:300].any() and changed[:100, 500:600].any()  # fitted square spans x 200-600
    assert not changed[100:].any()


def test_title_band_sits_on_top_and_moves_the_panels_down():
    images = [solid(RED, 100, 100), solid(BLUE, 100, 100)]
    spec = ComparisonSpec(title="Treatment simulation — stage 40", date_text="12 May 2026", **NO_LABELS)
    out = compose(images, spec, (1000, 500))
    band = title_band_height(1000, 500)
    assert 0 < band < 500 // 3
    band_area = out[:band]
    assert (band_area != 255).any()  # text was drawn
    # Panels are fitted into rows [band, 500): squares of (500 - band) px.
    assert is_solid(out[band:, 250 - (500 - band) // 2 + 2:250 + (500 - band) // 2 - 2], RED)
    without = compose(images, ComparisonSpec(**NO_LABELS), (1000, 500))
    assert not np.array_equal(out[:band], without[:band])


def test_date_alone_also_creates_the_title_band():
    out = compose([solid(RED), solid(BLUE)], ComparisonSpec(date_text="12 May 2026", **NO_LABELS), (1000, 500))
    band = title_band_height(1000, 500)
    assert (out[:band, 500:] != 255).any()
    assert is_solid(out[:band, :400], WHITE)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layout": "mosaic"}, "Layout 'mosaic' is not supported"),
    ({"divider": 1.4}, "divider 1.4 is outside 0–1"),
    ({"opacity": -0.1}, "opacity -0.1 is outside 0–1"),
    ({"gap": -3}, "gap -3"),
    ({"background": (0, 0, 300)}, "background"),
    ({"grid_columns": 0}, "grid_columns 0"),
    ({"labels": ("ok", "two\nlines")}, "single line"),
    ({"title": "x" * 500}, "keep it to 120"),
])
def test_a_bad_comparison_spec_is_refused_with_an_actionable_message(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        ComparisonSpec(**kwargs)


@pytest.mark.parametrize("layout", ["side_by_side", "stacked", "split", "blend"])
def test_pair_layouts_need_exactly_two_images(layout):
    with pytest.raises(ValidationError, match="exactly 2 images"):
        compose([solid(RED)] * 3, ComparisonSpec(layout=layout, **NO_LABELS), (40, 20))


@pytest.mark.parametrize("count", [1, 13])
def test_grid_takes_two_to_twelve_images(count):
    with pytest.raises(ValidationError, match="2 to 12 images"):
        compose([solid(RED)] * count, ComparisonSpec(layout="grid", **NO_LABELS), (100, 100))


def test_a_label_count_that_does_not_match_the_images_is_refused():
    with pytest.raises(ValidationError, match="one label per image"):
        compose([solid(RED)] * 3, ComparisonSpec(layout="grid"), (100, 100))


def test_a_title_on_a_tiny_output_is_refused():
    with pytest.raises(ValidationError, match="too small for a title band"):
        compose([solid(RED), solid(BLUE)], ComparisonSpec(title="Hello", **NO_LABELS), (40, 20))


def test_non_rgb_input_is_refused():
    with pytest.raises(ValidationError, match="RGB uint8"):
        compose([solid(RED), np.zeros((10, 10), np.uint8)], ComparisonSpec(**NO_LABELS), (40, 20))


def test_a_full_a4_side_by_side_renders_within_a_generous_budget():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8) for _ in range(2)]
    spec = ComparisonSpec(title="Simulation", date_text="12 May 2026", gap=10)
    compose(images, spec, (3508, 2480))  # warm-up: fonts load once per process
    start = time.perf_counter()
    out = compose(images, spec, (3508, 2480))
    assert out.shape == (2480, 3508, 3)
    assert time.perf_counter() - start < 1.6  # target 0.4 s; 4x slack for shared CI cores


# --------------------------------------------------------------------------- guides


def test_guides_draw_the_midline_cyan_and_the_incisal_plane_magenta_at_the_landmarks():
    image = solid(BLACK, 501, 401)
    marks = GuideLandmarks(midline_x=0.3, incisal_y=0.75)
    out = draw_guides(image, midline=True, smile_line=False, incisal_plane=True, landmarks=marks)
    # Lines are anti-aliased: the strongest pixel is on the landmark, in the guide's hue.
    assert int(np.argmax(out[100].sum(axis=1))) == 150  # x = 0.3 * 500
    assert is_hue(out[100, 150], MIDLINE_COLOR)
    assert int(np.argmax(out[:, 400].sum(axis=1))) == 300  # y = 0.75 * 400
    assert is_hue(out[300, 400], INCISAL_PLANE_COLOR)
    assert is_solid(image, BLACK)  # input untouched


def test_guides_default_to_the_image_centre_and_draw_only_what_is_asked():
    image = solid(BLACK, 501, 401)
    assert np.array_equal(draw_guides(image, midline=False, smile_line=False, incisal_plane=False), image)
    smile_only = draw_guides(image, midline=False, smile_line=True, incisal_plane=False)
    ys, _ = np.nonzero(smile_only.any(axis=2))
    assert smile_only[..., 2].max() == 0  # yellow only: no blue channel
    assert ys.min() > 0.45 * 400 and ys.max() < 0.65 * 400
    midline = draw_guides(image, midline=True, smile_line=False, incisal_plane=False)
    assert int(np.argmax(midline[10].sum(axis=1))) == 250
    assert is_hue(midline[10, 250], MIDLINE_COLOR)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"midline_x": 1.2}, "midline_x 1.2 is outside 0–1"),
    ({"smile_curve": ((0.5, 0.5), (0.4, 0.6), (0.8, 0.5))}, "left to right"),
    ({"smile_curve": ((0.2, 0.5), (0.5, 0.6))}, "three"),
])
def test_bad_guide_landmarks_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        GuideLandmarks(**kwargs)
