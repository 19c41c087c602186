"""Imports in progress and done: staged files, proposed frames, state and progress."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from core.domain import (
    ImportCandidate,
    ImportSource,
    ImportState,
    SimulationImport,
    SimulationType,
    StagedFile,
)
from core.errors import ConflictError
from core.repositories.base import Page, Repository, opt_oid, opt_str, sync_indexes, to_oid, utcnow

#: What lists read of an import (the candidate frames can be thousands of entries).
_LISTED = {f: 1 for f in ("clinicId", "source", "state", "createdAt", "updatedAt", "createdBy", "patientId",
                          "treatmentId", "simulationType", "name", "seriesOf", "files", "options", "metadata",
                          "progress", "step", "error", "simulationId", "integrationId", "revision")}


def _candidate_doc(c: ImportCandidate) -> dict[str, Any]:
    return {"key": c.key, "stage": c.stage, "view": c.view, "sha256": c.sha256, "thumbSha256": c.thumbSha256,
            "width": c.width, "height": c.height, "label": c.label, "include": c.include}


def _from_doc(doc: dict[str, Any]) -> SimulationImport:
    return SimulationImport(
        id=str(doc["_id"]),
        clinicId=str(doc["clinicId"]),
        source=ImportSource.coerce(doc["source"]),
        state=ImportState.coerce(doc["state"]),
        createdAt=doc["createdAt"],
        updatedAt=doc["updatedAt"],
        createdBy=str(doc["createdBy"]),
        patientId=opt_str(doc.get("patientId")),
        treatmentId=opt_str(doc.get("treatmentId")),
        simulationType=SimulationType.coerce(doc.get("simulationType", "ALIGNER")),
        name=doc.get("name", ""),
        seriesOf=opt_str(doc.get("seriesOf")),
        files=tuple(StagedFile(f["name"], f["sha256"], int(f["size"])) for f in doc.get("files", [])),
        candidates=tuple(ImportCandidate(**c) for c in doc.get("candidates", [])),
        options=dict(doc.get("options") or {}),
        metadata=dict(doc.get("metadata") or {}),
        progress=int(doc.get("progress", 0)),
        step=doc.get("step", ""),
        error=doc.get("error"),
        simulationId=opt_str(doc.get("simulationId")),
        integrationId=opt_str(doc.get("integrationId")),
        revision=int(doc.get("revision", 0)),
    )


class ImportRepository(Repository):
    collection_name = "imports"
    what = "import"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [
            IndexModel([("clinicId", ASCENDING), ("createdAt", DESCENDING)]),
            IndexModel([("clinicId", ASCENDING), ("state", ASCENDING), ("createdAt", DESCENDING)]),
            IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("createdAt", DESCENDING)]),
            IndexModel([("files.sha256", ASCENDING)]),
            IndexModel([("candidates.sha256", ASCENDING)]),
            IndexModel([("candidates.thumbSha256", ASCENDING)]),
        ])

    def create(self, clinic_id: str, *, source: ImportSource, created_by: str, patient_id: str | None,
               treatment_id: str | None, simulation_type: SimulationType, name: str, files: Iterable[StagedFile],
               options: dict[str, Any], series_of: str | None = None, integration_id: str | None = None,
               state: ImportState = ImportState.QUEUED) -> SimulationImport:
        now = utcnow()
        doc = {
            "_id": ObjectId(), "clinicId": to_oid(clinic_id, "clinic"), "source": source.value,
            "state": state.value, "createdAt": now, "updatedAt": now, "createdBy": to_oid(created_by, "user"),
            "patientId": opt_oid(patient_id), "treatmentId": opt_oid(treatment_id),
            "simulationType": simulation_type.value, "name": name, "seriesOf": opt_oid(series_of),
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in files],
            "candidates": [], "options": options, "metadata": {}, "progress": 0, "step": "queued",
            "error": None, "simulationId": None, "integrationId": opt_oid(integration_id), "revision": 0,
        }
        self._col.insert_one(doc)
        return _from_doc(doc)

    def get(self, clinic_id: str, import_id: str) -> SimulationImport:
        return _from_doc(self._find_one(clinic_id, import_id))

    def list(self, clinic_id: str, *, states: Iterable[ImportState] | None = None,
             patient_id: str | None = None, limit: int = 50, cursor: str | None = None) -> Page[SimulationImport]:
        """Imports newest first, without their candidate frames (a page; `cursor` continues it).

        By patient: one walk of the patient's imports. By state: one walk per state, merged.
        """
        wanted = [s.value for s in states] if states is not None else None
        if patient_id or wanted is None:
            match = self._scope(clinic_id, **({"patientId": to_oid(patient_id, "patient")} if patient_id else {}))
            docs, next_cursor = self._page(match, "createdAt", limit=limit, cursor=cursor, projection=_LISTED,
                                           post={"state": {"$in": wanted}} if wanted else None,
                                           span=timedelta(days=1))
            return Page(tuple(_from_doc(d) for d in docs), next_cursor)
        page, next_cursor = self._merged_pages([self._scope(clinic_id, state=state) for state in wanted], "createdAt",
                                               limit=limit, cursor=cursor, projection=_LISTED, span=timedelta(days=1))
        return Page(tuple(_from_doc(d) for d in page), next_cursor)

    def list_started_by(self, clinic_id: str, user_id: str, *, states: Iterable[ImportState], days: int = 7,
                        limit: int = 10) -> list[SimulationImport]:
        """One user's imports of the last `days` in these states, newest first: one bounded walk per
        state (the (clinicId, state, createdAt) index), the user applied to what each window found."""
        since = utcnow() - timedelta(days=days)
        docs, _ = self._merged_pages([self._scope(clinic_id, state=s.value) for s in states], "createdAt",
                                     limit=limit, projection=_LISTED, stop=since, span=timedelta(hours=6),
                                     post={"createdBy": to_oid(user_id, "user")})
        return [_from_doc(d) for d in docs]

    def list_unassigned(self, clinic_id: str, *, days: int = 30, limit: int = 20) -> list[SimulationImport]:
        """Imports of the last `days` without a patient (unmatched exports, or failed before one was
        chosen). Equality on (clinicId, patientId) and a window on createdAt: the index's three keys,
        so only those imports are read."""
        since = utcnow() - timedelta(days=days)
        docs, _ = self._page(self._scope(clinic_id, patientId=None), "createdAt", limit=limit, projection=_LISTED,
                             stop=since, span=timedelta(days=1))
        return [_from_doc(d) for d in docs]

    def transition(self, clinic_id: str, import_id: str, *, from_states: Iterable[ImportState],
                   to: ImportState, **fields: Any) -> SimulationImport:
        """Move to `to` only from one of `from_states` (a guard against double clicks and races)."""
        updates: dict[str, Any] = {"state": to.value, "updatedAt": utcnow()}
        for key, value in fields.items():
            if key == "candidates":
                updates[key] = [_candidate_doc(c) for c in value]
            elif key in ("patientId", "treatmentId", "simulationId"):
                updates[key] = opt_oid(value)
            else:
                updates[key] = value
        doc = self._update_by_id(clinic_id, import_id, {"$set": updates, "$inc": {"revision": 1}},
                                 guard={"state": {"$in": [s.value for s in from_states]}})
        if doc is None:
            current = self.get(clinic_id, import_id)
            raise ConflictError(f"This import is {current.state.value.lower()}; it cannot become "
                                f"{to.value.lower()} now. Reload the page.")
        return _from_doc(doc)

    def set_progress(self, clinic_id: str, import_id: str, percent: int, step: str) -> None:
        self._col.update_one(self._scope(clinic_id, _id=to_oid(import_id, "import")),
                             {"$set": {"progress": int(percent), "step": step, "updatedAt": utcnow()}})

    def sha256_in_use(self, sha256: str) -> bool:
        """Whether a live import still needs this staged blob."""
        live = {s.value for s in (ImportState.QUEUED, ImportState.ANALYZING, ImportState.PREVIEW,
                                  ImportState.UNMATCHED, ImportState.IMPORTING)}
        for field in ("files.sha256", "candidates.sha256", "candidates.thumbSha256"):  # one index each, no $or
            if any(d["state"] in live for d in self._col.find({field: sha256}, {"state": 1})):
                return True
        return False
