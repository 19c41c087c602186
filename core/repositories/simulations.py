"""Treatment simulations and their versions. The database enforces one ACTIVE version per series."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from core.domain import (
    Frame,
    RenditionState,
    SimulationStatus,
    SimulationType,
    TreatmentSimulation,
)
from core.errors import ConflictError
from core.repositories.base import Repository, opt_oid, opt_str, to_oid, utcnow

SERIES_FIELDS = ("clinicId", "patientId", "treatmentId", "simulationType")
_VERSION_ATTEMPTS = 20


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
        db[cls.collection_name].create_indexes(
            [
                IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("createdAt", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("treatmentId", ASCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("status", ASCENDING), ("isApproved", ASCENDING)]),
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
            ]
        )

    # --- reads ---------------------------------------------------------------------------------
    def get(self, clinic_id: str, simulation_id: str) -> TreatmentSimulation:
        return _from_doc(self._find_one(clinic_id, simulation_id))

    def list_for_patient(
        self,
        clinic_id: str,
        patient_id: str,
        *,
        include_archived: bool = False,
        approved_only: bool = False,
    ) -> list[TreatmentSimulation]:
        query = self._scope(clinic_id, patientId=to_oid(patient_id, "patient"))
        if not include_archived:
            query["status"] = {"$ne": SimulationStatus.ARCHIVED.value}
        if approved_only:
            query["isApproved"] = True
        cursor = self._col.find(query, projection={"frames": 0}).sort("createdAt", DESCENDING)
        return [_from_doc(d) for d in cursor]

    def set_approval(self, clinic_id: str, simulation_id: str, *, approved: bool, user_id: str | None,
                     expected_revision: int) -> TreatmentSimulation:
        """Approve or revoke exactly this version, only while it is ACTIVE and unchanged (revision guard)."""
        now = utcnow()
        doc = self._col.find_one_and_update(
            self._scope(clinic_id, _id=to_oid(simulation_id, "simulation"), revision=expected_revision,
                        status=SimulationStatus.ACTIVE.value),
            {"$set": {"isApproved": approved, "approvedAt": now if approved else None,
                      "approvedBy": to_oid(user_id, "user") if approved and user_id else None, "updatedAt": now},
             "$inc": {"revision": 1}},
            return_document=ReturnDocument.AFTER)
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
        doc = self._col.find_one_and_update(
            self._scope(clinic_id, _id=to_oid(simulation_id, "simulation"), revision=expected_revision),
            {"$set": {**values, "updatedAt": utcnow()}, "$inc": {"revision": 1}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            self.get(clinic_id, simulation_id)
            raise ConflictError("This version changed while you were editing it; reload and try again.")
        return _from_doc(doc)

    def series_versions(self, clinic_id: str, simulation_id: str) -> list[TreatmentSimulation]:
        """Every version of the series `simulation_id` belongs to, newest first (without frames)."""
        sim = self.get(clinic_id, simulation_id)
        query = self._scope(clinic_id, patientId=to_oid(sim.patientId), treatmentId=opt_oid(sim.treatmentId),
                            simulationType=sim.simulationType.value)
        return [_from_doc(d) for d in self._col.find(query, projection={"frames": 0}).sort("version", DESCENDING)]

    def set_series_archived(self, clinic_id: str, simulation_id: str, *, archived: bool) -> None:
        """Archive every version of the series, or restore it (latest version ACTIVE, the rest SUPERSEDED)."""
        versions = self.series_versions(clinic_id, simulation_id)
        now = utcnow()

        def write(session: ClientSession) -> dict[str, Any]:
            for n, version in enumerate(versions):
                if archived:
                    status = SimulationStatus.ARCHIVED
                else:
                    status = SimulationStatus.ACTIVE if n == 0 else SimulationStatus.SUPERSEDED
                self._col.update_one({"_id": to_oid(version.id)},
                                     {"$set": {"status": status.value, "updatedAt": now}, "$inc": {"revision": 1}},
                                     session=session)
            return {}

        self._transact(write)

    def awaiting_approval(self, clinic_id: str) -> list[TreatmentSimulation]:
        """Active, unapproved versions of the clinic, oldest first."""
        query = self._scope(clinic_id, status=SimulationStatus.ACTIVE.value, isApproved=False)
        cursor = self._col.find(query, projection={"frames": 0}).sort("createdAt", ASCENDING)
        return [_from_doc(d) for d in cursor]

    def pending_renditions(self, clinic_id: str) -> list[str]:
        query = self._scope(clinic_id, renditions=RenditionState.PENDING.value)
        return [str(d["_id"]) for d in self._col.find(query, projection={"_id": 1})]

    def find_by_import(self, clinic_id: str, import_id: str) -> str | None:
        """The version an import created, if any (makes a retried import job idempotent)."""
        doc = self._col.find_one(self._scope(clinic_id, **{"metadata.importId": import_id}), projection={"_id": 1})
        return str(doc["_id"]) if doc else None

    def count_for_clinic(self, clinic_id: str) -> int:
        return self._col.count_documents(self._scope(clinic_id))

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
            latest = self._col.find_one(
                series, sort=[("version", DESCENDING)], projection={"version": 1}, session=session
            )
            version = (latest["version"] if latest else 0) + 1
            self._col.update_many(
                {**series, "status": SimulationStatus.ACTIVE.value},
                {"$set": {"status": SimulationStatus.SUPERSEDED.value, "updatedAt": now},
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
                "metadata": metadata,
                "status": SimulationStatus.ACTIVE.value,
                "version": version,
                "isApproved": False,
                "approvedAt": None,
                "approvedBy": None,
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
        query = self._scope(clinic_id, _id=to_oid(simulation_id, "simulation"))
        update: dict[str, Any] = {"$set": {"renditions": state.value}}
        if frames is not None:
            if expected_revision is None:
                raise ValueError("expected_revision is required when frames are replaced")
            query["revision"] = expected_revision
            update["$set"]["frames"] = [f.to_doc() for f in frames]
            update["$set"]["updatedAt"] = utcnow()
            update["$inc"] = {"revision": 1}
        doc = self._col.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)
        if doc is None:
            self._find_one(clinic_id, simulation_id)  # raises NotFoundError when it is missing
            raise ConflictError("The simulation changed while its renditions were made; retrying.")
        return _from_doc(doc)

    # --- plumbing ------------------------------------------------------------------------------
    def _transact(self, write: Callable[[ClientSession], dict[str, Any]]) -> dict[str, Any]:
        last: Exception | None = None
        for _ in range(_VERSION_ATTEMPTS):
            try:
                with self._db.client.start_session() as session:
                    return session.with_transaction(write)
            except DuplicateKeyError as exc:  # a racing writer won this version number
                last = exc
            except OperationFailure as exc:
                if not (exc.has_error_label("TransientTransactionError") or exc.code in (112, 251)):
                    raise
                last = exc
            except PyMongoError as exc:
                if not getattr(exc, "has_error_label", lambda _l: False)("TransientTransactionError"):
                    raise
                last = exc
        raise ConflictError(
            "Another version of this simulation was being saved at the same time; try again."
        ) from last

