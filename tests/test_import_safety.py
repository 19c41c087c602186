"""Import safety: content sniffing, ZIP rules, still-image decoding and file-name conventions."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.errors import ValidationError
from core.fixtures.meshes import tiny_stl
from core.importing import archives
from core.importing.archives import ZipMember, extract_zip, read_limited, read_zip
from core.importing.images import load_still
from core.importing.limits import DEFAULT_LIMITS, GIB, MIB, ImportLimits
from core.importing.naming import (
    StagedModelName,
    natural_key,
    parse_staged_model_name,
    stage_number,
)
from core.importing.sniff import STILL_IMAGE_FORMATS, sniff

# --- helpers --------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def rgb_image(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 60)) -> Image.Image:
    return Image.new("RGB", (width, height), color)


def png(width: int = 32, height: int = 24) -> bytes:
    return encode(rgb_image(width, height), "PNG")


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are written on purpose
        for name, data in entries:
            archive.writestr(name, data, compress_type=compression)
    return buffer.getvalue()


def patch_headers(data: bytes, *, flag: int = 0, file_size: int | None = None) -> bytes:
    """Set flag bits and/or the uncompressed size in every local and central header (crafted archives)."""
    raw = bytearray(data)
    for signature, flag_at, size_at in ((b"PK\x03\x04", 6, 22), (b"PK\x01\x02", 8, 24)):
        at = raw.find(signature)
        while at >= 0:
            struct.pack_into("<H", raw, at + flag_at, struct.unpack_from("<H", raw, at + flag_at)[0] | flag)
            if file_size is not None:
                struct.pack_into("<I", raw, at + size_at, file_size)
            at = raw.find(signature, at + 4)
    return bytes(raw)


def small(**overrides: int) -> ImportLimits:
    return ImportLimits(**overrides)


# --- sniffing -------------------------------------------------------------------------------


def ebml(doctype: bytes) -> bytes:
    body = b"\x42\x86\x81\x01" + b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18\x53\x80\x67" + b"\x00" * 16


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free"


SNIFF_CASES = [
    (png(), "png"),
    (encode(rgb_image(), "JPEG"), "jpeg"),
    (encode(rgb_image(), "WEBP"), "webp"),
    (encode(rgb_image(), "GIF"), "gif"),
    (encode(rgb_image(), "TIFF"), "tiff"),
    (encode(rgb_image(), "BMP"), "bmp"),
    (make_zip([("a.txt", b"hello")]), "zip"),
    (ftyp(b"isom", b"isom", b"avc1", b"mp41"), "mp4"),
    (ftyp(b"mp42", b"mp42", b"isom"), "mp4"),
    (ftyp(b"qt  ", b"qt  "), "mov"),
    (ftyp(b"heic", b"mif1", b"heic"), None),
    (ebml(b"webm"), "webm"),
    (ebml(b"matroska"), "mkv"),
    (tiny_stl(), "stl-binary"),
    (b"solid cube\n facet normal 0 0 1\n  outer loop\n   vertex 0 0 0\n", "stl-ascii"),
    (b"solid name-but-no-facets\nendsolid\n", None),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n", "ply"),
    (b"# exported\no arch\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1 2 3\n", "obj"),
    (b'<?xml version="1.0"?><iTeroExport Version="3.0"/>', "xml"),
    (b'\xef\xbb\xbf<iTeroExport Version="3.0"></iTeroExport>', "xml"),
    (b"<!DOCTYPE html><html><body>Rx</body></html>", "html"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE html>\n<html></html>', "html"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
    (b"just some notes\nabout the case\n", None),
    (bytes(range(256)) * 4, None),
    (b"", None),
]


@pytest.mark.parametrize(("data", "expected"), SNIFF_CASES, ids=[str(i) for i in range(len(SNIFF_CASES))])
def test_sniff_by_content(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


def test_a_png_named_jpg_is_a_png_and_loads() -> None:
    data = png(10, 8)
    assert sniff(data) == "png"
    assert load_still(data, name="photo.jpg").shape == (8, 10, 3)


def test_a_text_file_named_png_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"notes\.png is of an unknown type, not a still image; export stills"):
        load_still(b"this is not a picture at all", name="notes.png")


def test_still_formats_are_png_jpeg_webp() -> None:
    assert STILL_IMAGE_FORMATS == ("png", "jpeg", "webp")


# --- ZIP rules ------------------------------------------------------------------------------


def test_read_zip_returns_members_in_archive_order() -> None:
    data = make_zip([("b.png", b"BBB"), ("sub/a.png", b"AA"), ("c.png", b"C")])
    members = read_zip(data)
    assert members == [ZipMember("b.png", b"BBB"), ZipMember("sub/a.png", b"AA"), ZipMember("c.png", b"C")]


def test_read_zip_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(make_zip([("x.png", b"xyz")]))
    assert read_zip(path) == [ZipMember("x.png", b"xyz")]


def test_entry_count_over_the_limit() -> None:
    data = make_zip([(f"{i}.png", b"x") for i in range(6)])
    with pytest.raises(ValidationError, match=r"The ZIP holds 6 files; the limit is 5\. Split it"):
        read_zip(data, limits=small(max_files=5))


def test_entry_count_is_checked_from_the_end_record_before_parsing() -> None:
    data = bytearray(make_zip([("a.png", b"x")]))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 12000, 12000)  # claim 12,000 entries
    with pytest.raises(ValidationError, match=r"holds 12,000 files; the limit is 5,000"):
        read_zip(bytes(data))


def test_entry_too_large_by_its_declared_size() -> None:
    data = make_zip([("big.png", bytes(range(256)) * 8)], compression=zipfile.ZIP_STORED)
    expected = r"'big\.png' in the ZIP is 2 KiB uncompressed; the limit per file is 1,000 bytes"
    with pytest.raises(ValidationError, match=expected):
        read_zip(data, limits=small(max_entry_bytes=1000))


def test_total_size_over_the_limit() -> None:
    payload = bytes(range(256)) * 2
    data = make_zip([(f"{i}.bin", payload) for i in range(3)], compression=zipfile.ZIP_STORED)
    with pytest.raises(ValidationError, match=r"The ZIP unpacks to more than"):
        read_zip(data, limits=small(max_total_bytes=1200))


def test_a_header_that_understates_the_size_cannot_inflate_past_it() -> None:
    # 8 MiB of data whose headers claim 100 bytes: reading stops at the claimed size and the
    # checksum then fails, so nothing near 8 MiB is produced.
    data = patch_headers(make_zip([("liar.png", np.random.default_rng(1).bytes(8 * MIB))]), file_size=100)
    with pytest.raises(ValidationError, match=r"'liar\.png' in the ZIP could not be decompressed .*re-create the ZIP"):
        read_zip(data)


def test_streaming_reader_stops_just_past_the_limit() -> None:
    class Endless:
        calls = 0

        def read(self, size: int = -1) -> bytes:
            Endless.calls += 1
            return b"\0" * size

    produced = sum(len(chunk) for chunk in read_limited(Endless(), 10_000, 4096))  # type: ignore[arg-type]
    assert produced == 10_001
    assert Endless.calls == 3


def test_streaming_cap_applies_when_the_declared_size_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the central directory under-declared (the pre-check passes); the streaming count still stops it.
    data = make_zip([("a.bin", b"\1" * 5000)], compression=zipfile.ZIP_STORED)
    limits = small(max_entry_bytes=1000)
    original_plan = archives._plan

    def lenient_plan(archive: zipfile.ZipFile, *args: object) -> list[tuple[zipfile.ZipInfo, str]]:
        return original_plan(archive, DEFAULT_LIMITS, *args[1:])  # type: ignore[arg-type]

    monkeypatch.setattr(archives, "_plan", lenient_plan)
    expected = r"'a\.bin' in the ZIP is more than 1,000 bytes uncompressed; the limit per file is 1,000 bytes"
    with pytest.raises(ValidationError, match=expected):
        read_zip(data, limits=limits)


def test_compression_ratio_bomb() -> None:
    data = make_zip([("zeros.png", bytes(20 * MIB))])
    assert len(data) < 100_000
    expected = r"'zeros\.png' in the ZIP is compressed [\d,]+:1, which is typical of a ZIP bomb; the limit is 100:1"
    with pytest.raises(ValidationError, match=expected):
        read_zip(data)


def test_overall_ratio_counts_the_whole_archive() -> None:
    data = make_zip([(f"{i}.txt", bytes(100_000)) for i in range(40)])  # each under the 1 MiB floor
    with pytest.raises(ValidationError, match=r"The ZIP is compressed [\d,]+:1"):
        read_zip(data)


def test_small_highly_compressible_files_are_fine() -> None:
    assert read_zip(make_zip([("blank.txt", bytes(200_000))]))[0].data == bytes(200_000)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x.png", r"points outside the archive"),
        ("frames/../../x.png", r"points outside the archive"),
        ("/etc/x.png", r"is absolute"),
        ("C:/x.png", r"is absolute"),
        ("frames/D:x.png", r"is absolute"),
        ("frames\\..\\x.png", r"contains a backslash"),
        ("a\x07b.png", r"contains control characters"),
        ("photo\u202egnp.exe", r"contains control characters"),
        ("x" * 252 + ".png", r"is 256 characters long; the limit is 255"),
    ],
)
def test_unsafe_member_names(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        read_zip(make_zip([(zipfile.ZipInfo(name), b"data")]))


def test_nul_in_a_member_name_is_refused() -> None:
    data = make_zip([("aXb.png", b"data")]).replace(b"aXb.png", b"a\x00b.png")
    with pytest.raises(ValidationError, match=r"'a\?b\.png' contains control characters"):
        read_zip(data)


@pytest.mark.parametrize("name", ["", "/", "./"])
def test_empty_member_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=r"file without a name"):
        read_zip(make_zip([(zipfile.ZipInfo(name), b"data")]))


def test_symlink_member_is_refused() -> None:
    info = zipfile.ZipInfo("frames/link.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(ValidationError, match=r"'frames/link\.png' in the ZIP is a symbolic link"):
        read_zip(make_zip([(info, b"/etc/passwd")]))


def test_encrypted_member_is_refused() -> None:
    data = patch_headers(make_zip([("secret.png", b"data")]), flag=0x1)
    with pytest.raises(ValidationError, match=r"'secret\.png' in the ZIP is password-protected"):
        read_zip(data)


@pytest.mark.parametrize("inner_name", ["inner.zip", "looks-like-a.png"])
def test_nested_zip_is_refused(inner_name: str) -> None:
    inner = make_zip([("a.png", png())])
    with pytest.raises(ValidationError, match=r"is itself a ZIP archive; nested archives are not accepted"):
        read_zip(make_zip([("ok.png", png()), (inner_name, inner)]))


@pytest.mark.parametrize("second", ["a.png", "./a.png", "sub/../a.png"])
def test_duplicate_names_are_refused(second: str) -> None:
    entries = [("a.png", b"1"), (zipfile.ZipInfo(second), b"2")]
    expected = r"holds 'a\.png' more than once" if ".." not in second else r"points outside"
    with pytest.raises(ValidationError, match=expected):
        read_zip(make_zip(entries))


def test_junk_and_directories_are_skipped() -> None:
    data = make_zip(
        [
            ("frames/", b""),
            ("frames/02.png", b"2"),
            ("__MACOSX/frames/._02.png", b"resource fork"),
            ("frames/.DS_Store", b"finder"),
            ("frames/Thumbs.db", b"thumbs"),
            ("frames/._01.png", b"appledouble"),
            ("frames/01.png", b"1"),
        ]
    )
    assert [member.name for member in read_zip(data)] == ["frames/02.png", "frames/01.png"]


def test_allowed_filter_skips_without_reading() -> None:
    data = make_zip([("a.png", b"1"), ("notes.txt", bytes(20 * MIB)), ("b.png", b"2")])
    members = read_zip(data, allowed=lambda name: name.endswith(".png"))
    assert [member.name for member in members] == ["a.png", "b.png"]


@pytest.mark.parametrize("data", [b"PK\x03\x04 truncated", b"not a zip at all", b""])
def test_corrupt_zip(data: bytes) -> None:
    with pytest.raises(ValidationError, match=r"could not be read as a ZIP archive"):
        read_zip(data)


def test_truncated_zip() -> None:
    data = make_zip([("a.bin", np.random.default_rng(2).bytes(50_000))])
    with pytest.raises(ValidationError, match=r"could not be read as a ZIP archive"):
        read_zip(data[: len(data) // 2])


def test_extract_zip_streams_to_disk(tmp_path: Path) -> None:
    data = make_zip([("frames/01.png", b"one"), ("02.png", b"two"), ("__MACOSX/._x", b"junk")])
    extracted = extract_zip(data, tmp_path)
    assert [(item.name, item.path.read_bytes(), item.size) for item in extracted] == [
        ("frames/01.png", b"one", 3),
        ("02.png", b"two", 3),
    ]
    assert all(item.path.is_relative_to(tmp_path) for item in extracted)


def test_extract_zip_removes_what_it_wrote_on_error(tmp_path: Path) -> None:
    data = make_zip([("frames/01.png", b"one"), ("frames/bomb.png", bytes(20 * MIB))])
    with pytest.raises(ValidationError, match="ZIP bomb"):
        extract_zip(data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_extract_zip_refuses_zip_slip_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "dest"
    target.mkdir()
    with pytest.raises(ValidationError, match="points outside"):
        extract_zip(make_zip([("ok.png", b"1"), ("../evil.png", b"2")]), target)
    assert list(tmp_path.iterdir()) == [target]
    assert list(target.iterdir()) == []


def test_limits_validate_and_have_documented_defaults() -> None:
    assert DEFAULT_LIMITS.max_files == 5000
    assert DEFAULT_LIMITS.max_total_bytes == 2 * GIB
    assert DEFAULT_LIMITS.max_entry_bytes == 200 * MIB
    assert DEFAULT_LIMITS.max_image_pixels == 50_000_000
    with pytest.raises(ValidationError, match=r"ImportLimits\.max_files is 0; it must be a positive whole number"):
        ImportLimits(max_files=0)


# --- still images ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "label"), [("GIF", "is a GIF image"), ("TIFF", "is a TIFF image"), ("BMP", "is a BMP image")]
)
def test_other_image_types_are_refused(fmt: str, label: str) -> None:
    with pytest.raises(ValidationError, match=rf"frame 3 {label}.*export stills \(PNG, JPEG or WebP\)"):
        load_still(encode(rgb_image(), fmt), name="frame 3")


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animated_files_are_refused(fmt: str) -> None:
    frames = [rgb_image(color=color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ValidationError, match=r"frame 3 is an animated (WebP|PNG) \(2 frames\); export stills"):
        load_still(data, name="frame 3")


def test_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_to_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    with pytest.raises(ValidationError, match=r"big\.png is 100×100 pixels \(10,000\); the limit is 1,000 pixels"):
        load_still(png(100, 100), name="big.png", limits=small(max_image_pixels=1000))


def test_decompression_bomb_header_is_refused_without_decoding() -> None:
    # A valid 1×1 PNG whose header claims 20,000 × 20,000 pixels.
    data = bytearray(png(1, 1))
    struct.pack_into(">II", data, 16, 20_000, 20_000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    with pytest.raises(ValidationError, match=r"bomb\.png .*(too large to open safely|the limit is 50,000,000 pixels)"):
        load_still(bytes(data), name="bomb.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_files_are_refused(fmt: str) -> None:
    noisy = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(ValidationError, match=r"shot could not be read as an image .*; re-export it"):
        load_still(data[: len(data) // 2], name="shot")


def test_exif_orientation_is_applied_and_no_metadata_survives() -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "ExampleCam"
    data = encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    result = load_still(data, name="x.jpg")
    assert type(result) is np.ndarray and result.dtype == np.uint8
    assert result.shape == (40, 20, 3)  # portrait now
    assert result[5, 10, 0] > 200 and result[5, 10, 2] < 60  # the red half went to the top
    assert result[35, 10, 2] > 200 and result[35, 10, 0] < 60


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (255, 0, 0, 128)
    result = load_still(encode(Image.fromarray(rgba, "RGBA"), "PNG"), name="a.png")
    assert tuple(result[0, 0]) == (255, 0, 0)
    assert tuple(result[1, 1]) == (255, 255, 255)  # fully transparent → white
    assert result[0, 1, 0] == 255 and 120 <= result[0, 1, 1] <= 135


def test_palette_la_cmyk_and_16_bit_become_rgb() -> None:
    palette = rgb_image(color=(10, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert tuple(load_still(encode(palette, "PNG"), name="p.png")[0, 0]) == (10, 20, 30)
    la = Image.new("LA", (2, 2), (0, 0))
    assert tuple(load_still(encode(la, "PNG"), name="la.png")[0, 0]) == (255, 255, 255)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert load_still(encode(cmyk, "JPEG"), name="c.jpg").shape == (4, 4, 3)
    deep = Image.fromarray(np.array([[65535, 32768]], np.uint16))
    assert load_still(encode(deep, "PNG"), name="d.png")[0, :, 0].tolist() == [255, 128]


# --- naming ---------------------------------------------------------------------------------


def test_natural_sort() -> None:
    names = ["Stage 10.png", "stage 2.png", "Stage 1.png", "zips/Stage 3.png", "STAGE 20.png"]
    expected = ["Stage 1.png", "stage 2.png", "zips/Stage 3.png", "Stage 10.png", "STAGE 20.png"]
    assert sorted(names, key=natural_key) == expected
    clincheck = ["ClinCheck_10_upper.png", "ClinCheck_02_upper.png", "ClinCheck_1_upper.png"]
    expected = ["ClinCheck_1_upper.png", "ClinCheck_02_upper.png", "ClinCheck_10_upper.png"]
    assert sorted(clincheck, key=natural_key) == expected
    assert sorted(["b/x2.png", "a/x10.png"], key=natural_key) == ["b/x2.png", "a/x10.png"]  # folders ignored


@pytest.mark.parametrize(
    ("name", "stage"),
    [
        ("Stage 07.png", 7),
        ("stage_7.jpg", 7),
        ("Step 7.png", 7),
        ("Aligner 12.png", 12),
        ("subsetup7.stl", 7),
        ("#07.png", 7),
        ("ClinCheck #3 front.png", 3),
        ("07.png", 7),
        ("frames/12.webp", 12),
        ("ClinCheck_02_upper.png", 2),
        ("Stage 0.png", 0),
        ("Stage07_Mandibular.stl", 7),
        ("front.png", None),
        ("Screenshot 2024-05-01 at 10.22.33.png", None),
        ("IMG_20240501.jpg", None),
        ("photo3_v2.png", None),
    ],
)
def test_stage_number(name: str, stage: int | None) -> None:
    assert stage_number(name) == stage


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("subsetup7_lower.stl", ("lower", 7)),
        ("Upper_Stage_07.stl", ("upper", 7)),
        ("Maxillary_Step_07.ply", ("upper", 7)),
        ("Stage07_Mandibular.obj", ("lower", 7)),
        ("lower_subsetup12.STL", ("lower", 12)),
        ("case/UpperJaw Stage 3.stl", ("upper", 3)),
        ("Max_05.stl", ("upper", 5)),
        ("Mand 5.stl", ("lower", 5)),
        ("U7.stl", ("upper", 7)),
        ("stage_10_L.stl", ("lower", 10)),
        ("Upper_Stage_07.png", None),  # not a model
        ("Stage_07.stl", None),  # no arch
        ("Upper.stl", None),  # no stage
        ("Upper_Lower_07.stl", None),  # both arches
        ("itero_12345678_u.stl", None),  # an order number, not a stage
    ],
)
def test_parse_staged_model_name(name: str, expected: tuple[str, int] | None) -> None:
    parsed = parse_staged_model_name(name)
    assert parsed == (StagedModelName(*expected) if expected else None)  # type: ignore[arg-type]


def test_staged_model_name_validates() -> None:
    with pytest.raises(ValidationError):
        StagedModelName("middle", 3)  # type: ignore[arg-type]
