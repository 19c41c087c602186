"""Simulation exports (snapshots, comparisons, videos, GIFs, PDFs) of a clinic."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.client_session import ClientSession
from pymongo.database import Database

from core.domain import ExportState, ExportType, FrameRange, SimulationExport
from core.repositories.base import Page, Repository, opt_oid, opt_str, sync_indexes, to_oid, utcnow

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
        sync_indexes(
            db[cls.collection_name],
            [
                IndexModel([("clinicId", ASCENDING), ("simulationId", ASCENDING), ("createdAt", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("createdAt", DESCENDING)]),
                # "Only mine" (jobs tray, Exports filter): a user with few exports in a busy clinic.
                IndexModel([("clinicId", ASCENDING), ("createdBy", ASCENDING), ("createdAt", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("state", ASCENDING)]),
                # Identical requests (same version, type and settings) share one export. The partial
                # filter is a range, which the embedded server can prove from `requestKey: K` ($type
                # filters never serve reads there).
                IndexModel([("clinicId", ASCENDING), ("requestKey", ASCENDING)], unique=True,
                           partialFilterExpression={"requestKey": {"$gt": ""}}),
            ],
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
            "leaseToken": None,
            **{f: (urls or {}).get(f) for f in _URL_FIELDS},
        }
        self._col.insert_one(doc, session=session)
        return _from_doc(doc)

    def transition(self, clinic_id: str, export_id: str, *, from_states: tuple[ExportState, ...], to: ExportState,
                   lease_free_only: bool = False, lease_seconds: int | None = None, token: str | None = None,
                   session: ClientSession | None = None, **fields: Any) -> SimulationExport | None:
        """Move to `to` only from `from_states` (and, with lease_free_only, when no live worker holds it;
        with `token`, only while that render attempt still holds the lease).

        Returns None when the guard did not match (another request or worker got there first).
        """
        now = utcnow()
        guard: dict[str, Any] = {"state": {"$in": [s.value for s in from_states]}}
        if token is not None:
            guard["leaseToken"] = token
        updates: dict[str, Any] = {"state": to.value, "updatedAt": now, **fields}
        if lease_seconds is not None:
            updates["leaseUntil"] = now + timedelta(seconds=lease_seconds)
        elif to in (ExportState.DONE, ExportState.FAILED, ExportState.CANCELLED, ExportState.QUEUED):
            updates["leaseUntil"] = None
            updates["leaseToken"] = None
        # "No live lease" is two guards, tried in turn: no `$or`, which the embedded server scans for.
        leases = ({"leaseUntil": None}, {"leaseUntil": {"$lt": now}}) if lease_free_only else ({},)
        for lease in leases:
            doc = self._update_by_id(clinic_id, export_id, {"$set": updates}, guard={**guard, **lease},
                                     session=session)
            if doc is not None:
                return _from_doc(doc)
        return None

    def claim(self, clinic_id: str, export_id: str, *, from_states: tuple[ExportState, ...], token: str,
              lease_seconds: int) -> SimulationExport | None:
        """Start a render attempt: RUNNING under a new lease `token`, if no live attempt holds the export.

        `attempts` grows here and only here, so it counts real attempts (a re-queue is not one).
        None when another attempt holds a live lease or the export left `from_states`.
        """
        now = utcnow()
        update = {"$set": {"state": ExportState.RUNNING.value, "leaseToken": token, "progress": 0,
                           "step": "starting", "updatedAt": now,
                           "leaseUntil": now + timedelta(seconds=lease_seconds)},
                  "$inc": {"attempts": 1}}
        states = {"state": {"$in": [s.value for s in from_states]}}
        # "No live lease" is two guards, tried in turn: no `$or`, which the embedded server scans for.
        for lease in ({"leaseUntil": None}, {"leaseUntil": {"$lt": now}}):
            doc = self._update_by_id(clinic_id, export_id, update, guard={**states, **lease})
            if doc is not None:
                return _from_doc(doc)
        return None

    def report_progress(self, clinic_id: str, export_id: str, percent: int, step: str, lease_seconds: int, *,
                        token: str) -> bool:
        """Record progress and renew the lease; False when a cancel was requested or the lease was lost."""
        now = utcnow()
        doc = self._update_by_id(
            clinic_id, export_id,
            {"$set": {"progress": int(percent), "step": step, "updatedAt": now,
                      "leaseUntil": now + timedelta(seconds=lease_seconds)}},
            guard={"state": ExportState.RUNNING.value, "leaseToken": token}, projection={"cancelRequested": 1})
        return doc is not None and not doc.get("cancelRequested", False)

    def renew_lease(self, clinic_id: str, export_id: str, *, token: str, lease_seconds: int) -> bool:
        """The heartbeat: extend the attempt's lease (progress untouched). False when the attempt no
        longer holds the export (taken over, finished elsewhere) or a cancel was requested."""
        doc = self._update_by_id(
            clinic_id, export_id, {"$set": {"leaseUntil": utcnow() + timedelta(seconds=lease_seconds)}},
            guard={"state": ExportState.RUNNING.value, "leaseToken": token}, projection={"cancelRequested": 1})
        return doc is not None and not doc.get("cancelRequested", False)

    def request_cancel(self, clinic_id: str, export_id: str) -> None:
        self._col.update_one(self._scope(clinic_id, _id=to_oid(export_id, "export")),
                             {"$set": {"cancelRequested": True, "updatedAt": utcnow()}})

    def in_states(self, clinic_id: str, states: tuple[ExportState, ...]) -> list[SimulationExport]:
        query = self._scope(clinic_id, state={"$in": [s.value for s in states]})
        return [_from_doc(d) for d in self._col.find(query)]

    def list_recent(self, clinic_id: str, *, limit: int = 100, cursor: str | None = None,
                    approved_only: bool = False, types: Iterable[ExportType] = (),
                    states: Iterable[ExportState] = (), created_by: str | None = None) -> Page[SimulationExport]:
        """The clinic's exports, newest first (a page; `cursor` continues it); optionally only of these
        types or in these states (applied to each bounded window), or made by one user (the index's prefix:
        a user with few exports in a busy clinic costs what they made, not what the clinic made)."""
        post: dict[str, Any] = {"settings.approved": True} if approved_only else {}
        if types := [t.value for t in types]:
            post["exportType"] = {"$in": types}
        if states := [s.value for s in states]:
            post["state"] = {"$in": states}
        match = self._scope(clinic_id, **({"createdBy": to_oid(created_by, "user")} if created_by else {}))
        docs, next_cursor = self._page(match, "createdAt", limit=limit, cursor=cursor,
                                       post=post or None, span=timedelta(hours=6))
        return Page(tuple(_from_doc(d) for d in docs), next_cursor)

    def find_by_request_key(self, clinic_id: str, request_key: str) -> SimulationExport | None:
        doc = self._col.find_one(self._scope(clinic_id, requestKey=request_key))
        return _from_doc(doc) if doc else None

    def list_by_ids(self, clinic_id: str, export_ids: list[str]) -> list[SimulationExport]:
        return [_from_doc(d) for d in self._by_ids(clinic_id, export_ids)]

    def get(self, clinic_id: str, export_id: str) -> SimulationExport:
        return _from_doc(self._find_one(clinic_id, export_id))

    def list_for_simulation(self, clinic_id: str, simulation_id: str, *, limit: int = 100,
                            cursor: str | None = None, post: dict[str, Any] | None = None) -> Page[SimulationExport]:
        """Exports of one version, newest first (a page)."""
        docs, next_cursor = self._page(self._scope(clinic_id, simulationId=to_oid(simulation_id, "simulation")),
                                       "createdAt", limit=limit, cursor=cursor, post=post,
                                       span=timedelta(days=365))
        return Page(tuple(_from_doc(d) for d in docs), next_cursor)
