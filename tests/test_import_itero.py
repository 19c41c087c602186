"""iTero exports: the synthetic export round-trips through find + parse, and hostile XML is refused."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from core.errors import ValidationError
from core.fixtures.itero import VARIATIONS, make_itero_export
from core.fixtures.meshes import tiny_stl
from core.importing.archives import read_zip
from core.importing.images import load_still
from core.importing.itero import (
    PENTA_VIEWS,
    IteroExport,
    IteroManifest,
    RxInfo,
    find_itero_export,
    parse_date,
    parse_datetime,
    parse_manifest,
    parse_rx,
    parse_utc_offset,
    read_itero_export,
)
from core.importing.sniff import sniff

ORDER = "40123456"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("itero") / "export"
    return make_itero_export(folder, order_id=ORDER, patient=("Example", "Alex"), doctor="Dr. Sample")


def test_round_trip(export: Path) -> None:
    folder = export.parent
    names = sorted(path.name for path in folder.iterdir())
    assert find_itero_export(names) == export.name == f"itero_export_#{ORDER}_v30.xml"
    manifest = parse_manifest(export.read_bytes())
    assert manifest.order_id == ORDER
    assert manifest.order_code == f"OC-{ORDER}"
    assert manifest.case_type == "iRecord"
    assert (manifest.patient_last, manifest.patient_first) == ("Example", "Alex")
    assert manifest.doctor == "Dr. Sample"
    assert manifest.export_time == datetime(2024, 3, 5, 14, 22, 10)
    assert manifest.itero_version == "2.1.0.412"
    assert list(manifest.penta_views) == list(PENTA_VIEWS)
    assert dict(manifest.jaw_files) == {"upper": f"itero_{ORDER}_u.stl", "lower": f"itero_{ORDER}_l.stl"}
    assert len(manifest.gallery_files) == 6
    for name in [*manifest.gallery_files, *manifest.jaw_files.values()]:
        assert (folder / name).is_file()
    assert (folder / f"Rx_{ORDER}.html").is_file()
    assert sniff((folder / f"Rx_{ORDER}.html").read_bytes()) == "html"


def test_export_files_are_what_they_claim(export: Path) -> None:
    manifest = parse_manifest(export.read_bytes())
    folder = export.parent
    views = {view: load_still((folder / name).read_bytes(), name=name) for view, name in manifest.penta_views.items()}
    assert all(image.shape == (1080, 1920, 3) for image in views.values())
    pictures = list(views.values())
    for i, a in enumerate(pictures):
        for b in pictures[i + 1 :]:
            assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() > 3  # each view is distinct
    for name in manifest.jaw_files.values():
        assert sniff((export.parent / name).read_bytes()) == "stl-binary"


def test_custom_stl_and_zip_round_trip(tmp_path: Path) -> None:
    upper = tiny_stl(offset=(1, 2, 3))
    manifest_path = make_itero_export(
        tmp_path / "x", order_id="77", patient=("Doe", "Sam"), doctor="Dr. Who", stl={"upper": upper}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(manifest_path.parent.iterdir()):
            archive.write(path, f"Case 77/export/{path.name}")
        archive.writestr("__MACOSX/Case 77/export/._itero_export_#77_v30.xml", b"junk")
    members = {member.name: member.data for member in read_zip(buffer.getvalue())}
    manifest_name = find_itero_export(members)
    assert manifest_name == "Case 77/export/itero_export_#77_v30.xml"
    manifest = parse_manifest(members[manifest_name], folder_names=members)
    assert dict(manifest.jaw_files) == {"upper": "itero_77_u.stl"}
    assert members["Case 77/export/itero_77_u.stl"] == upper


def test_find_is_case_insensitive_and_rejects_several() -> None:
    assert find_itero_export(["a/b/ITERO_EXPORT_#12_V30.XML", "x.jpg"]) == "a/b/ITERO_EXPORT_#12_V30.XML"
    assert find_itero_export(["itero_export_12_v30.xml", "itero_export_#1_v20.xml", "notes.xml"]) is None
    with pytest.raises(ValidationError, match="holds 2 iTero exports; upload one export at a time"):
        find_itero_export(["itero_export_#1_v30.xml", "other/itero_export_#2_v30.xml"])


def test_penta_views_complete_from_the_folder() -> None:
    xml = b"""<iTeroExport Version="3.0"><RxInfo><OrderID>5</OrderID><Patient>Roe, Kim</Patient></RxInfo>
    <ExportedObjects><Object ObjectType="Image" SubType="Gallery" FileName="gallery_#5.jpg"/></ExportedObjects>
    </iTeroExport>"""
    folder = [f"gallery_#5_penta_{view}_m.jpg" for view in ("lower", "front")]
    manifest = parse_manifest(xml, folder_names=folder)
    assert dict(manifest.penta_views) == {
        "front": "gallery_#5_penta_front_m.jpg",
        "lower": "gallery_#5_penta_lower_m.jpg",
    }
    assert manifest.export_time is None and manifest.doctor is None


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE iTeroExport [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<iTeroExport Version="3.0"><RxInfo><OrderID>1</OrderID><Patient>&xxe;</Patient></RxInfo></iTeroExport>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<iTeroExport Version="3.0"><RxInfo><OrderID>&lol4;</OrderID></RxInfo></iTeroExport>"""

PLAIN_DTD = b"""<?xml version="1.0"?><!DOCTYPE iTeroExport SYSTEM "http://example.invalid/x.dtd">
<iTeroExport Version="3.0"/>"""


@pytest.mark.parametrize("payload", [XXE, LAUGHS, PLAIN_DTD], ids=["xxe", "billion-laughs", "external-dtd"])
def test_hostile_xml_is_refused(payload: bytes) -> None:
    with pytest.raises(ValidationError, match="contains a DTD or entity declarations"):
        parse_manifest(payload)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b'<iTeroExport Version="3.0"><RxInfo><Doctor>D</Doctor></RxInfo></iTeroExport>',
         r"missing OrderID, Patient, ExportedObjects/Object; export the case again from MyiTero"),
        (b'<iTeroExport Version="3.0"><RxInfo><OrderID>9</OrderID><Patient> </Patient></RxInfo>'
         b'<ExportedObjects><Object ObjectType="Image" SubType="Gallery" FileName="a.jpg"/></ExportedObjects>'
         b"</iTeroExport>", r"missing Patient;"),
        (b'<iTeroExport Version="2.0"/>', r"format 2\.0 is not supported"),
        (b"<Other/>", r"not an iTero export manifest"),
        (b"<iTeroExport", r"not well-formed XML"),
        (b'<iTeroExport Version="3.0"><RxInfo><OrderID>9</OrderID><Patient>A, B</Patient></RxInfo>'
         b'<ExportedObjects><Object ObjectType="Surface" SubType="Jaw" JawId="Upper" FileName="../../x.stl"/>'
         b"</ExportedObjects></iTeroExport>", r"lists an invalid file name"),
    ],
)  # fmt: skip
def test_invalid_manifests(xml: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        parse_manifest(xml)
    assert "A, B" not in str(caught.value)  # patient names never appear in messages


def test_manifest_is_immutable(export: Path) -> None:
    manifest = parse_manifest(export.read_bytes())
    with pytest.raises(TypeError):
        manifest.jaw_files["upper"] = "other.stl"  # type: ignore[index]
    with pytest.raises(ValidationError, match="no OrderID"):
        IteroManifest("", None, None, "L", "F", None, None, None)


# --- dates as iTero writes them -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("12/10/2021", date(2021, 12, 10)),  # US: month first
    ("3/5/2024", date(2024, 3, 5)),
    ("13/12/2021", date(2021, 12, 13)),  # cannot be a month: day first
    ("2021-12-10", date(2021, 12, 10)),
    ("20211210", date(2021, 12, 10)),
    ("10.12.2021", date(2021, 12, 10)),
    ("02/30/2021", None),
    ("12/10/21", None),
    ("", None),
    ("soon", None),
])  # fmt: skip
def test_dates(text: str, expected: date | None) -> None:
    assert parse_date(text) == expected


UTC5 = timezone(timedelta(hours=-5))


@pytest.mark.parametrize(("text", "tz", "expected"), [
    ("12/14/2021 20:29:59", None, datetime(2021, 12, 14, 20, 29, 59)),
    ("12/14/2021 20:29:59", UTC5, datetime(2021, 12, 14, 20, 29, 59, tzinfo=UTC5)),
    ("12/14/2021 8:29:59 PM", None, datetime(2021, 12, 14, 20, 29, 59)),
    ("12/14/2021 12:05 AM", None, datetime(2021, 12, 14, 0, 5)),
    ("2021-12-14T20:29:59", UTC5, datetime(2021, 12, 14, 20, 29, 59, tzinfo=UTC5)),
    ("2021-12-14T20:29:59+01:00", UTC5, datetime(2021, 12, 14, 20, 29, 59, tzinfo=timezone(timedelta(hours=1)))),
    ("2021-12-14T20:29:59Z", None, datetime(2021, 12, 14, 20, 29, 59, tzinfo=UTC)),
    ("14.12.2021 20:29", None, datetime(2021, 12, 14, 20, 29)),
    ("20211214202959", None, datetime(2021, 12, 14, 20, 29, 59)),
    ("12/14/2021 25:00:00", None, None),
    ("12/14/2021 13:00 PM", None, None),
])  # fmt: skip
def test_timestamps(text: str, tz: timezone | None, expected: datetime | None) -> None:
    assert parse_datetime(text, tz=tz) == expected


@pytest.mark.parametrize(("text", "minutes"), [
    ("0", 0), ("-5", -300), ("5.5", 330), ("+02:00", 120), ("-03:30", -210), ("UTC+2", 120), ("-300", -300),
    ("", None), ("east", None), ("99", None), ("-1000", None), ("nan", None),
])  # fmt: skip
def test_utc_offsets(text: str, minutes: int | None) -> None:
    offset = parse_utc_offset(text)
    assert (None if offset is None else offset.utcoffset(None) // timedelta(minutes=1)) == minutes


# --- the Rx page --------------------------------------------------------------------------------


def _rx(variation_name: str, tmp_path: Path) -> bytes:
    folder = tmp_path / variation_name
    make_itero_export(folder, order_id=ORDER, patient=("Example", "Alex"), doctor="Dr. Sample, Pat",
                      variation=VARIATIONS[variation_name], view_size=(64, 36))
    return (folder / f"Rx_{ORDER}.html").read_bytes()


def test_the_orthocad_rx_page_is_read_for_what_only_it_holds(tmp_path: Path) -> None:
    data = _rx("rx-only-fields", tmp_path)
    assert data.startswith(b"<?xml") and b"</td>\n\t\t\t\t</td>" in data  # as untidy as the real one
    rx = parse_rx(data)
    assert rx == RxInfo(order_id=ORDER, patient_last="Example", patient_first="Alex", chart_number="CH-4711",
                        scan_date=date(2021, 12, 10), doctor="Dr. Sample, Pat",
                        printed=datetime(2024, 3, 5, 14, 22, 10), images=("itero_element_logo.png",))


def test_an_empty_chart_number_is_not_taken_from_the_next_line(tmp_path: Path) -> None:
    rx = parse_rx(_rx("orthocad", tmp_path).replace(b"Chart #: CH-4711", b"Chart #: "))
    assert rx.chart_number is None and rx.scan_date == date(2021, 12, 10)


def test_the_tidy_rx_table_is_read_too(tmp_path: Path) -> None:
    rx = parse_rx(_rx("tidy", tmp_path))
    assert (rx.patient_last, rx.patient_first, rx.doctor, rx.chart_number) == ("Example", "Alex", "Dr. Sample, Pat",
                                                                              None)


@pytest.mark.parametrize(("data", "message"), [
    (b'<!DOCTYPE html [<!ENTITY x SYSTEM "file:///etc/passwd">]><html><body>Patient: &x;</body></html>',
     "declares entities"),
    (b"<html><body>" + b"x" * (1024 * 1024) + b"</body></html>", "far larger than any real Rx page"),
])  # fmt: skip
def test_hostile_rx_pages_are_not_read(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_rx(data)


def test_the_rx_parser_never_fetches_or_expands_anything() -> None:
    page = (b'<html><head><script>document.write("Patient: Evil, Script")</script></head><body>'
            b'<img src="http://example.invalid/track.png"><p>Patient: Roe, Kim &amp; &lt;b&gt;</p></body></html>')
    rx = parse_rx(page)
    assert (rx.patient_last, rx.patient_first) == ("Roe", "Kim & <b>")  # character references only
    assert rx.images == ("track.png",)


# --- reading whole exports ----------------------------------------------------------------------


def _read(variation: str, tmp_path: Path, **kw: object) -> tuple[IteroExport, Path]:
    spec = VARIATIONS[variation]
    root = tmp_path / variation
    manifest = make_itero_export(root / spec.folder_name(ORDER), order_id=ORDER, patient=("Example", "Alex"),
                                 doctor="Dr. Sample, Pat", variation=spec, view_size=(64, 36), **kw)  # type: ignore[arg-type]
    files = [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    return read_itero_export(files), manifest.parent


@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_every_variation_reads_with_all_views(variation: str, tmp_path: Path) -> None:
    spec = VARIATIONS[variation]
    export, folder = _read(variation, tmp_path)
    assert list(export.views) == list(PENTA_VIEWS)
    assert export.unlisted_views == (() if spec.list_views else tuple(f"gallery_#{ORDER}_penta_{v}_m.jpg"
                                                                         for v in PENTA_VIEWS))
    assert export.gallery == (f"{folder.name}/gallery_#{ORDER}.jpg",)
    assert [jaw.arch for jaw in export.jaws if jaw.status == "ok"] == list(spec.usable_jaws)
    # As the export writes it: the Rx page's "Last, First", else the manifest's text.
    assert export.patient.written == ("Alex, Example" if spec.manifest_first_last and not spec.rx else "Example, Alex")
    assert export.patient.order_known is spec.rx
    expected_names = (("Example", "Alex"),) if spec.rx else (("Alex", "Example"), ("Example", "Alex"))
    assert export.patient.names == expected_names
    assert export.patient.chart_number == spec.chart_number
    assert export.scan_date == spec.scan_date
    assert export.doctor == "Dr. Sample, Pat"
    assert export.manifest.export_time is not None
    assert export.manifest.export_time.replace(tzinfo=None) == datetime(2024, 3, 5, 14, 22, 10)
    offset = parse_utc_offset(spec.utc_offset or "")
    assert export.manifest.export_time.tzinfo == offset
    assert export.ignored == ((f"{folder.name}/itero_element_logo.png",) if spec.logo else ())
    broken = [arch for arch, state in spec.jaws.items() if state not in ("ok", "ascii")]
    assert len(export.warnings) == len(broken)
    assert all(arch in warning and "the views were imported without it" in warning.lower()
               for arch, warning in zip(broken, export.warnings, strict=True))
    assert "Example" not in " ".join(export.warnings)  # warnings name files, never the patient


def test_extra_manifest_fields_are_kept_except_the_patients(tmp_path: Path) -> None:
    export, _ = _read("logo-extra-fields", tmp_path)
    fields = dict(export.manifest.fields)
    assert fields["DoctorLicense"] == "L-55501" and fields["PracticeShipToAddress"].startswith("1 Example Street")
    assert fields["DueDate"] == "2024-03-07" and export.manifest.due_date == date(2024, 3, 7)
    assert "Patient" not in fields


def test_jaw_scans_are_checked_by_content(tmp_path: Path) -> None:
    export, _ = _read("shell-jaws", tmp_path)
    upper, lower = export.jaws
    assert (upper.file_name, upper.mesh.format, upper.mesh.triangles) == (f"{ORDER}_shell_occlusion_u.stl",
                                                                          "binary STL", 4)
    assert (lower.mesh.format, lower.mesh.content_type) == ("ASCII STL", "model/stl") and lower.mesh.triangles > 1000
    broken, _ = _read("broken-jaws", tmp_path)
    assert [(j.status, j.problem) for j in broken.jaws] == [
        ("broken", f"itero_{ORDER}_u.stl is empty (0 bytes)."),
        ("broken", f"itero_{ORDER}_l.stl is an HTML page, not an STL or PLY model."),
    ]
    missing, _ = _read("missing-jaws", tmp_path)
    assert [j.status for j in missing.jaws] == ["missing", "broken"]
    assert "truncated" in (missing.jaws[1].problem or "")


def test_unlisted_jaws_are_found_by_name(tmp_path: Path) -> None:
    _, folder = _read("orthocad", tmp_path)
    manifest = folder / f"itero_export_#{ORDER}_v30.xml"
    manifest.write_bytes(re.sub(rb"<Object ObjectType=\"Surface\"[^>]*/>", b"", manifest.read_bytes()))
    files = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    again = read_itero_export(files)
    assert [(j.arch, j.status) for j in again.jaws] == [("upper", "ok"), ("lower", "ok")]


def test_a_file_named_like_a_view_is_checked_by_content(tmp_path: Path) -> None:
    _, folder = _read("unlisted-views", tmp_path)
    (folder / f"gallery_#{ORDER}_penta_left_m.jpg").write_bytes(b"<html><body>not a picture</body></html>")
    export = read_itero_export([(p.name, p.read_bytes()) for p in sorted(folder.iterdir())])
    assert list(export.views) == ["front", "right", "upper", "lower"]
    assert export.warnings == (f"gallery_#{ORDER}_penta_left_m.jpg is named like the left scanner view but is an "
                               "HTML page; it was skipped.",)


def test_only_the_manifests_folder_counts(tmp_path: Path) -> None:
    _, folder = _read("tidy", tmp_path)
    files = [(f"case/{p.name}", p.read_bytes()) for p in sorted(folder.iterdir())]
    files.append(("other/gallery_#9_penta_front_m.jpg", files[0][1]))
    export = read_itero_export(files)
    assert all(path.startswith("case/") for path in export.views.values())


def test_an_rx_page_of_another_order_is_not_used(tmp_path: Path) -> None:
    _, folder = _read("rx-only-fields", tmp_path)
    rx = folder / f"Rx_{ORDER}.html"
    rx.write_bytes(rx.read_bytes().replace(f"Order ID: {ORDER}".encode(), b"Order ID: 99999"))
    export = read_itero_export([(p.name, p.read_bytes()) for p in sorted(folder.iterdir())])
    assert export.rx is None and export.patient.chart_number is None and not export.patient.order_known
    assert export.warnings == (f"Rx_{ORDER}.html belongs to another order than the manifest; it was not read.",)


def test_manifest_and_rx_naming_different_people_is_a_warning(tmp_path: Path) -> None:
    _, folder = _read("swapped-names", tmp_path)
    rx = folder / f"Rx_{ORDER}.html"
    rx.write_bytes(rx.read_bytes().replace(b"Example, Alex", b"Other, Sam"))
    export = read_itero_export([(p.name, p.read_bytes()) for p in sorted(folder.iterdir())])
    assert export.patient.names == (("Other", "Sam"),)
    assert export.warnings == ("The manifest and the Rx page name the patient differently; check the patient "
                               "before importing.",)


def test_an_export_without_pictures_is_refused(tmp_path: Path) -> None:
    _, folder = _read("tidy", tmp_path)
    files = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if not p.name.endswith(".jpg")]
    with pytest.raises(ValidationError, match="holds no scanner views"):
        read_itero_export(files)


def test_a_hostile_rx_page_is_skipped_and_the_manifest_names_the_patient(tmp_path: Path) -> None:
    _, folder = _read("swapped-names", tmp_path)
    (folder / f"Rx_{ORDER}.html").write_bytes(b'<!DOCTYPE html [<!ENTITY a "b">]><html><body>Patient: &a;</body>'
                                               b"</html>")
    export = read_itero_export([(p.name, p.read_bytes()) for p in sorted(folder.iterdir())])
    assert export.rx is None and export.patient.names == (("Alex", "Example"), ("Example", "Alex"))
    assert export.warnings == (f"The Rx page declares entities, which real Rx pages never do (Rx_{ORDER}.html); "
                               "it was not read.",)
