"""Integrations (drop folders) and the export items each has already picked up."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import Integration, IntegrationKind
from core.repositories.base import Repository, sync_indexes, to_oid, utcnow


def _from_doc(doc: dict[str, Any]) -> Integration:
    return Integration(
        id=str(doc["_id"]), clinicId=str(doc["clinicId"]), kind=IntegrationKind.coerce(doc["kind"]),
        name=doc["name"], folder=doc["folder"], enabled=bool(doc.get("enabled", True)),
        importAs=str(doc["importAs"]), createdAt=doc["createdAt"], lastSyncAt=doc.get("lastSyncAt"),
        imported=int(doc.get("imported", 0)), unmatched=int(doc.get("unmatched", 0)),
        failed=int(doc.get("failed", 0)), lastError=doc.get("lastError"))


class IntegrationRepository(Repository):
    collection_name = "integrations"
    what = "integration"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("name", ASCENDING)], unique=True)])
        sync_indexes(db["integration_items"], [
            IndexModel([("clinicId", ASCENDING), ("integrationId", ASCENDING), ("key", ASCENDING)], unique=True)])

    def create(self, clinic_id: str, *, kind: IntegrationKind, name: str, folder: str, import_as: str) -> Integration:
        doc = {"_id": ObjectId(), "clinicId": to_oid(clinic_id, "clinic"), "kind": kind.value, "name": name,
               "folder": folder, "enabled": True, "importAs": to_oid(import_as, "user"), "createdAt": utcnow(),
               "lastSyncAt": None, "imported": 0, "unmatched": 0, "failed": 0, "lastError": None}
        self._col.insert_one(doc)
        return _from_doc(doc)

    def get(self, clinic_id: str, integration_id: str) -> Integration:
        return _from_doc(self._find_one(clinic_id, integration_id))

    def list(self, clinic_id: str, *, enabled_only: bool = False) -> list[Integration]:
        query = self._scope(clinic_id, **({"enabled": True} if enabled_only else {}))
        return [_from_doc(d) for d in self._col.find(query).sort("name", ASCENDING)]

    def set_enabled(self, clinic_id: str, integration_id: str, enabled: bool) -> None:
        self._col.update_one(self._scope(clinic_id, _id=to_oid(integration_id)), {"$set": {"enabled": enabled}})

    def record_sync(self, clinic_id: str, integration_id: str, *, imported: int = 0, unmatched: int = 0,
                    failed: int = 0, error: str | None = None) -> None:
        self._col.update_one(
            self._scope(clinic_id, _id=to_oid(integration_id)),
            {"$set": {"lastSyncAt": utcnow(), "lastError": error},
             "$inc": {"imported": imported, "unmatched": unmatched, "failed": failed}})

    def claim_item(self, clinic_id: str, integration_id: str, key: str) -> bool:
        """Mark an export as picked up; False when it was already (exactly once, even with two workers)."""
        try:
            self._db["integration_items"].insert_one({"clinicId": to_oid(clinic_id), "integrationId":
                                                      to_oid(integration_id), "key": key, "at": utcnow()})
        except DuplicateKeyError:
            return False
        return True
