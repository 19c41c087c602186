"""Remembered before/predicted alignments, one per (before image, predicted frame) pair."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from core.repositories.base import Repository, sync_indexes, to_oid, utcnow


class AlignmentRepository(Repository):
    collection_name = "alignments"
    what = "alignment"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(
            db[cls.collection_name],
            [IndexModel([("clinicId", ASCENDING), ("beforeAssetId", ASCENDING), ("predictedAssetId", ASCENDING)],
                        unique=True)],
        )

    def get(self, clinic_id: str, before_asset_id: str, predicted_asset_id: str) -> dict[str, Any] | None:
        doc = self._col.find_one(self._scope(clinic_id, beforeAssetId=to_oid(before_asset_id, "image"),
                                             predictedAssetId=to_oid(predicted_asset_id, "image")))
        return dict(doc["alignment"]) if doc else None

    def save(self, clinic_id: str, before_asset_id: str, predicted_asset_id: str, alignment: dict[str, Any],
             user_id: str) -> None:
        key = self._scope(clinic_id, beforeAssetId=to_oid(before_asset_id, "image"),
                          predictedAssetId=to_oid(predicted_asset_id, "image"))
        self._col.update_one(key, {"$set": {"alignment": alignment, "updatedAt": utcnow(),
                                            "updatedBy": to_oid(user_id, "user")}}, upsert=True)
