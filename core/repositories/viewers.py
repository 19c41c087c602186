"""Vendor web viewers: the clinic's allow-listed hosts and the viewer link of each simulation version."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import ViewerHost, ViewerLink
from core.errors import ConflictError, NotFoundError
from core.repositories.base import Repository, sync_indexes, to_oid, utcnow


class ViewerHostRepository(Repository):
    collection_name = "viewer_hosts"
    what = "allowed viewer host"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("host", ASCENDING)],
                                                           unique=True)])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> ViewerHost:
        return ViewerHost(id=str(doc["_id"]), clinicId=str(doc["clinicId"]), host=doc["host"],
                          label=doc.get("label", ""), addedBy=str(doc["addedBy"]), addedAt=doc["addedAt"])

    def list(self, clinic_id: str) -> list[ViewerHost]:
        """The clinic's allow-list (a few dozen entries at most), sorted by host."""
        return [self._from_doc(d) for d in self._col.find(self._scope(clinic_id)).sort("host", ASCENDING)]

    def add(self, clinic_id: str, *, host: str, label: str, added_by: str) -> ViewerHost:
        doc = {"_id": ObjectId(), "clinicId": to_oid(clinic_id, "clinic"), "host": host, "label": label,
               "addedBy": to_oid(added_by, "user"), "addedAt": utcnow()}
        try:
            self._col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise ConflictError(f"{host} is already on the allow-list.") from exc
        return self._from_doc(doc)

    def remove(self, clinic_id: str, host_id: str) -> ViewerHost:
        key = self._scope(clinic_id, _id=to_oid(host_id, self.what))
        doc = self._col.find_one(key)
        if doc is None:
            raise NotFoundError("That host is not on your clinic's allow-list.")
        self._col.delete_one(key)
        return self._from_doc(doc)


class ViewerLinkRepository(Repository):
    collection_name = "viewer_links"
    what = "viewer link"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING)])])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> ViewerLink:
        return ViewerLink(simulationId=str(doc["_id"]), clinicId=str(doc["clinicId"]),
                          patientId=str(doc["patientId"]), url=doc["url"], host=doc["host"],
                          setBy=str(doc["setBy"]), setAt=doc["setAt"])

    def _key(self, clinic_id: str, simulation_id: str) -> dict[str, Any]:
        return self._scope(clinic_id, _id=to_oid(simulation_id, "simulation"))

    def get(self, clinic_id: str, simulation_id: str) -> ViewerLink | None:
        doc = self._col.find_one(self._key(clinic_id, simulation_id))
        return self._from_doc(doc) if doc else None

    def set(self, clinic_id: str, simulation_id: str, *, patient_id: str, url: str, host: str,
            set_by: str) -> ViewerLink:
        """Attach (or replace) the version's viewer link; the document's `_id` is the version's id."""
        doc = {**self._key(clinic_id, simulation_id), "patientId": to_oid(patient_id, "patient"), "url": url,
               "host": host, "setBy": to_oid(set_by, "user"), "setAt": utcnow()}
        self._col.replace_one(self._key(clinic_id, simulation_id), doc, upsert=True)
        return self._from_doc(doc)

    def delete(self, clinic_id: str, simulation_id: str) -> bool:
        return self._col.delete_one(self._key(clinic_id, simulation_id)).deleted_count == 1
