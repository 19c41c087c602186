"""CaptionLayer: the export job's captions drawn once and blended per stage, as apply_overlays draws them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.errors import ValidationError
from core.imaging.overlays import CaptionLayer, OverlaySpec, apply_overlays, overlay_boxes


@pytest.mark.parametrize("draft", [False, True])
def test_the_layer_gives_what_apply_overlays_gives_within_rounding(draft):
    rng = np.random.default_rng(3)
    spec = OverlaySpec(clinic_name="Bright Side Orthodontics", patient_text="J. D.", date_text="02 Dec 2026",
                       draft_watermark=draft)
    layer = CaptionLayer(640, 360, spec)
    for stage in range(3):
        rgb = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
        label = f"Stage {stage} of 12"
        expected = apply_overlays(rgb, replace(spec, stage_label=label))
        got = layer.apply(rgb, label)
        assert np.abs(expected.astype(int) - got.astype(int)).max() <= 2
        assert not np.array_equal(got, rgb)  # captions were drawn
    boxes = overlay_boxes(640, 360, replace(spec, stage_label="Stage 0 of 12"))
    untouched = np.ones((360, 640), bool)
    for x0, y0, x1, y1 in boxes.values():
        untouched[max(0, y0):y1, max(0, x0):x1] = False
    assert np.array_equal(got[untouched], rgb[untouched])  # nothing outside the caption boxes changes


def test_an_image_of_another_size_is_refused():
    layer = CaptionLayer(640, 360, OverlaySpec())
    with pytest.raises(ValidationError, match="640 × 360"):
        layer.apply(np.zeros((720, 1280, 3), np.uint8), "Stage 1")
