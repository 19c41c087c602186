"""iTero exports: the synthetic export round-trips through find + parse, and hostile XML is refused."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from core.errors import ValidationError
from core.fixtures.itero import make_itero_export
from core.fixtures.meshes import tiny_stl
from core.importing.archives import read_zip
from core.importing.images import load_still
from core.importing.itero import PENTA_VIEWS, IteroManifest, find_itero_export, parse_manifest
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
