"""The patient imaging gallery: one `ImagingAsset` document per stored file."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.client_session import ClientSession
from pymongo.database import Database

from core.domain import AssetKind, ImagingAsset
from core.errors import NotFoundError
from core.repositories.base import Page, Repository, opt_oid, opt_str, sync_indexes, to_oid, utcnow

#: Below every real ObjectId: `exportId > this` holds for each asset an export produced (a range the
#: embedded server can prove from `exportId: X`, unlike `$type`/`$exists`; rule 7 in SECANTUS.md).
log = logging.getLogger(__name__)
_NO_EXPORT = ObjectId("0" * 24)
_ONE_FILE_PER_EXPORT = "one_file_per_export"


def _from_doc(doc: dict[str, Any]) -> ImagingAsset:
    return ImagingAsset(
        id=str(doc["_id"]),
        clinicId=str(doc["clinicId"]),
        patientId=str(doc["patientId"]),
        kind=AssetKind.coerce(doc["kind"]),
        contentType=doc["contentType"],
        size=int(doc["size"]),
        sha256=doc["sha256"],
        width=doc.get("width"),
        height=doc.get("height"),
        label=doc.get("label", ""),
        simulationId=opt_str(doc.get("simulationId")),
        exportId=opt_str(doc.get("exportId")),
        tags=tuple(doc.get("tags", ())),
        details=dict(doc.get("details") or {}),
        createdAt=doc["createdAt"],
        createdBy=str(doc["createdBy"]),
    )


class AssetRepository(Repository):
    collection_name = "imaging_assets"
    what = "image"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(
            db[cls.collection_name],
            [
                IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("kind", ASCENDING),
                            ("createdAt", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("simulationId", ASCENDING)]),
                IndexModel([("sha256", ASCENDING)]),
                # An export has at most one file record, whichever render attempt gets there first.
                IndexModel([("exportId", ASCENDING)], name=_ONE_FILE_PER_EXPORT, unique=True,
                           partialFilterExpression={"exportId": {"$gt": _NO_EXPORT}}),
            ],
            before_build={_ONE_FILE_PER_EXPORT: cls._detach_duplicate_export_files},
        )

    @classmethod
    def _detach_duplicate_export_files(cls, db: Database) -> int:
        """Before the unique index exists: keep one file record per export (the one the export links
        to, else the oldest); the others lose their `exportId` (records and bytes are kept, and logged).

        Databases written before fencing could hold two records for one export. One scan, once."""
        col = db[cls.collection_name]
        by_export: dict[ObjectId, list[dict[str, Any]]] = {}
        for doc in col.find({"exportId": {"$gt": _NO_EXPORT}}, {"exportId": 1, "createdAt": 1}):
            by_export.setdefault(doc["exportId"], []).append(doc)
        detached = 0
        for export_id, docs in by_export.items():
            if len(docs) < 2:
                continue
            export = db["simulation_exports"].find_one({"_id": export_id}) or {}
            linked = {str(v).removeprefix("asset://") for k, v in export.items() if k.endswith("Url") and v}
            docs.sort(key=lambda d: (str(d["_id"]) not in linked, d["createdAt"]))
            extra = [d["_id"] for d in docs[1:]]
            col.update_many({"_id": {"$in": extra}}, {"$set": {"exportId": None, "details.duplicateOfExport":
                                                                export_id}})
            detached += len(extra)
        if detached:
            log.warning("detached %d duplicate export file record(s) before adding the unique index", detached)
        return detached

    @staticmethod
    def new_document(
        clinic_id: str,
        *,
        patient_id: str,
        kind: AssetKind,
        content_type: str,
        size: int,
        sha256: str,
        created_by: str,
        width: int | None = None,
        height: int | None = None,
        label: str = "",
        simulation_id: str | None = None,
        tags: Iterable[str] = (),
        asset_id: ObjectId | None = None,
        export_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A document ready for `insert_many` (callers batch the frames of one import)."""
        return {
            "_id": asset_id or ObjectId(),
            "clinicId": to_oid(clinic_id, "clinic"),
            "patientId": to_oid(patient_id, "patient"),
            "kind": kind.value,
            "contentType": content_type,
            "size": size,
            "sha256": sha256,
            "width": width,
            "height": height,
            "label": label,
            "simulationId": opt_oid(simulation_id),
            "exportId": opt_oid(export_id),
            "tags": list(tags),
            "details": dict(details or {}),
            "createdAt": utcnow(),
            "createdBy": to_oid(created_by, "user"),
        }

    def insert_many(
        self, clinic_id: str, docs: list[dict[str, Any]], *, session: ClientSession | None = None
    ) -> list[ImagingAsset]:
        self._check_scope(clinic_id, docs)
        if docs:
            self._col.insert_many(docs, ordered=True, session=session)
        return [_from_doc(d) for d in docs]

    def insert(self, clinic_id: str, doc: dict[str, Any], *, session: ClientSession | None = None) -> ImagingAsset:
        """Insert one asset; DuplicateKeyError when its export already has a file record."""
        self._check_scope(clinic_id, [doc])
        self._col.insert_one(doc, session=session)
        return _from_doc(doc)

    def upsert_many(self, clinic_id: str, docs: list[dict[str, Any]]) -> None:
        """Insert docs whose `_id` is deterministic; a retried job rewrites instead of duplicating."""
        self._check_scope(clinic_id, docs)
        if docs:
            self._col.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)

    @staticmethod
    def _check_scope(clinic_id: str, docs: list[dict[str, Any]]) -> None:
        scope = to_oid(clinic_id, "clinic")
        if any(d["clinicId"] != scope for d in docs):
            raise ValueError("every asset must belong to the caller's clinic")

    def get(self, clinic_id: str, asset_id: str) -> ImagingAsset:
        return _from_doc(self._find_one(clinic_id, asset_id))

    def get_many(self, clinic_id: str, asset_ids: Iterable[str]) -> dict[str, ImagingAsset]:
        """Assets by id in one query; raises when any of them is missing from the clinic."""
        found = self.find_many(clinic_id, asset_ids)
        missing = {str(to_oid(a, "image")) for a in asset_ids} - set(found)
        if missing:
            raise NotFoundError(f"{len(missing)} image(s) are missing from your clinic's gallery.")
        return found

    def find_many(self, clinic_id: str, asset_ids: Iterable[str]) -> dict[str, ImagingAsset]:
        """The assets of these ids that exist in the clinic, in one query."""
        return {str(d["_id"]): _from_doc(d) for d in self._by_ids(clinic_id, list(asset_ids))}

    def list_for_patient(
        self, clinic_id: str, patient_id: str, *, kinds: Iterable[AssetKind] | None = None, limit: int = 200,
        cursor: str | None = None,
    ) -> Page[ImagingAsset]:
        """A patient's assets of these kinds, newest first (a page; `cursor` continues it).

        One bounded walk per kind (the index's equality prefix ends at `kind`), merged by time.
        """
        kinds = list(AssetKind) if kinds is None else list(kinds)
        patient = to_oid(patient_id, "patient")
        page, next_cursor = self._merged_pages(
            [self._scope(clinic_id, patientId=patient, kind=kind.value) for kind in kinds], "createdAt", limit=limit,
            cursor=cursor, span=timedelta(days=3650))
        return Page(tuple(_from_doc(d) for d in page), next_cursor)

    def list_for_simulation(self, clinic_id: str, simulation_id: str, *,
                            kinds: Iterable[AssetKind]) -> list[ImagingAsset]:
        """Assets recorded with a simulation version (served by the (clinicId, simulationId) index)."""
        wanted = {k.value for k in kinds}
        docs = self._col.find(self._scope(clinic_id, simulationId=to_oid(simulation_id, "simulation")))
        return [_from_doc(d) for d in docs if d["kind"] in wanted]  # kind in Python: a post-filter either way

    def delete_many(self, clinic_id: str, asset_ids: Iterable[str]) -> None:
        """Roll back assets of a failed import (they were never referenced by a simulation)."""
        ids = [to_oid(a, "image") for a in asset_ids]
        if ids:
            self._col.delete_many(self._scope(clinic_id, _id={"$in": ids}))

    def sha256_in_use(self, sha256: str) -> bool:
        """Whether any record still references this blob (used before deleting stored bytes)."""
        return self._col.find_one({"sha256": sha256}, {"_id": 1}) is not None
