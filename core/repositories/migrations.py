"""Which one-time data migrations a database has had (system-wide, not clinic data)."""

from __future__ import annotations

import contextlib

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.repositories.base import utcnow


class MigrationRepository:
    collection_name = "migrations"

    def __init__(self, db: Database) -> None:
        self._col = db[self.collection_name]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        """Keyed by `_id` (the migration's name): nothing to add."""

    def done(self) -> set[str]:
        return {str(d["_id"]) for d in self._col.find({}, {"_id": 1})}

    def record(self, name: str, *, changed: int) -> None:
        with contextlib.suppress(DuplicateKeyError):  # another process ran it too; both runs are idempotent
            self._col.insert_one({"_id": name, "at": utcnow(), "changed": changed})
