"""iTero / OrthoCAD exports: penta views into the gallery, STL shells as the source scan, patient match."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from core.domain import AssetKind, ImportCandidate, SimulationImport
from core.errors import ValidationError
from core.imaging import EncodedImage
from core.importing.images import load_still
from core.importing.itero import find_itero_export, parse_manifest
from core.importing.limits import ImportLimits
from core.infra import Infrastructure
from core.permissions import Actor
from core.services.simulations import NewFrame

VIEW_LABELS = {"front": "iTero frontal", "left": "iTero left", "right": "iTero right",
               "upper": "iTero upper occlusal", "lower": "iTero lower occlusal"}


def _by_basename(files: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    return {PurePosixPath(name.replace("\\", "/")).name.lower(): data for name, data in files}


def analyze_itero(infra: Infrastructure, record: SimulationImport, files: Sequence[tuple[str, bytes]],
                  limits: ImportLimits) -> tuple[list[Any], dict[str, Any]]:
    from core.services.imports import _Frame

    manifest_name = find_itero_export([name for name, _ in files])
    if manifest_name is None:
        raise ValidationError("No iTero manifest (itero_export_#…_v30.xml) was found. Upload the whole export "
                              "folder, or the ZIP that MyiTero / OrthoCAD wrote.")
    by_name = _by_basename(files)
    manifest = parse_manifest(by_name[PurePosixPath(manifest_name.replace("\\", "/")).name.lower()])
    frames = []
    for view, file_name in manifest.penta_views.items():
        data = by_name.get(file_name.lower())
        if data is None:
            raise ValidationError(f"The manifest lists {file_name}, but it is not in the upload; "
                                  "upload the complete export.")
        frames.append(_Frame(0, view, load_still(data, name=file_name, limits=limits), VIEW_LABELS.get(view, view)))
    missing_jaws = [f for f in manifest.jaw_files.values() if f.lower() not in by_name]
    if missing_jaws:
        raise ValidationError(f"The manifest lists {', '.join(missing_jaws)}, but they are not in the upload.")
    matches = [p.id for p in infra.patients.search(record.clinicId, manifest.patient_last)
               if p.firstName.strip().lower() == manifest.patient_first.strip().lower()
               and p.lastName.strip().lower() == manifest.patient_last.strip().lower()]
    metadata = {
        "sourceSystem": "iTero",
        "sourceId": manifest.order_id,
        "itero": {"orderCode": manifest.order_code, "caseType": manifest.case_type, "doctor": manifest.doctor,
                  "exportTime": manifest.export_time.isoformat() if manifest.export_time else None,
                  "iteroVersion": manifest.itero_version, "manifest": manifest_name},
        "patientMatch": matches,
        "manifestPatient": f"{manifest.patient_last}, {manifest.patient_first}",
    }
    return frames, metadata


def commit_itero(infra: Infrastructure, actor: Actor, record: SimulationImport, chosen: Sequence[ImportCandidate],
                 files: Sequence[tuple[str, bytes]]) -> tuple[list[NewFrame], dict[str, Any]]:
    """Frames = the penta views; gallery 'before' images and the STL shells go in with the version."""
    manifest_name = find_itero_export([name for name, _ in files]) or ""
    by_name = _by_basename(files)
    manifest = parse_manifest(by_name[PurePosixPath(manifest_name.replace("\\", "/")).name.lower()])
    patient_id = record.patientId or ""
    assets: list[dict[str, Any]] = []

    def asset(data: bytes, kind: AssetKind, content_type: str, label: str, tags: tuple[str, ...], *,
              width: int | None = None, height: int | None = None, **details: Any) -> dict[str, Any]:
        blob = infra.store.put(data)
        doc = infra.assets.new_document(actor.clinic_id, patient_id=patient_id, kind=kind, content_type=content_type,
                                        size=blob.size, sha256=blob.sha256, created_by=actor.id, width=width,
                                        height=height, label=label, tags=tags,
                                        details={"sourceSystem": "iTero", "orderId": manifest.order_id, **details})
        assets.append(doc)
        return doc

    scan = asset(by_name[PurePosixPath(manifest_name).name.lower()], AssetKind.SCAN, "application/xml",
                 f"iTero scan · order {manifest.order_id}", ("scan", "itero", "manifest"))
    for jaw, file_name in manifest.jaw_files.items():
        asset(by_name[file_name.lower()], AssetKind.SCAN, "model/stl", f"iTero {jaw} jaw shell", ("scan", "itero", jaw),
              scanId=str(scan["_id"]), jaw=jaw)
    frames = []
    for candidate in chosen:
        data = infra.store.get(candidate.sha256)
        asset(data, AssetKind.SCAN, "image/png", candidate.label, ("before", "itero", candidate.view),
              width=candidate.width, height=candidate.height, scanId=str(scan["_id"]), view=candidate.view)
        frames.append(NewFrame(0, candidate.view, EncodedImage(data, "image/png", candidate.width, candidate.height),
                               candidate.label))
    return frames, {"scanId": str(scan["_id"]), "assets": assets}
