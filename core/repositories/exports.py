"""Simulation exports (snapshots, comparisons, videos, GIFs, PDFs) of a clinic."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.client_session import ClientSession
from pymongo.database import Database

from core.domain import ExportType, FrameRange, SimulationExport
from core.repositories.base import Repository, opt_oid, opt_str, to_oid, utcnow

_URL_FIELDS = ("imageUrl", "videoUrl", "gifUrl", "pdfUrl", "comparisonUrl")


def _from_doc(doc: dict[str, Any]) -> SimulationExport:
    frame_range = doc.get("frameRange") or {"start": 0, "end": 0}
    return SimulationExport(
        id=str(doc["_id"]),
        clinicId=str(doc["clinicId"]),
        simulationId=str(doc["simulationId"]),
        exportType=ExportType.coerce(doc["exportType"]),
        name=doc.get("name"),
        settings=dict(doc.get("settings") or {}),
        frameRange=FrameRange(int(frame_range["start"]), int(frame_range["end"])),
        beforeImageId=opt_str(doc.get("beforeImageId")),
        createdAt=doc["createdAt"],
        createdBy=str(doc["createdBy"]),
        **{f: doc.get(f) for f in _URL_FIELDS},
    )


class ExportRepository(Repository):
    collection_name = "simulation_exports"
    what = "export"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.collection_name].create_indexes(
            [
                IndexModel([("clinicId", ASCENDING), ("simulationId", ASCENDING), ("createdAt", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("createdAt", DESCENDING)]),
                # Identical requests (same version, type and settings) share one export.
                IndexModel([("clinicId", ASCENDING), ("requestKey", ASCENDING)], unique=True,
                           partialFilterExpression={"requestKey": {"$type": "string"}}),
            ]
        )

    def create(
        self,
        clinic_id: str,
        *,
        simulation_id: str,
        export_type: ExportType,
        settings: dict[str, Any],
        frame_range: FrameRange,
        created_by: str,
        name: str | None = None,
        before_image_id: str | None = None,
        urls: dict[str, str] | None = None,
        request_key: str | None = None,
        export_id: str | None = None,
        session: ClientSession | None = None,
    ) -> SimulationExport:
        """Insert an export. With `request_key`, a second identical request raises DuplicateKeyError."""
        unknown = set(urls or {}) - set(_URL_FIELDS)
        if unknown:
            raise ValueError(f"unknown URL fields {sorted(unknown)}")
        doc = {
            "_id": to_oid(export_id) if export_id else ObjectId(),
            "clinicId": to_oid(clinic_id, "clinic"),
            "simulationId": to_oid(simulation_id, "simulation"),
            "requestKey": request_key,
            "exportType": export_type.value,
            "name": name,
            "settings": settings,
            "frameRange": {"start": frame_range.start, "end": frame_range.end},
            "beforeImageId": opt_oid(before_image_id),
            "createdAt": utcnow(),
            "createdBy": to_oid(created_by, "user"),
            **{f: (urls or {}).get(f) for f in _URL_FIELDS},
        }
        self._col.insert_one(doc, session=session)
        return _from_doc(doc)

    def find_by_request_key(self, clinic_id: str, request_key: str) -> SimulationExport | None:
        doc = self._col.find_one(self._scope(clinic_id, requestKey=request_key))
        return _from_doc(doc) if doc else None

    def list_by_ids(self, clinic_id: str, export_ids: list[str]) -> list[SimulationExport]:
        query = self._scope(clinic_id, _id={"$in": [to_oid(e, "export") for e in export_ids]})
        return [_from_doc(d) for d in self._col.find(query)]

    def get(self, clinic_id: str, export_id: str) -> SimulationExport:
        return _from_doc(self._find_one(clinic_id, export_id))

    def list_for_simulation(self, clinic_id: str, simulation_id: str) -> list[SimulationExport]:
        query = self._scope(clinic_id, simulationId=to_oid(simulation_id, "simulation"))
        return [_from_doc(d) for d in self._col.find(query).sort("createdAt", DESCENDING)]
