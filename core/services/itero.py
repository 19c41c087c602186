"""iTero / OrthoCAD exports: the scanner views become the frames and the patient's "before" photos,
the jaw scans and the manifest are kept as scans, and the patient is proposed from the export.

Patient matching (`match_patient`) tries the chart number first (it is unique per clinic), then
the name in the order the export is known to use (the Rx page) or in either order (the manifest
alone), narrowed by the date of birth when the export has one. The reason is recorded with the
import and shown to the coordinator; it never contains the patient's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.domain import AssetKind, ImportCandidate, Patient, SimulationImport
from core.errors import ValidationError
from core.imaging import EncodedImage
from core.importing.images import load_still
from core.importing.itero import ExportPatient, IteroExport, read_itero_export
from core.importing.limits import ImportLimits
from core.importing.naming import base_name
from core.infra import Infrastructure
from core.permissions import Actor
from core.services.simulations import NewFrame

VIEW_LABELS = {"front": "iTero frontal", "left": "iTero left", "right": "iTero right",
               "upper": "iTero upper occlusal", "lower": "iTero lower occlusal"}
GALLERY_LABEL = "iTero gallery picture"


@dataclass(frozen=True)
class PatientMatch:
    """The patients an export may belong to (one: a match; several: the coordinator chooses) and why."""

    patient_ids: tuple[str, ...]
    reason: str

    @property
    def unique(self) -> str | None:
        return self.patient_ids[0] if len(self.patient_ids) == 1 else None


def match_patient(infra: Infrastructure, clinic_id: str, who: ExportPatient) -> PatientMatch:
    """Chart number first, then the name (either order when the export does not say which is the
    last name) plus the date of birth where the export has one."""
    notes: list[str] = []
    if who.chart_number:
        by_chart = infra.patients.find_by_chart_number(clinic_id, who.chart_number)
        if by_chart is not None and _named(by_chart, who):
            return _match([by_chart.id], "the chart number and the name match", [])
        notes.append("the chart number on the export belongs to a patient with another name" if by_chart
                     else "no patient has the chart number on the export")
    found: dict[str, Patient] = {}
    for last, first in who.names:
        if last and first:
            found.update((p.id, p) for p in infra.patients.find_by_name(clinic_id, last, first))
    either = not who.order_known and len(who.names) > 1
    name = "the name (in either order)" if either else "the name"
    if who.date_of_birth is not None and found:
        born = [p.id for p in found.values() if p.dateOfBirth == who.date_of_birth]
        if len(born) == 1:
            return _match(born, f"{name} and the date of birth match", notes)
        if born:
            return _match(born, f"{len(born)} patients share {name} and date of birth; choose one", notes)
        return _match([], f"{name} matches, but not the date of birth; choose the patient", notes)
    ids = list(found)
    if len(ids) == 1:
        dob = "" if who.date_of_birth is not None else " (the export has no date of birth)"
        return _match(ids, f"{name} matches{dob}", notes)
    if ids:
        return _match(ids, f"{len(ids)} patients share {name}; choose one", notes)
    if notes:
        return _match([], "no patient has the name either", notes)
    return _match([], "no patient in your clinic has this name" + (", in either order" if either else ""), notes)


def _match(ids: Sequence[str], reason: str, notes: list[str]) -> PatientMatch:
    text = "; ".join([*notes, reason])
    return PatientMatch(tuple(ids), text[:1].upper() + text[1:] + ".")


def _named(patient: Patient, who: ExportPatient) -> bool:
    def fold(text: str) -> str:
        return " ".join(text.split()).casefold()

    return any((fold(last), fold(first)) == (fold(patient.lastName), fold(patient.firstName))
               for last, first in who.names)


def analyze_itero(infra: Infrastructure, record: SimulationImport, files: Sequence[tuple[str, bytes]],
                  limits: ImportLimits) -> tuple[list[Any], dict[str, Any]]:
    """The scanner views as candidate frames (the gallery picture when there are none), the export's
    facts, the proposed patient and the warnings the coordinator should read before importing."""
    from core.services.imports import _Frame

    export = read_itero_export(files, limits=limits)
    warnings = list(export.warnings)
    frames = []
    for view, path in export.views.items():
        try:
            rgb = load_still(export.files[path], name=base_name(path), limits=limits)
        except ValidationError as error:
            warnings.append(f"{error} The {view} view was skipped.")
            continue
        frames.append(_Frame(0, view, rgb, VIEW_LABELS[view]))
    if not frames:  # an export without (usable) penta views: its gallery pictures are what there is
        for stage, path in enumerate(export.gallery):
            try:
                rgb = load_still(export.files[path], name=base_name(path), limits=limits)
            except ValidationError as error:
                warnings.append(f"{error} It was skipped.")
                continue
            frames.append(_Frame(stage, "front", rgb, GALLERY_LABEL))
        if frames:
            warnings.append("The export has no scanner views; its gallery picture was imported instead.")
    match = match_patient(infra, record.clinicId, export.patient)
    metadata = {
        "sourceSystem": "iTero",
        "sourceId": export.order_id,
        "itero": _facts(export),
        "exportPatient": {
            "name": export.patient.written,
            "nameOrderKnown": export.patient.order_known,
            "chartNumber": export.patient.chart_number,
            "dateOfBirth": export.patient.date_of_birth.isoformat() if export.patient.date_of_birth else None,
        },
        "patientMatch": list(match.patient_ids),
        "matchReason": match.reason,
        "warnings": warnings,
    }
    return frames, metadata


def _facts(export: IteroExport) -> dict[str, Any]:
    manifest = export.manifest
    offset = manifest.utc_offset.utcoffset(None) if manifest.utc_offset else None
    return {
        "orderId": manifest.order_id,
        "orderCode": manifest.order_code,
        "caseType": manifest.case_type,
        "doctor": export.doctor,
        "scanDate": export.scan_date.isoformat() if export.scan_date else None,
        "exportTime": manifest.export_time.isoformat() if manifest.export_time else None,
        "utcOffset": None if offset is None else _offset_text(offset.total_seconds()),
        "dueDate": manifest.due_date.isoformat() if manifest.due_date else None,
        "iteroVersion": manifest.itero_version,
        # Base names only: export folders are sometimes named after the patient.
        "manifest": base_name(export.manifest_path),
        "rx": base_name(export.rx_path) if export.rx_path and export.rx is not None else None,
        "views": {view: base_name(path) for view, path in export.views.items()},
        "unlistedViews": list(export.unlisted_views),
        "gallery": [base_name(path) for path in export.gallery],
        "jaws": [{"arch": jaw.arch, "file": jaw.file_name, "status": jaw.status,
                  "format": jaw.mesh.format if jaw.mesh else None,
                  "triangles": jaw.mesh.triangles if jaw.mesh else None, "problem": jaw.problem}
                 for jaw in export.jaws],
        "ignored": [base_name(path) for path in export.ignored],
        "manifestFields": dict(manifest.fields),
    }


def _offset_text(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = round(abs(seconds) / 60)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def commit_itero(infra: Infrastructure, actor: Actor, record: SimulationImport, chosen: Sequence[ImportCandidate],
                 files: Sequence[tuple[str, bytes]], *, limits: ImportLimits) -> tuple[list[NewFrame], dict[str, Any]]:
    """Frames = the chosen views. With the version: each view as a "before" photo of the patient,
    the usable jaw scans and the manifest (the scan the version refers to)."""
    export = read_itero_export(files, limits=limits)
    patient_id = record.patientId or ""
    common = {"sourceSystem": "iTero", "orderId": export.order_id,
              "scanDate": export.scan_date.isoformat() if export.scan_date else None}
    assets: list[dict[str, Any]] = []

    def asset(data: bytes, kind: AssetKind, content_type: str, label: str, tags: tuple[str, ...], *,
              width: int | None = None, height: int | None = None, **details: Any) -> dict[str, Any]:
        blob = infra.store.put(data)
        doc = infra.assets.new_document(actor.clinic_id, patient_id=patient_id, kind=kind, content_type=content_type,
                                        size=blob.size, sha256=blob.sha256, created_by=actor.id, width=width,
                                        height=height, label=label, tags=tags, details={**common, **details})
        assets.append(doc)
        return doc

    usable = [(jaw, jaw.mesh) for jaw in export.jaws if jaw.mesh is not None]
    scan = asset(export.files[export.manifest_path], AssetKind.SCAN, "application/xml",
                 f"iTero scan · order {export.order_id}", ("scan", "itero", "manifest"),
                 views=len(chosen), jaws=[jaw.arch for jaw, _ in usable])
    for jaw, mesh in usable:
        asset(export.files[export.jaw_path(jaw)], AssetKind.SCAN, mesh.content_type, f"iTero {jaw.arch} jaw scan",
              ("scan", "itero", jaw.arch), scanId=str(scan["_id"]), jaw=jaw.arch, triangles=mesh.triangles,
              format=mesh.format)
    frames = []
    for candidate in chosen:
        data = infra.store.get(candidate.sha256)  # re-encoded from pixels: no metadata of the upload
        asset(data, AssetKind.PHOTO, "image/png", candidate.label, ("before", "itero", candidate.view),
              width=candidate.width, height=candidate.height, scanId=str(scan["_id"]), view=candidate.view)
        frames.append(NewFrame(candidate.stage, candidate.view,
                               EncodedImage(data, "image/png", candidate.width, candidate.height), candidate.label))
    return frames, {"scanId": str(scan["_id"]), "assets": assets}
