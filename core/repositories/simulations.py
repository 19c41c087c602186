"""Treatment simulations and their versions. The database enforces one ACTIVE version per series."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database

from core.domain import (
    Frame,
    RenditionState,
    SimulationStatus,
    SimulationType,
    TreatmentSimulation,
)
from core.errors import ConflictError, NotFoundError
from core.repositories.base import (
    CLOCK_SKEW,
    EARLIEST,
    Page,
    Repository,
    opt_oid,
    opt_str,
    sync_indexes,
    to_oid,
    utcnow,
)

SERIES_FIELDS = ("clinicId", "patientId", "treatmentId", "simulationType")
_VERSION_ATTEMPTS = 20
#: Per-clinic hints that bound list walks (e.g. the review queue's oldest possible waiting time).
_HINTS = "simulation_hints"
#: What lists read of a version: everything but the frame array (an inclusion projection, which the
#: embedded server applies without copying the frames first).
SUMMARY = {f: 1 for f in (
    "clinicId", "patientId", "treatmentId", "name", "simulationType", "sourceSystem", "sourceId", "frameCount",
    "stageCount", "views", "metadata", "status", "version", "isApproved", "approvedAt", "approvedBy", "scanId",
    "createdAt", "updatedAt", "createdBy", "renditions", "revision", "pendingSince")}


def _from_doc(doc: dict[str, Any]) -> TreatmentSimulation:
    return TreatmentSimulation(
        id=str(doc["_id"]),
        clinicId=str(doc["clinicId"]),
        patientId=str(doc["patientId"]),
        treatmentId=opt_str(doc.get("treatmentId")),
        name=doc["name"],
        simulationType=SimulationType.coerce(doc["simulationType"]),
        sourceSystem=doc.get("sourceSystem"),
        sourceId=doc.get("sourceId"),
        frames=tuple(Frame.from_doc(f) for f in doc.get("frames", [])),
        frameCount=int(doc.get("frameCount", 0)),
        stageCount=doc.get("stageCount"),
        viewNames=tuple(doc["views"]) if doc.get("views") is not None else None,
        pendingSince=doc.get("pendingSince"),
        metadata=dict(doc.get("metadata") or {}),
        status=SimulationStatus.coerce(doc["status"]),
        version=int(doc["version"]),
        isApproved=bool(doc.get("isApproved", False)),
        approvedAt=doc.get("approvedAt"),
        approvedBy=opt_str(doc.get("approvedBy")),
        scanId=opt_str(doc.get("scanId")),
        createdAt=doc["createdAt"],
        updatedAt=doc["updatedAt"],
        createdBy=str(doc["createdBy"]),
        renditions=RenditionState.coerce(doc.get("renditions", RenditionState.PENDING)),
        revision=int(doc.get("revision", 0)),
    )


class SimulationRepository(Repository):
    collection_name = "simulations"
    what = "simulation"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        series = [(f, ASCENDING) for f in SERIES_FIELDS]
        sync_indexes(
            db[cls.collection_name],
            [
                IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("createdAt", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("treatmentId", ASCENDING)]),
                # The review queue: versions waiting for a doctor, by how long they have waited.
                IndexModel([("clinicId", ASCENDING), ("pendingSince", ASCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("scanId", ASCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("renditions", ASCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("metadata.importId", ASCENDING)]),
                # Only one ACTIVE version per series: the final guard against racing imports.
                IndexModel(
                    series,
                    name="one_active_per_series",
                    unique=True,
                    partialFilterExpression={"status": SimulationStatus.ACTIVE.value},
                ),
                # Versions are unique (and, since each is max+1 in a transaction, gap-free).
                IndexModel([*series, ("version", DESCENDING)], name="series_version", unique=True),
            ],
            obsolete=("clinicId_1_status_1_isApproved_1",),
        )

    # --- reads ---------------------------------------------------------------------------------
    def get(self, clinic_id: str, simulation_id: str) -> TreatmentSimulation:
        return _from_doc(self._find_one(clinic_id, simulation_id))

    def summaries(self, clinic_id: str, simulation_ids: Iterable[str]) -> dict[str, TreatmentSimulation]:
        """Versions by id without their frames, in one query (ids of other clinics are left out)."""
        return {str(d["_id"]): _from_doc(d) for d in self._by_ids(clinic_id, list(simulation_ids),
                                                                    projection=SUMMARY)}

    def list_for_patient(
        self,
        clinic_id: str,
        patient_id: str,
        *,
        include_archived: bool = False,
        approved_only: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[TreatmentSimulation]:
        """A patient's versions, newest first, without frames (a page; `cursor` continues it)."""
        post: dict[str, Any] = {}
        if not include_archived:
            post["status"] = {"$in": [SimulationStatus.ACTIVE.value, SimulationStatus.SUPERSEDED.value]}
        if approved_only:
            post["isApproved"] = True
        docs, next_cursor = self._page(
            self._scope(clinic_id, patientId=to_oid(patient_id, "patient")), "createdAt", limit=limit,
            cursor=cursor, post=post, projection=SUMMARY, span=timedelta(days=3650))
        return Page(tuple(_from_doc(d) for d in docs), next_cursor)

    def set_approval(self, clinic_id: str, simulation_id: str, *, approved: bool, user_id: str | None,
                     expected_revision: int) -> TreatmentSimulation:
        """Approve or revoke exactly this version, only while it is ACTIVE and unchanged (revision guard)."""
        now = utcnow()
        doc = self._update_by_id(
            clinic_id, simulation_id,
            {"$set": {"isApproved": approved, "approvedAt": now if approved else None,
                      "approvedBy": to_oid(user_id, "user") if approved and user_id else None, "updatedAt": now,
                      "pendingSince": None if approved else now},
             "$inc": {"revision": 1}},
            guard={"revision": expected_revision, "status": SimulationStatus.ACTIVE.value})
        if doc is None:
            current = self.get(clinic_id, simulation_id)
            if current.status is not SimulationStatus.ACTIVE:
                raise ConflictError(f"Version {current.version} is {current.status.value.lower()}; only the active "
                                    "version of a series can be approved or revoked.")
            raise ConflictError("This version changed while you were looking at it; reload and try again.")
        return _from_doc(doc)

    def update_fields(self, clinic_id: str, simulation_id: str, *, expected_revision: int,
                      **fields: Any) -> TreatmentSimulation:
        """Change name / scanId of one version, guarded by its revision (no lost updates)."""
        allowed = {"name", "scanId"}
        if set(fields) - allowed:
            raise ValueError(f"only {sorted(allowed)} can be updated in place")
        values = {k: (opt_oid(v) if k == "scanId" else v) for k, v in fields.items()}
        doc = self._update_by_id(clinic_id, simulation_id,
                                 {"$set": {**values, "updatedAt": utcnow()}, "$inc": {"revision": 1}},
                                 guard={"revision": expected_revision})
        if doc is None:
            self.get(clinic_id, simulation_id)
            raise ConflictError("This version changed while you were editing it; reload and try again.")
        return _from_doc(doc)

    def series_versions(self, clinic_id: str, simulation_id: str, *, limit: int = 200) -> list[TreatmentSimulation]:
        """The newest versions of the series `simulation_id` belongs to, newest first (without frames)."""
        sim = self._col.find_one(self._scope(clinic_id, _id=to_oid(simulation_id, "simulation")),
                                 {f: 1 for f in SERIES_FIELDS})
        if sim is None:
            raise NotFoundError("No simulation with that id in your clinic.")
        return [_from_doc(d) for d in self._series_docs(sim, SUMMARY)[:limit]]

    def _series_docs(self, series: dict[str, Any], projection: dict[str, Any],
                     session: ClientSession | None = None) -> list[dict[str, Any]]:
        """Every version of a series (an exact prefix of the series_version index), newest first."""
        query = {f: series[f] for f in SERIES_FIELDS}
        docs = list(self._col.find(query, projection, session=session))
        docs.sort(key=lambda d: d["version"], reverse=True)
        return docs

    def set_series_archived(self, clinic_id: str, simulation_id: str, *, archived: bool) -> None:
        """Archive every version of the series, or restore it (latest version ACTIVE, the rest SUPERSEDED)."""
        versions = self.series_versions(clinic_id, simulation_id, limit=10_000)
        now = utcnow()

        def write(session: ClientSession) -> dict[str, Any]:
            for n, version in enumerate(versions):
                if archived:
                    status = SimulationStatus.ARCHIVED
                else:
                    status = SimulationStatus.ACTIVE if n == 0 else SimulationStatus.SUPERSEDED
                pending = now if status is SimulationStatus.ACTIVE and not version.isApproved else None
                self._col.update_one({"_id": to_oid(version.id)},
                                     {"$set": {"status": status.value, "updatedAt": now, "pendingSince": pending},
                                      "$inc": {"revision": 1}},
                                     session=session)
            return {}

        self._transact(write)

    def awaiting_approval(self, clinic_id: str, *, limit: int = 50, cursor: str | None = None
                          ) -> Page[TreatmentSimulation]:
        """Active, unapproved versions of the clinic, longest waiting first (a page, without frames).

        The walk starts at a remembered lower bound of the queue (`_HINTS`): every version that starts
        waiting does so at "now", so the oldest waiting time seen by a listing, less the tolerated
        clock skew, stays a valid bound and the first window starts where the queue does.
        """
        scope = self._scope(clinic_id)
        hint = self._db[_HINTS].find_one({"_id": f"{scope['clinicId']}:review", "clinicId": scope["clinicId"]})
        floor = hint["floor"] if hint else EARLIEST
        listed_at = utcnow()
        docs, next_cursor = self._page(scope, "pendingSince", limit=limit, cursor=cursor, descending=False,
                                       projection=SUMMARY, start=None if cursor else floor,
                                       span=timedelta(days=7))
        if cursor is None:
            oldest = docs[0]["pendingSince"] if docs else listed_at
            new_floor = min(oldest, listed_at - CLOCK_SKEW)
            if new_floor > floor:
                self._db[_HINTS].update_one({"_id": f"{scope['clinicId']}:review", "clinicId": scope["clinicId"]},
                                            {"$set": {"floor": new_floor}}, upsert=True)
        return Page(tuple(_from_doc(d) for d in docs), next_cursor)

    def note_waiting(self, clinic_id: str, since: datetime) -> None:
        """Lower the review queue's remembered bound to `since` (bulk loads and migrations that write
        versions waiting since before now call this; everything else waits from "now")."""
        scope = self._scope(clinic_id)
        self._db[_HINTS].update_one({"_id": f"{scope['clinicId']}:review", "clinicId": scope["clinicId"]},
                                    {"$min": {"floor": since}}, upsert=True)

    def pending_renditions(self, clinic_id: str, *, limit: int = 200) -> list[str]:
        """Versions whose renditions were never queued (Redis was down), at most `limit` per call."""
        query = self._scope(clinic_id, renditions=RenditionState.PENDING.value)
        return [str(d["_id"]) for d in self._col.find(query, projection={"_id": 1})][:limit]

    def find_by_import(self, clinic_id: str, import_id: str) -> str | None:
        """The version an import created, if any (makes a retried import job idempotent)."""
        docs = self._col.find(self._scope(clinic_id, **{"metadata.importId": import_id}), projection={"_id": 1})
        return next((str(d["_id"]) for d in docs), None)

    def backfill_summaries(self) -> int:
        """Migration: stage count, views and waiting time on versions written before they were stored."""
        changed = 0
        batch: list[UpdateOne] = []
        oldest: dict[Any, datetime] = {}
        for doc in self._col.find({"stageCount": {"$exists": False}}, {
                "clinicId": 1, "frames.stage": 1, "frames.view": 1, "status": 1, "isApproved": 1, "updatedAt": 1}):
            frames = doc.get("frames") or []
            waiting = doc.get("status") == SimulationStatus.ACTIVE.value and not doc.get("isApproved")
            if waiting and doc.get("updatedAt"):
                oldest[doc["clinicId"]] = min(oldest.get(doc["clinicId"], doc["updatedAt"]), doc["updatedAt"])
            batch.append(UpdateOne({"_id": doc["_id"]}, {"$set": {
                "stageCount": len({f.get("stage") for f in frames}),
                "views": list(dict.fromkeys(f.get("view", "front") for f in frames)),
                "pendingSince": doc.get("updatedAt") if waiting else None}}))
            if len(batch) >= 500:
                changed += self._col.bulk_write(batch, ordered=False).modified_count
                batch = []
        if batch:
            changed += self._col.bulk_write(batch, ordered=False).modified_count
        for clinic, since in oldest.items():
            self.note_waiting(str(clinic), since)
        return changed

    # --- writes --------------------------------------------------------------------------------
    def insert_version(
        self,
        clinic_id: str,
        *,
        patient_id: str,
        treatment_id: str | None,
        simulation_type: SimulationType,
        name: str,
        frames: Iterable[Frame],
        metadata: dict[str, Any],
        created_by: str,
        source_system: str | None = None,
        source_id: str | None = None,
        scan_id: str | None = None,
        created_at: datetime | None = None,
        simulation_id: str | None = None,
        in_transaction: Callable[[ClientSession], None] | None = None,
    ) -> TreatmentSimulation:
        """Add version n+1 of the series as ACTIVE and supersede the previous ACTIVE, atomically.

        Runs in a transaction; racing writers are retried, and the unique indexes make a second
        ACTIVE version or a duplicate version number impossible whatever happens.
        `in_transaction(session)` runs inside the same transaction (e.g. inserting the frame assets),
        so either the version and its assets exist, or neither does.
        """
        frame_docs = [f.to_doc() for f in frames]
        series = {
            "clinicId": to_oid(clinic_id, "clinic"),
            "patientId": to_oid(patient_id, "patient"),
            "treatmentId": opt_oid(treatment_id),
            "simulationType": simulation_type.value,
        }
        now = created_at or utcnow()

        def write(session: ClientSession) -> dict[str, Any]:
            existing = self._series_docs(series, {"version": 1, "status": 1}, session=session)
            version = (existing[0]["version"] if existing else 0) + 1
            active = [d["_id"] for d in existing if d["status"] == SimulationStatus.ACTIVE.value]
            if active:
                self._col.update_many(
                    {"_id": {"$in": active}, "status": SimulationStatus.ACTIVE.value},
                    {"$set": {"status": SimulationStatus.SUPERSEDED.value, "updatedAt": now, "pendingSince": None},
                     "$inc": {"revision": 1}},
                    session=session,
                )
            doc = {
                **series,
                "_id": to_oid(simulation_id) if simulation_id else ObjectId(),
                "name": name,
                "sourceSystem": source_system,
                "sourceId": source_id,
                "frames": frame_docs,
                "frameCount": len(frame_docs),
                "stageCount": len({f["stage"] for f in frame_docs}),
                "views": list(dict.fromkeys(f["view"] for f in frame_docs)),
                "metadata": metadata,
                "status": SimulationStatus.ACTIVE.value,
                "version": version,
                "isApproved": False,
                "approvedAt": None,
                "approvedBy": None,
                "pendingSince": now,
                "scanId": opt_oid(scan_id),
                "createdAt": now,
                "updatedAt": now,
                "createdBy": to_oid(created_by, "user"),
                "renditions": RenditionState.PENDING.value,
                "revision": 0,
            }
            self._col.insert_one(doc, session=session)
            if in_transaction is not None:
                in_transaction(session)
            return doc

        return _from_doc(self._transact(write))

    def set_renditions(
        self, clinic_id: str, simulation_id: str, *, state: RenditionState,
        frames: Iterable[Frame] | None = None, expected_revision: int | None = None,
    ) -> TreatmentSimulation:
        """Record rendition progress; with `frames`, store their rendition ids (guarded by revision)."""
        guard: dict[str, Any] = {}
        update: dict[str, Any] = {"$set": {"renditions": state.value}}
        if frames is not None:
            if expected_revision is None:
                raise ValueError("expected_revision is required when frames are replaced")
            guard["revision"] = expected_revision
            update["$set"]["frames"] = [f.to_doc() for f in frames]
            update["$set"]["updatedAt"] = utcnow()
            update["$inc"] = {"revision": 1}
        doc = self._update_by_id(clinic_id, simulation_id, update, guard=guard)
        if doc is None:
            self._find_one(clinic_id, simulation_id)  # raises NotFoundError when it is missing
            raise ConflictError("The simulation changed while its renditions were made; retrying.")
        return _from_doc(doc)

    # --- plumbing ------------------------------------------------------------------------------
    def _transact(self, write: Callable[[ClientSession], dict[str, Any]]) -> dict[str, Any]:
        return self._in_transaction(write, attempts=_VERSION_ATTEMPTS,
                                    busy="Another version of this simulation was being saved at the same time; "
                                         "try again.")
