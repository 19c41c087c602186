"""Simulation exports (snapshots, comparisons, videos, GIFs, PDFs) of a clinic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.database import Database

from core.domain import ExportState, ExportType, FrameRange, SimulationExport
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
        state=ExportState.coerce(doc.get("state", ExportState.DONE.value)),
        progress=int(doc.get("progress", 100)),
        step=doc.get("step", ""),
        error=doc.get("error"),
        attempts=int(doc.get("attempts", 0)),
        cancelRequested=bool(doc.get("cancelRequested", False)),
        updatedAt=doc.get("updatedAt"),
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
                IndexModel([("clinicId", ASCENDING), ("state", ASCENDING)]),
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
        state: ExportState = ExportState.DONE,
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
            "state": state.value,
            "progress": 100 if state is ExportState.DONE else 0,
            "step": "done" if state is ExportState.DONE else "waiting for a worker",
            "error": None,
            "attempts": 0,
            "cancelRequested": False,
            "updatedAt": utcnow(),
            "leaseUntil": None,
            **{f: (urls or {}).get(f) for f in _URL_FIELDS},
        }
        self._col.insert_one(doc, session=session)
        return _from_doc(doc)

    def transition(self, clinic_id: str, export_id: str, *, from_states: tuple[ExportState, ...], to: ExportState,
                   lease_free_only: bool = False, lease_seconds: int | None = None,
                   session: ClientSession | None = None, **fields: Any) -> SimulationExport | None:
        """Move to `to` only from `from_states` (and, with lease_free_only, when no live worker holds it).

        Returns None when the guard did not match (another request or worker got there first).
        """
        now = utcnow()
        query = self._scope(clinic_id, _id=to_oid(export_id, "export"), state={"$in": [s.value for s in from_states]})
        if lease_free_only:
            query["$or"] = [{"leaseUntil": None}, {"leaseUntil": {"$lt": now}}]
        updates: dict[str, Any] = {"state": to.value, "updatedAt": now, **fields}
        if lease_seconds is not None:
            updates["leaseUntil"] = now + timedelta(seconds=lease_seconds)
        elif to in (ExportState.DONE, ExportState.FAILED, ExportState.CANCELLED, ExportState.QUEUED):
            updates["leaseUntil"] = None
        doc = self._col.find_one_and_update(query, {"$set": updates}, return_document=ReturnDocument.AFTER,
                                            session=session)
        return _from_doc(doc) if doc else None

    def report_progress(self, clinic_id: str, export_id: str, percent: int, step: str, lease_seconds: int) -> bool:
        """Record progress and renew the lease; False when a cancel was requested."""
        now = utcnow()
        doc = self._col.find_one_and_update(
            self._scope(clinic_id, _id=to_oid(export_id, "export"), state=ExportState.RUNNING.value),
            {"$set": {"progress": int(percent), "step": step, "updatedAt": now,
                      "leaseUntil": now + timedelta(seconds=lease_seconds)}},
            projection={"cancelRequested": 1}, return_document=ReturnDocument.AFTER)
        return doc is not None and not doc.get("cancelRequested", False)

    def request_cancel(self, clinic_id: str, export_id: str) -> None:
        self._col.update_one(self._scope(clinic_id, _id=to_oid(export_id, "export")),
                             {"$set": {"cancelRequested": True, "updatedAt": utcnow()}})

    def in_states(self, clinic_id: str, states: tuple[ExportState, ...]) -> list[SimulationExport]:
        query = self._scope(clinic_id, state={"$in": [s.value for s in states]})
        return [_from_doc(d) for d in self._col.find(query)]

    def list_recent(self, clinic_id: str, *, limit: int = 100) -> list[SimulationExport]:
        return [_from_doc(d) for d in self._col.find(self._scope(clinic_id)).sort("createdAt", DESCENDING).limit(limit)]

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
