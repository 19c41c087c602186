"""Export sizes, metadata-free encoding with DPI, and burned-in overlays."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from core.errors import ValidationError
from core.imaging.encode import PNG_DPI_TOLERANCE, encode_export, read_dpi
from core.imaging.overlays import (
    DRAFT_TEXT,
    OUTCOME_STAMP_TEXT,
    OverlaySpec,
    apply_overlays,
    draw_text,
    font,
    overlay_boxes,
    text_width,
)
from core.imaging.sizes import PRINT_SIZES, SCREEN_SIZES, output_size

#: Inches (landscape) of each print preset; A4 is 297 x 210 mm.
PRINT_INCHES = {"4x6": (6, 4), "5x7": (7, 5), "8x10": (10, 8), "letter": (11, 8.5), "a4": (297 / 25.4, 210 / 25.4)}
#: pHYs stores whole pixels per metre: 300 DPI is stored as round(300 / 0.0254) = 11811 px/m.
PNG_300_DPI = round(300 / 0.0254) * 0.0254


def gradient(width=64, height=48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                           np.full((height, width, 1), 128, np.float32)], axis=2).astype(np.uint8)


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        chunks.append(data[offset + 4:offset + 8])
        offset += 12 + length
    return chunks


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes up to start-of-scan (APPn = 0xE0-0xEF, COM = 0xFE)."""
    assert data[:2] == b"\xff\xd8"
    markers, offset = [], 2
    while offset < len(data):
        marker = data[offset + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        (length,) = struct.unpack(">H", data[offset + 2:offset + 4])
        offset += 2 + length
    return markers


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("key", sorted(PRINT_INCHES))
def test_every_print_size_is_exactly_its_inches_at_300_dpi(key):
    size = output_size(key)
    width_in, height_in = PRINT_INCHES[key]
    assert (size.width, size.height) == (round(width_in * 300), round(height_in * 300))
    assert size.dpi == 300 and size.is_print
    assert size.width > size.height  # presets are landscape


def test_print_pixel_sizes_are_the_documented_ones():
    assert {k: (s.width, s.height) for k, s in PRINT_SIZES.items()} == {
        "4x6": (1800, 1200), "5x7": (2100, 1500), "8x10": (3000, 2400), "a4": (3508, 2480), "letter": (3300, 2550)}
    assert {k: (s.width, s.height, s.dpi) for k, s in SCREEN_SIZES.items()} == {
        "1080p": (1920, 1080, None), "4k": (3840, 2160, None), "square": (1080, 1080, None)}


@pytest.mark.parametrize("key", sorted(PRINT_SIZES))
def test_portrait_swaps_print_sizes(key):
    landscape, portrait = output_size(key), output_size(key, "portrait")
    assert (portrait.width, portrait.height) == (landscape.height, landscape.width)
    assert portrait.dpi == 300


@pytest.mark.parametrize("key", sorted(SCREEN_SIZES))
def test_portrait_leaves_screen_sizes_alone(key):
    assert output_size(key, "portrait") == output_size(key) == SCREEN_SIZES[key]
    assert not output_size(key).is_print


def test_an_unknown_size_or_orientation_lists_the_choices():
    with pytest.raises(ValidationError, match="Unknown output size 'a3'; choose one of 1080p, 4k, square, 4x6"):
        output_size("a3")
    with pytest.raises(ValidationError, match="choose one of landscape, portrait"):
        output_size("a4", "sideways")


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("key", sorted(PRINT_SIZES))
def test_every_print_size_exports_at_its_pixel_size_and_reads_back_300_dpi(key):
    size = output_size(key)
    canvas = np.full((size.height, size.width, 3), 240, np.uint8)
    encoded = encode_export(canvas, "jpeg", dpi=size.dpi)
    with Image.open(io.BytesIO(encoded.data)) as image:
        assert image.size == (size.width, size.height)
        assert image.info["dpi"] == (300, 300)
    assert (encoded.width, encoded.height) == (size.width, size.height)


def test_png_dpi_reads_back_300_within_what_phys_can_store():
    encoded = encode_export(gradient(), "png", dpi=300)
    with Image.open(io.BytesIO(encoded.data)) as image:
        dpi = image.info["dpi"]
    # Only the pHYs quantisation (whole px per metre) is tolerated, nothing more.
    assert dpi == pytest.approx((PNG_300_DPI, PNG_300_DPI), abs=1e-9)
    assert abs(dpi[0] - 300) <= PNG_DPI_TOLERANCE
    assert read_dpi(encoded.data) == pytest.approx((300, 300), abs=PNG_DPI_TOLERANCE)


def test_jpeg_dpi_is_exact():
    assert read_dpi(encode_export(gradient(), "jpeg", dpi=300).data) == (300.0, 300.0)


def test_png_export_has_only_the_required_chunks_and_no_metadata():
    encoded = encode_export(gradient(), "png", dpi=300)
    chunks = png_chunks(encoded.data)
    assert set(chunks) == {b"IHDR", b"pHYs", b"IDAT", b"IEND"}
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    with Image.open(io.BytesIO(encoded.data)) as image:
        assert set(image.info) == {"dpi"}
        assert len(image.getexif()) == 0
    assert encoded.content_type == "image/png"


def test_jpeg_export_has_only_the_jfif_header_and_no_exif_xmp_icc_or_comment():
    encoded = encode_export(gradient(), "jpeg", dpi=300)
    markers = jpeg_markers(encoded.data)
    assert [m for m in markers if 0xE0 <= m <= 0xEF or m == 0xFE] == [0xE0]  # APP0 (JFIF) only
    with Image.open(io.BytesIO(encoded.data)) as image:
        assert set(image.info) == {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}
        assert len(image.getexif()) == 0
        assert image.mode == "RGB"
    assert encoded.content_type == "image/jpeg"


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_without_dpi_no_resolution_is_claimed(fmt):
    data = encode_export(gradient(), fmt).data
    assert read_dpi(data) is None
    if fmt == "png":
        assert set(png_chunks(data)) == {b"IHDR", b"IDAT", b"IEND"}


def test_png_export_is_lossless():
    image = gradient()
    with Image.open(io.BytesIO(encode_export(image, "png", dpi=300).data)) as decoded:
        assert np.array_equal(np.asarray(decoded.convert("RGB")), image)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fmt": "gif"}, "choose \"png\" or \"jpeg\""),
    ({"fmt": "png", "dpi": 0}, "dpi 0"),
    ({"fmt": "jpeg", "quality": 101}, "quality 101 is outside 1–100"),
])
def test_bad_export_options_are_refused(kwargs, message):
    fmt = kwargs.pop("fmt")
    with pytest.raises(ValidationError, match=message):
        encode_export(gradient(), fmt, **kwargs)


def test_read_dpi_refuses_non_images():
    with pytest.raises(ValidationError, match="not a readable"):
        read_dpi(b"not an image")


# --------------------------------------------------------------------------- overlays


def photo(width=960, height=540) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(40, 220, (height, width, 3), dtype=np.uint8)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def test_the_outcome_stamp_is_a_band_along_the_bottom_and_nothing_else_changes():
    image = photo()
    stamped = apply_overlays(image, OverlaySpec())
    plain = apply_overlays(image, OverlaySpec(outcome_stamp=False))
    assert np.array_equal(plain, image)
    x0, y0, x1, y1 = overlay_boxes(960, 540, OverlaySpec())["stamp"]
    assert (x0, x1, y1) == (0, 960, 540) and 0 < y0 < 540
    diff = changed(stamped, image)
    assert diff[y0:, :].mean() > 0.9  # the whole band is shaded
    assert not diff[:y0].any()
    assert np.array_equal(image, photo())  # the input is never modified


def test_the_stamp_text_is_centred_and_fits_even_at_320_px():
    image = photo(320, 180)
    spec = OverlaySpec()
    out = apply_overlays(image, spec)
    _, y0, _, y1 = overlay_boxes(320, 180, spec)["stamp"]
    band = out[y0:y1].astype(int)
    bright = np.nonzero((band.min(axis=2) > 200).any(axis=0))[0]  # white text columns
    assert bright.size and bright.min() > 0 and bright.max() < 319
    assert abs((bright.min() + bright.max()) / 2 - 160) <= 3
    assert text_width(OUTCOME_STAMP_TEXT, 11) <= 320  # no ellipsis needed at the smallest size


def test_the_draft_watermark_changes_the_centre_diagonal():
    image = photo()
    draft = apply_overlays(image, OverlaySpec(outcome_stamp=False, draft_watermark=True))
    diff = changed(draft, image)
    assert diff[240:300, 440:520].mean() > 0.2  # centre
    assert diff[130:160, 680:760].any() and diff[380:410, 200:280].any()  # along the rising diagonal
    assert not diff[:60, :120].any() and not diff[480:, 840:].any()  # off-diagonal corners untouched
    assert "—" in DRAFT_TEXT


def test_the_watermark_is_semi_transparent():
    image = photo()
    draft = apply_overlays(image, OverlaySpec(outcome_stamp=False, draft_watermark=True))
    # Under the text the photo still shows through: the output keeps correlating with it.
    x0, y0, x1, y1 = overlay_boxes(960, 540, OverlaySpec(draft_watermark=True))["draft"]
    region_in, region_out = image[y0:y1, x0:x1].astype(float), draft[y0:y1, x0:x1].astype(float)
    mask = changed(draft, image)[y0:y1, x0:x1]
    correlation = np.corrcoef(region_in[mask][:, 1], region_out[mask][:, 1])[0, 1]
    assert correlation > 0.3


def test_patient_text_is_drawn_top_right_only_when_given():
    image = photo()
    without = apply_overlays(image, OverlaySpec(outcome_stamp=False))
    with_patient = apply_overlays(image, OverlaySpec(outcome_stamp=False, patient_text="J.M."))
    assert "patient" not in overlay_boxes(960, 540, OverlaySpec(outcome_stamp=False))
    assert np.array_equal(without, image)
    x0, y0, x1, y1 = overlay_boxes(960, 540, OverlaySpec(patient_text="J.M."))["patient"]
    assert x1 < 960 and x0 > 480 and y0 > 0 and y1 < 100
    diff = changed(with_patient, image)
    assert diff[y0:y1, x0:x1].any()
    assert not diff[:, :x0].any() and not diff[y1:].any()


def test_captions_go_to_their_corners_above_the_stamp():
    spec = OverlaySpec(stage_label="Stage 12 of 40", date_text="12 May 2026", clinic_name="Bright Smile",
                       patient_text="José Müller")
    boxes = overlay_boxes(1920, 1080, spec)
    assert boxes["clinic"][0] < 100 and boxes["clinic"][1] < 100
    assert boxes["patient"][2] > 1820 and boxes["patient"][1] < 100
    assert boxes["stage"][0] < 100 and boxes["stage"][3] <= boxes["stamp"][1]
    assert boxes["date"][2] > 1820 and boxes["date"][3] <= boxes["stamp"][1]
    image = photo(1920, 1080)
    out = apply_overlays(image, spec)
    diff = changed(out, image)
    outside = np.ones_like(diff)
    for x0, y0, x1, y1 in boxes.values():
        outside[y0:y1, x0:x1] = False
    assert not diff[outside].any()
    for name in ("clinic", "patient", "stage", "date"):
        x0, y0, x1, y1 = boxes[name]
        assert diff[y0:y1, x0:x1].mean() > 0.5, name


def test_text_scales_with_the_image_size():
    small = overlay_boxes(320, 180, OverlaySpec())["stamp"]
    large = overlay_boxes(3508, 2480, OverlaySpec())["stamp"]
    assert (large[3] - large[1]) > 4 * (small[3] - small[1])


@pytest.mark.parametrize("name", ["José Müller — Øre", "Ελένη Παπαδοπούλου", "Анна Иванова", "山田太郎",
                                  "김민준", "张伟", "Zoë Ærø-Ñúñez"])
def test_names_in_every_script_render_as_their_own_glyphs(name):
    from core.imaging.overlays import _tokens, fallback_font

    assert "?" not in "".join(t.text for t in _tokens(name))  # nothing transliterated away
    canvas = np.zeros((80, 40 * len(name) + 40, 3), np.uint8)
    draw_text(canvas, name, (10, 10), 32)
    assert canvas.any()
    for token in _tokens(name):
        typeface = fallback_font(32) if token.kind == "cjk" else font(32)
        missing = typeface.getmask("\uffff").getbbox()
        assert all(typeface.getmask(ch).getbbox() != missing for ch in token.text if not ch.isspace()), token


def test_long_captions_shrink_and_never_overlap():
    long = "Very Long Clinic Name Orthodontics and Dentofacial Orthopedics"
    boxes = overlay_boxes(640, 360, OverlaySpec(clinic_name=long, patient_text=long))
    assert boxes["clinic"][2] < boxes["patient"][0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clinic_name": "x" * 200}, "keep overlay text to 120"),
    ({"patient_text": "two\nlines"}, "single line"),
    ({"logo": np.zeros((10, 10), np.uint8)}, "logo must be an RGB or RGBA uint8 array"),
    ({"outcome_stamp": "yes"}, "outcome_stamp must be True or False"),
])
def test_bad_overlay_specs_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        OverlaySpec(**kwargs)


def test_overlays_refuse_images_too_small_to_read():
    with pytest.raises(ValidationError, match="at least 160 × 90 px"):
        apply_overlays(photo(100, 60), OverlaySpec())


def test_a_logo_is_drawn_before_the_clinic_name():
    logo = np.zeros((40, 40, 4), np.uint8)
    logo[..., 2] = 255
    logo[..., 3] = 255  # opaque blue square
    spec = OverlaySpec(clinic_name="Bright Smile", logo=logo, outcome_stamp=False)
    out = apply_overlays(np.zeros((540, 960, 3), np.uint8), spec)
    x0, y0, x1, y1 = overlay_boxes(960, 540, spec)["clinic"]
    plate = out[y0:y1, x0:x1].astype(int)
    blue = (plate[..., 2] > 200) & (plate[..., 0] < 50)
    columns = np.nonzero(blue.any(axis=0))[0]
    assert columns.size and columns.max() < (x1 - x0) / 3  # the logo is at the left of the plate


def test_top_captions_can_keep_clear_of_a_title_band():
    spec = OverlaySpec(clinic_name="Bright Smile", patient_text="J.M.", outcome_stamp=False)
    boxes = overlay_boxes(1920, 1080, spec, reserved_top=84)
    assert boxes["clinic"][1] > 84 and boxes["patient"][1] > 84
    image = photo(1920, 1080)
    assert not changed(apply_overlays(image, spec, reserved_top=84), image)[:84].any()
    with pytest.raises(ValidationError, match="reserved_top 600"):
        apply_overlays(image, spec, reserved_top=600)
