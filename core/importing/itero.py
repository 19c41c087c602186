"""iTero / OrthoCAD export folders (as MyiTero writes them): finding and parsing the manifest.

An export holds `itero_export_#<order>_v30.xml` (the manifest), `Rx_<order>.html`, gallery JPEGs
(among them five `…_penta_{front,left,right,upper,lower}_m.jpg` views) and the jaw scans as STL.
The manifest is parsed with defusedxml: DTDs, entities and external references are refused, so
XXE and entity-expansion ("billion laughs") payloads never expand. The manifest names a patient:
the parsed values are for matching the case, never for logs or error messages.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as StdElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from core.errors import ValidationError
from core.importing.archives import is_junk
from core.importing.naming import base_name, natural_key

#: Manifests are a few KiB; anything far larger is not one.
MAX_MANIFEST_BYTES = 1024 * 1024
PENTA_VIEWS = ("front", "left", "right", "upper", "lower")
ARCHES = ("upper", "lower")

_MANIFEST_NAME = re.compile(r"^itero_export_#[^/\\]*_v30\.xml$", re.IGNORECASE)
_PENTA = re.compile(r"_penta_(front|left|right|upper|lower)(?:_[a-z0-9]+)?\.jpe?g$", re.IGNORECASE)
_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d%H%M%S",
)
_AGAIN = "export the case again from MyiTero"


@dataclass(frozen=True)
class IteroManifest:
    """The facts of one export's manifest. File names are plain base names, relative to the
    manifest's folder; `penta_views` maps view → file name, `jaw_files` maps arch → STL file name."""

    order_id: str
    order_code: str | None
    case_type: str | None
    patient_last: str
    patient_first: str
    doctor: str | None
    export_time: datetime | None
    itero_version: str | None
    gallery_files: tuple[str, ...] = ()
    penta_views: Mapping[str, str] = field(default_factory=dict)
    jaw_files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.order_id:
            raise ValidationError(f"The iTero manifest has no OrderID; {_AGAIN}.")
        if not (self.patient_last or self.patient_first):
            raise ValidationError(f"The iTero manifest names no patient; {_AGAIN}.")
        if set(self.penta_views) - set(PENTA_VIEWS) or set(self.jaw_files) - set(ARCHES):
            raise ValidationError("Penta views must be front/left/right/upper/lower and jaws upper/lower.")
        # Read-only views keep the frozen manifest actually immutable.
        object.__setattr__(self, "gallery_files", tuple(self.gallery_files))
        object.__setattr__(self, "penta_views", MappingProxyType(dict(self.penta_views)))
        object.__setattr__(self, "jaw_files", MappingProxyType(dict(self.jaw_files)))


def find_itero_export(names: Iterable[str]) -> str | None:
    """The manifest (`itero_export_#<order>_v30.xml`, any case, any folder depth) among the names of
    a folder or ZIP listing, or None. ValidationError when there are several: one export at a time."""
    found = sorted(
        (name for name in names if _MANIFEST_NAME.match(base_name(name)) and not is_junk(name)), key=natural_key
    )
    if len(found) > 1:
        raise ValidationError(f"The upload holds {len(found)} iTero exports; upload one export at a time.")
    return found[0] if found else None


def parse_manifest(xml: bytes, *, folder_names: Iterable[str] = ()) -> IteroManifest:
    """Parse an export manifest safely. `folder_names` (the export's file listing) completes
    `penta_views` when the manifest does not list all five views.

    Raises ValidationError for oversized, malformed or DTD/entity-bearing XML, a manifest of
    another kind or version, unsafe file names, or missing OrderID, Patient or objects.
    """
    if len(xml) > MAX_MANIFEST_BYTES:
        raise ValidationError(f"The iTero manifest is {len(xml):,} bytes, far larger than any real one; {_AGAIN}.")
    try:
        root = SafeElementTree.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise ValidationError(
            f"The iTero manifest contains a DTD or entity declarations, which real exports never do; {_AGAIN}."
        ) from error
    except (StdElementTree.ParseError, ValueError) as error:
        raise ValidationError(f"The iTero manifest is not well-formed XML; {_AGAIN}.") from error
    if _local(root.tag) != "iTeroExport":
        raise ValidationError(f"This XML file is not an iTero export manifest; {_AGAIN}.")
    version = (root.get("Version") or "").strip()
    if not version.startswith("3"):
        raise ValidationError(f"The iTero export format {version or '(none)'} is not supported (3.0 is); {_AGAIN}.")

    values = {_local(element.tag): (element.text or "").strip() for element in _children(root, "RxInfo")}
    objects = [element for element in _children(root, "ExportedObjects") if _local(element.tag) == "Object"]
    missing = [name for name in ("OrderID", "Patient") if not values.get(name)]
    if not objects:
        missing.append("ExportedObjects/Object")
    if missing:
        raise ValidationError(f"The iTero manifest is missing {', '.join(missing)}; {_AGAIN}.")

    last, first = _patient(values["Patient"])
    gallery: list[str] = []
    penta: dict[str, str] = {}
    jaws: dict[str, str] = {}
    for element in objects:
        file_name = _safe_file_name(element.get("FileName") or "")
        kind = (element.get("ObjectType") or "").strip().lower()
        sub_type = (element.get("SubType") or "").strip().lower()
        if kind == "image" and sub_type == "gallery":
            gallery.append(file_name)
            view = _penta_view(file_name)
            if view:
                penta.setdefault(view, file_name)
        elif kind == "surface" and sub_type == "jaw":
            jaw = (element.get("JawId") or "").strip().lower()
            if jaw not in ARCHES:
                raise ValidationError(f"The iTero manifest names a jaw {jaw or '(none)'!r}; expected Upper or Lower.")
            jaws[jaw] = file_name
    for name in folder_names:
        view = _penta_view(base_name(name))
        if view and not is_junk(name):
            penta.setdefault(view, base_name(name))
    return IteroManifest(
        order_id=values["OrderID"],
        order_code=values.get("OrderCode") or None,
        case_type=values.get("CaseTypeName") or None,
        patient_last=last,
        patient_first=first,
        doctor=values.get("Doctor") or None,
        export_time=_parse_time(values.get("ExportTime", "")),
        itero_version=values.get("iTeroVersion") or None,
        gallery_files=tuple(gallery),
        penta_views={view: penta[view] for view in PENTA_VIEWS if view in penta},
        jaw_files=jaws,
    )


def _local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _children(parent: StdElementTree.Element, name: str) -> list[StdElementTree.Element]:
    """The children of `parent`'s first child called `name` (none when it is absent)."""
    child = next((element for element in parent if _local(element.tag) == name), None)
    return list(child) if child is not None else []


def _patient(text: str) -> tuple[str, str]:
    """'Last, First' → (last, first); a name without a comma is taken as the last name."""
    last, _, first = text.partition(",")
    return last.strip(), first.strip()


def _penta_view(file_name: str) -> str | None:
    match = _PENTA.search(file_name)
    return match.group(1).lower() if match else None


def _safe_file_name(name: str) -> str:
    """Manifest file names must be plain names in the export folder (they are looked up there)."""
    cleaned = name.strip()
    if (
        not cleaned
        or len(cleaned) > 255
        or "/" in cleaned
        or "\\" in cleaned
        or cleaned in (".", "..")
        or any(unicodedata.category(char) == "Cc" for char in cleaned)
    ):
        raise ValidationError(f"The iTero manifest lists an invalid file name; {_AGAIN}.")
    return cleaned


def _parse_time(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for pattern in _TIME_FORMATS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None
