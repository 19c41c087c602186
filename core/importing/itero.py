"""iTero / OrthoCAD export folders (as MyiTero and OrthoCAD write them), read as clinics have them.

An export folder (often "OrthoCAD_Export_<order> (4)" after a few downloads) holds
`itero_export_#<order>_v30.xml` (the manifest), `Rx_<order>.html` (the prescription page), a
gallery JPEG, five `gallery_#<order>_penta_{front,left,right,upper,lower}_m.jpg` scanner views,
the jaw scans (`<order>_shell_occlusion_u.stl` / `_l.stl`, or `itero_<order>_u.stl`) and a logo.

Real exports are less tidy than their manifest suggests, so the folder is trusted as much as the
manifest (`read_itero_export`):
- the penta views are found by name pattern and checked by content whether listed or not (real
  manifests list only the gallery JPEG and the jaws); logos are ignored;
- the Rx page is read for what only it holds (chart number, scan date, the patient's name in
  "Last, First" order, the dentist); the manifest's `Patient` is written "First, Last"-like, so its
  order is not trusted;
- dates are read in the formats iTero writes (US "12/14/2021 20:29:59", ISO, day-first when it
  must be) with the export's `UtcOffset`;
- jaw scans are checked by content (binary/ASCII STL or PLY, triangle count). Missing, empty or
  broken jaws (a 0-byte file, an HTML page named `.stl`) do not stop the views from being imported;
  they are reported as warnings.

Safety: the manifest is parsed with defusedxml (DTDs, entities and external references refused,
so XXE and "billion laughs" never expand). The Rx page is parsed with lxml's HTML parser with
network access off; an Rx page declaring entities is not read at all. Both are size-capped. The
parsed names are for matching the case, never for logs; error messages and warnings name files,
never the patient.
"""

from __future__ import annotations

import math
import re
import unicodedata
import xml.etree.ElementTree as StdElementTree
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Literal

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree
from lxml import etree

from core.errors import ValidationError
from core.importing.archives import is_junk
from core.importing.limits import DEFAULT_LIMITS, ImportLimits
from core.importing.meshes import MeshSummary, inspect_mesh
from core.importing.naming import base_name, natural_key
from core.importing.sniff import STILL_IMAGE_FORMATS, describe, sniff

#: Manifests and Rx pages are a few KiB; anything far larger is not one.
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_RX_BYTES = 1024 * 1024
PENTA_VIEWS = ("front", "left", "right", "upper", "lower")
ARCHES = ("upper", "lower")

_MANIFEST_NAME = re.compile(r"^itero_export_#[^/\\]*_v30\.xml$", re.IGNORECASE)
_PENTA = re.compile(r"_penta_(front|left|right|upper|lower)(?:_[a-z0-9]+)?\.(?:jpe?g|png)$", re.IGNORECASE)
_GALLERY = re.compile(r"^gallery_[^/\\]*\.(?:jpe?g|png)$", re.IGNORECASE)
_RX_NAME = re.compile(r"^rx_[^/\\]*\.html?$", re.IGNORECASE)
_JAW_NAMES = (
    re.compile(r"(?:^|_)shell_occlusion_([ul])\.(?:stl|ply)$", re.IGNORECASE),  # OrthoCAD
    re.compile(r"^itero_[^/\\]*_([ul])\.(?:stl|ply)$", re.IGNORECASE),  # MyiTero
)
_IMAGE_SUFFIX = re.compile(r"\.(?:jpe?g|png|webp|gif|bmp)$", re.IGNORECASE)
_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
# Manifest fields that describe the patient stay out of `IteroManifest.fields` (which is stored as
# facts of the export): they are read into the dedicated fields and used for matching only.
_PATIENT_FIELD = re.compile(r"patient|chart|birth|dob", re.IGNORECASE)
_AGAIN = "export the case again from MyiTero"
_JAW_AGAIN = "To keep the scan with the patient, export the case again from MyiTero and import it."


# --- dates --------------------------------------------------------------------------------------

_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_DOTTED_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?$")
_OFFSET_TEXT = re.compile(r"^(?:UTC|GMT)?\s*([+-])?(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


def parse_date(text: str) -> date | None:
    """A calendar date as iTero writes one: US "12/10/2021" (month first, unless the first number
    cannot be a month: "13/12/2021"), ISO "2021-12-10" or "20211210", or dotted "10.12.2021".
    None when the text is empty or not such a date."""
    text = " ".join(text.split())
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    found = _US_DATE.match(text)
    if found:
        first, second, year = (int(part) for part in found.groups())
        month, day = (second, first) if first > 12 else (first, second)
        return _date(year, month, day)
    found = _DOTTED_DATE.match(text)
    if found:
        day, month, year = (int(part) for part in found.groups())
        return _date(year, month, day)
    return None


def parse_datetime(text: str, *, tz: timezone | None = None) -> datetime | None:
    """A timestamp as iTero writes one ("12/14/2021 20:29:59", "12/14/2021 8:29:59 PM", ISO with or
    without an offset, "14.12.2021 20:29", "20211214202959"). A timestamp without its own offset
    gets `tz` (the export's UtcOffset) when given, else stays naive (local time of the scanner)."""
    text = " ".join(text.split())
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = _parse_datetime_parts(text)
    if parsed is None:
        return None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None and tz is not None else parsed


def parse_utc_offset(text: str) -> timezone | None:
    """The export's UtcOffset as a timezone: hours ("0", "-5", "5.5", "+02:00", "UTC+2") or, when
    too large to be hours, minutes ("-300"). None when empty or not a plausible offset."""
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        found = _OFFSET_TEXT.match(text)
        if not found:
            return None
        sign = -1 if found[1] == "-" else 1
        minutes = sign * (int(found[2]) * 60 + int(found[3] or 0))
    else:
        if not math.isfinite(number) or abs(number) > 14 * 60:
            return None
        minutes = round(number * 60) if abs(number) <= 14 else round(number)
    if abs(minutes) > 14 * 60 or minutes % 15:  # real offsets are whole quarter hours
        return None
    return timezone(timedelta(minutes=minutes))


def _parse_datetime_parts(text: str) -> datetime | None:
    if re.fullmatch(r"\d{14}", text):
        try:
            return datetime.strptime(text, "%Y%m%d%H%M%S")
        except ValueError:
            return None
    date_text, _, time_text = text.partition(" ")
    day = parse_date(date_text)
    if day is None:
        return None
    if not time_text:
        return datetime(day.year, day.month, day.day)
    found = _TIME.match(time_text)
    if not found:
        return None
    hour, minute, second = int(found[1]), int(found[2]), int(found[3] or 0)
    if found[4]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if found[4].lower() == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return datetime(day.year, day.month, day.day, hour, minute, second)


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


# --- the manifest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IteroManifest:
    """The facts of one export's manifest. File names are plain base names, relative to the
    manifest's folder; `penta_views` maps view → file name, `jaw_files` maps arch → file name.

    `patient_last` / `patient_first` are the manifest's `Patient` split at its comma, in the order
    written; real exports write "First, Last" there, so `read_itero_export` decides the order.
    `fields` holds every RxInfo value except the patient's (for the record of the import).
    """

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
    utc_offset: timezone | None = None
    due_date: date | None = None
    scan_date: date | None = None
    chart_number: str | None = None
    date_of_birth: date | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

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
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def patient_text(self) -> str:
        """The manifest's `Patient` as written (for display next to the Rx page's version)."""
        return ", ".join(part for part in (self.patient_last, self.patient_first) if part)


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

    values = {_local(element.tag): _clean(element.text or "") for element in _children(root, "RxInfo")}
    objects = [element for element in _children(root, "ExportedObjects") if _local(element.tag) == "Object"]
    missing = [name for name in ("OrderID", "Patient") if not values.get(name)]
    if not objects:
        missing.append("ExportedObjects/Object")
    if missing:
        raise ValidationError(f"The iTero manifest is missing {', '.join(missing)}; {_AGAIN}.")

    before_comma, _, after_comma = values["Patient"].partition(",")
    gallery: list[str] = []
    penta: dict[str, str] = {}
    jaws: dict[str, str] = {}
    for element in objects:
        file_name = _safe_file_name(element.get("FileName") or "")
        kind = (element.get("ObjectType") or "").strip().lower()
        sub_type = (element.get("SubType") or "").strip().lower()
        if kind == "image" and sub_type == "gallery":
            gallery.append(file_name)
            view = penta_view(file_name)
            if view:
                penta.setdefault(view, file_name)
        elif kind == "surface" and sub_type == "jaw":
            jaw = (element.get("JawId") or "").strip().lower()
            if jaw not in ARCHES:
                raise ValidationError(f"The iTero manifest names a jaw {jaw or '(none)'!r}; expected Upper or Lower.")
            jaws[jaw] = file_name
    for name in folder_names:
        view = penta_view(base_name(name))
        if view and not is_junk(name):
            penta.setdefault(view, base_name(name))
    offset = parse_utc_offset(values.get("UtcOffset", ""))
    return IteroManifest(
        order_id=values["OrderID"],
        order_code=values.get("OrderCode") or None,
        case_type=values.get("CaseTypeName") or None,
        patient_last=before_comma.strip(),
        patient_first=after_comma.strip(),
        doctor=values.get("Doctor") or None,
        export_time=parse_datetime(values.get("ExportTime", ""), tz=offset),
        itero_version=values.get("iTeroVersion") or None,
        gallery_files=tuple(gallery),
        penta_views={view: penta[view] for view in PENTA_VIEWS if view in penta},
        jaw_files=jaws,
        utc_offset=offset,
        due_date=parse_date(values.get("DueDate", "")),
        scan_date=_first_date(values, ("ScanDate", "ScanningDate")),
        chart_number=_first(values, ("ChartNumber", "PatientChartNumber", "ChartNo")),
        date_of_birth=_first_date(values, ("PatientDOB", "DateOfBirth", "PatientBirthDate", "BirthDate")),
        fields={key: value for key, value in values.items() if value and not _PATIENT_FIELD.search(key)},
    )


def _first(values: Mapping[str, str], keys: Sequence[str]) -> str | None:
    return next((values[key] for key in keys if values.get(key)), None)


def _first_date(values: Mapping[str, str], keys: Sequence[str]) -> date | None:
    return next((found for key in keys if (found := parse_date(values.get(key, ""))) is not None), None)


def _local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _children(parent: StdElementTree.Element, name: str) -> list[StdElementTree.Element]:
    """The children of `parent`'s first child called `name` (none when it is absent)."""
    child = next((element for element in parent if _local(element.tag) == name), None)
    return list(child) if child is not None else []


def penta_view(file_name: str) -> str | None:
    """'front', 'left', … when `file_name` is named like a penta scanner view, else None."""
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
        or any(unicodedata.category(char) in ("Cc", "Cf") for char in cleaned)
    ):
        raise ValidationError(f"The iTero manifest lists an invalid file name; {_AGAIN}.")
    return cleaned


def _clean(text: str) -> str:
    """Whitespace collapsed, control and format characters dropped, at most 500 characters."""
    kept = "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf") or char in "\t\n")
    return " ".join(kept.split())[:500]


# --- the Rx page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RxInfo:
    """What the Rx page (`Rx_<order>.html`) says. The patient is written "Last, First" there."""

    order_id: str | None = None
    patient_last: str | None = None
    patient_first: str | None = None
    chart_number: str | None = None
    date_of_birth: date | None = None
    scan_date: date | None = None
    doctor: str | None = None
    printed: datetime | None = None
    images: tuple[str, ...] = ()  # files the page shows (the logo), by base name


_RX_LABELS = {
    "order id": "order", "order": "order", "order #": "order",
    "patient": "patient", "patient name": "patient",
    "chart #": "chart", "chart": "chart", "chart number": "chart", "chart no": "chart", "chart no.": "chart",
    "date of birth": "dob", "dob": "dob", "birth date": "dob",
    "scanning date": "scan", "scan date": "scan", "scanned": "scan",
    "dentist": "doctor", "doctor": "doctor",
    "printed": "printed",
}  # fmt: skip
_RX_LINE = re.compile(r"^([A-Za-z][A-Za-z .#]{0,30}?)\s*:\s*(.*)$")
_LOOKS_LIKE_LABEL = re.compile(r"^[A-Za-z][A-Za-z .#]{0,30}:(?:\s|$)")
_ORDER_VALUE = re.compile(r"^\s*([A-Za-z0-9-]+)")


def parse_rx(data: bytes) -> RxInfo:
    """Read an Rx page (HTML, often not well-formed) with lxml's HTML parser, network access off.

    Values are found as "Label: value" in one text node ("Patient: Doe, Jane") or as a label node
    followed by its value ("<th>Patient</th><td>Doe, Jane</td>"). Raises ValidationError for pages
    that are too large, declare entities (real ones never do) or cannot be parsed at all.
    """
    if len(data) > MAX_RX_BYTES:
        raise ValidationError(f"The Rx page is {len(data):,} bytes, far larger than any real Rx page")
    if _ENTITY_DECLARATION.search(data):
        raise ValidationError("The Rx page declares entities, which real Rx pages never do")
    parser = etree.HTMLParser(no_network=True, remove_comments=True, remove_pis=True, recover=True,
                              huge_tree=False, default_doctype=False)
    try:
        root = etree.fromstring(data, parser)
    except (etree.LxmlError, ValueError) as error:
        raise ValidationError("The Rx page could not be read as HTML") from error
    if root is None:
        raise ValidationError("The Rx page is empty")
    for element in root.iter("script", "style"):
        element.text = None  # never values
    texts = [text for text in (_clean(node) for node in root.itertext()) if text]
    found: dict[str, str] = {}
    for index, text in enumerate(texts):
        line = _RX_LINE.match(text)
        if line and line[1].strip().lower() in _RX_LABELS:
            key, value = _RX_LABELS[line[1].strip().lower()], line[2].strip()
        elif text.rstrip(":").strip().lower() in _RX_LABELS:
            key = _RX_LABELS[text.rstrip(":").strip().lower()]
            following = texts[index + 1] if index + 1 < len(texts) else ""
            value = "" if _LOOKS_LIKE_LABEL.match(following) or following.lower() in _RX_LABELS else following
        else:
            continue
        if value:
            found.setdefault(key, value)
    last = first = None
    if "patient" in found:
        before, _, after = found["patient"].partition(",")
        last, first = before.strip() or None, after.strip() or None
    order = _ORDER_VALUE.match(found.get("order", ""))
    images = tuple(base_name(src) for src in root.xpath("//img/@src") if isinstance(src, str) and src.strip())
    return RxInfo(
        order_id=order[1] if order else None,
        patient_last=last,
        patient_first=first,
        chart_number=found.get("chart"),
        date_of_birth=parse_date(found.get("dob", "")),
        scan_date=parse_date(found.get("scan", "").split(" ")[0]),
        doctor=found.get("doctor"),
        printed=parse_datetime(found.get("printed", "")),
        images=images,
    )


# --- the whole export ---------------------------------------------------------------------------

JawStatus = Literal["ok", "missing", "broken"]


@dataclass(frozen=True)
class JawScan:
    """One jaw of the export: found and usable ("ok", with format and triangle count), listed in the
    manifest but not in the folder ("missing"), or present but unusable ("broken", with why)."""

    arch: str
    file_name: str
    status: JawStatus
    mesh: MeshSummary | None = None
    problem: str | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValidationError(f"jaw {self.arch!r} must be upper or lower.")
        if (self.status == "ok") != (self.mesh is not None):
            raise ValidationError("A usable jaw scan needs its mesh summary, and only it has one.")


@dataclass(frozen=True)
class ExportPatient:
    """Who the export is for, as far as it says. `names` are the (last, first) readings to match:
    one when the order is known (from the Rx page), both orders when only the manifest names them."""

    written: str  # "Last, First" as shown to the coordinator
    names: tuple[tuple[str, str], ...]
    order_known: bool
    chart_number: str | None = None
    date_of_birth: date | None = None


@dataclass(frozen=True)
class IteroExport:
    """An export folder, read: `views` maps view → path of its picture (upload-relative), `gallery`
    lists other gallery pictures, `files` maps each path used to its bytes."""

    manifest_path: str
    manifest: IteroManifest
    rx_path: str | None
    rx: RxInfo | None
    views: Mapping[str, str]
    unlisted_views: tuple[str, ...]
    gallery: tuple[str, ...]
    jaws: tuple[JawScan, ...]
    ignored: tuple[str, ...]
    patient: ExportPatient
    scan_date: date | None
    doctor: str | None
    warnings: tuple[str, ...]
    files: Mapping[str, bytes] = field(repr=False, default_factory=dict)

    @property
    def order_id(self) -> str:
        return self.manifest.order_id

    def jaw_path(self, jaw: JawScan) -> str:
        """The upload-relative path of a jaw scan file."""
        return _join(_folder(self.manifest_path), jaw.file_name)


def read_itero_export(files: Sequence[tuple[str, bytes]], *, limits: ImportLimits = DEFAULT_LIMITS) -> IteroExport:
    """Read an export from its files (upload-relative path, bytes): the manifest, the Rx page, the
    scanner views found by name and checked by content, the jaw scans checked by content.

    Raises ValidationError when there is no (or more than one) manifest, the manifest is unusable,
    or no scanner view or gallery picture is usable. Everything else that is wrong (views or jaws
    missing or broken, an unreadable Rx page, manifest and Rx disagreeing) becomes a warning.
    """
    manifest_path = find_itero_export([name for name, _ in files])
    if manifest_path is None:
        raise ValidationError("No iTero manifest (itero_export_#…_v30.xml) was found. Upload the whole export "
                              "folder, or the ZIP that MyiTero / OrthoCAD wrote.")
    folder = _folder(manifest_path)
    here: dict[str, tuple[str, bytes]] = {}
    for name, data in files:
        normal = name.replace("\\", "/")
        if _folder(normal) == folder and not is_junk(normal):
            here.setdefault(base_name(normal).lower(), (normal, data))
    manifest = parse_manifest(here[base_name(manifest_path).lower()][1])
    warnings: list[str] = []
    used: dict[str, bytes] = {}

    rx_path, rx = _read_rx(here, manifest, warnings)
    ignored = {path for path, _ in here.values() if "logo" in base_name(path).lower()}
    if rx is not None:
        ignored |= {here[name.lower()][0] for name in rx.images if name.lower() in here}

    views: dict[str, str] = {}
    unlisted: list[str] = []
    listed = {name.lower() for name in manifest.gallery_files}
    for view in PENTA_VIEWS:
        candidates = ([manifest.penta_views[view]] if view in manifest.penta_views else []) + sorted(
            (path for key, (path, _) in here.items() if penta_view(key) == view and key not in listed),
            key=natural_key)
        for candidate in candidates:
            key = base_name(candidate).lower()
            if key not in here:
                warnings.append(f"The manifest lists {candidate}, but it is not in the export; the "
                                f"{view} view is missing.")
                continue
            path, data = here[key]
            if sniff(data) not in STILL_IMAGE_FORMATS:
                warnings.append(f"{base_name(path)} is named like the {view} scanner view but is "
                                f"{describe(sniff(data))}; it was skipped.")
                ignored.add(path)
                continue
            views[view] = path
            used[path] = data
            if key not in listed:
                unlisted.append(base_name(path))
            break

    gallery = []
    for key, (path, data) in sorted(here.items(), key=lambda item: natural_key(item[1][0])):
        if path in ignored or penta_view(key) or not (key in listed or _GALLERY.match(key)):
            continue
        if sniff(data) in STILL_IMAGE_FORMATS:
            gallery.append(path)
            used[path] = data
        else:
            warnings.append(f"{base_name(path)} is {describe(sniff(data))}, not a picture; it was skipped.")
    for name in manifest.gallery_files:
        if name.lower() not in here and not penta_view(name):
            warnings.append(f"The manifest lists {name}, but it is not in the export.")
    if not views and not gallery:
        raise ValidationError("The export holds no scanner views (…_penta_front_m.jpg and the like) or gallery "
                              "pictures. Upload the whole export folder, or the ZIP that MyiTero / OrthoCAD wrote.")

    jaws = _read_jaws(here, manifest, limits, warnings, used)
    used[manifest_path] = here[base_name(manifest_path).lower()][1]
    patient = _patient(manifest, rx, warnings)
    known = {path for path in used} | ignored | ({rx_path} if rx_path else set())
    ignored |= {path for path, _ in here.values() if path not in known and _IMAGE_SUFFIX.search(path)}
    return IteroExport(
        manifest_path=manifest_path,
        manifest=manifest,
        rx_path=rx_path,
        rx=rx,
        views=MappingProxyType(views),
        unlisted_views=tuple(unlisted),
        gallery=tuple(gallery),
        jaws=tuple(jaws),
        ignored=tuple(sorted(ignored, key=natural_key)),
        patient=patient,
        scan_date=manifest.scan_date or (rx.scan_date if rx else None),
        doctor=manifest.doctor or (rx.doctor if rx else None),
        warnings=tuple(warnings),
        files=MappingProxyType(used),
    )


def _read_rx(here: Mapping[str, tuple[str, bytes]], manifest: IteroManifest,
             warnings: list[str]) -> tuple[str | None, RxInfo | None]:
    names = sorted((path for key, (path, _) in here.items() if _RX_NAME.match(key)), key=natural_key)
    preferred = [path for path in names if manifest.order_id.lower() in base_name(path).lower()]
    path = (preferred or names or [None])[0]
    if path is None:
        return None, None
    data = here[base_name(path).lower()][1]
    if sniff(data) not in ("html", "xml"):
        warnings.append(f"{base_name(path)} is {describe(sniff(data))}, not an Rx page; it was not read.")
        return path, None
    try:
        rx = parse_rx(data)
    except ValidationError as error:
        warnings.append(f"{error} ({base_name(path)}); it was not read.")
        return path, None
    if rx.order_id and rx.order_id != manifest.order_id:
        warnings.append(f"{base_name(path)} belongs to another order than the manifest; it was not read.")
        return path, None
    return path, rx


def _read_jaws(here: Mapping[str, tuple[str, bytes]], manifest: IteroManifest, limits: ImportLimits,
               warnings: list[str], used: dict[str, bytes]) -> list[JawScan]:
    found: dict[str, str] = {}
    for key, (path, _) in sorted(here.items(), key=lambda item: natural_key(item[1][0])):
        for pattern in _JAW_NAMES:
            match = pattern.search(key)
            if match:
                found.setdefault("upper" if match[1].lower() == "u" else "lower", base_name(path))
    jaws = []
    for arch in ARCHES:
        name = manifest.jaw_files.get(arch) or found.get(arch)
        if name is None:
            continue
        if name.lower() not in here:
            jaws.append(JawScan(arch, name, "missing", problem="not in the export"))
            warnings.append(f"The manifest lists the {arch} jaw scan {name}, but it is not in the export; "
                            f"the views were imported without it. {_JAW_AGAIN}")
            continue
        path, data = here[name.lower()]
        try:
            summary = inspect_mesh(data, name=base_name(path), max_triangles=limits.max_mesh_triangles)
        except ValidationError as error:
            jaws.append(JawScan(arch, base_name(path), "broken", problem=str(error)))
            warnings.append(f"The {arch} jaw scan could not be used: {error} The views were imported without it. "
                            f"{_JAW_AGAIN}")
            continue
        jaws.append(JawScan(arch, base_name(path), "ok", mesh=summary))
        used[path] = data
    if not jaws:
        warnings.append("The export holds no jaw scans (STL); only the views were imported.")
    return jaws


def _patient(manifest: IteroManifest, rx: RxInfo | None, warnings: list[str]) -> ExportPatient:
    chart = manifest.chart_number or (rx.chart_number if rx else None)
    born = manifest.date_of_birth or (rx.date_of_birth if rx else None)
    parts = (manifest.patient_last, manifest.patient_first)
    if rx is not None and (rx.patient_last or rx.patient_first):
        last, first = rx.patient_last or "", rx.patient_first or ""
        if {_fold(p) for p in parts if p} != {_fold(p) for p in (last, first) if p}:
            warnings.append("The manifest and the Rx page name the patient differently; check the patient before "
                            "importing.")
        return ExportPatient(", ".join(p for p in (last, first) if p), ((last, first),), True, chart, born)
    # The manifest alone: real exports write "First, Last" there, tidy ones "Last, First".
    readings = (parts, parts[::-1]) if all(parts) else (parts,)
    return ExportPatient(manifest.patient_text, readings, False, chart, born)


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _folder(path: str) -> str:
    normal = path.replace("\\", "/")
    return normal.rsplit("/", 1)[0] if "/" in normal else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
